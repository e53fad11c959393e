import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * Properties of the source itself: SQL is never built from strings, library code never reads
 * the environment or fetches anything, and the production dependencies are few, documented and
 * pinned by the committed lockfile.
 */
const ROOT = process.cwd();

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return /\.(ts|mts|js|mjs)$/.test(name) && !name.endsWith('.d.ts') ? [full] : [];
  });
}

const SOURCES = [...sourceFiles(path.join(ROOT, 'src')), ...sourceFiles(path.join(ROOT, 'migrations'))];
const rel = (f: string) => path.relative(ROOT, f);

/** Methods whose first argument is SQL text sent as is (pg, knex, ioredis eval). */
const SQL_METHODS = new Set(['query', 'raw', 'unsafe', 'whereRaw', 'havingRaw', 'orderByRaw', 'joinRaw', 'fromRaw', 'selectRaw', 'eval', 'evalsha']);
/** Kysely escape hatches that splice text into SQL. */
const KYSELY_RAW = new Set(['raw', 'lit']);
/** Calls that make an identifier or literal safe to splice. */
const ESCAPERS = new Set(['escapeIdentifier', 'escapeLiteral']);

interface Finding {
  file: string;
  line: number;
  text: string;
}

/**
 * Every SQL-taking call whose text is assembled at run time (a template with substitutions, a
 * concatenation, a variable) unless each spliced part is an escaper call or a module-level
 * constant string. Kysely's sql`...` tag is fine: its substitutions become parameters.
 */
function stringBuiltSql(file: string): Finding[] {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const constants = new Set<string>();
  for (const st of sf.statements) {
    if (!ts.isVariableStatement(st) || !(st.declarationList.flags & ts.NodeFlags.Const)) continue;
    for (const d of st.declarationList.declarations) {
      if (ts.isIdentifier(d.name) && d.initializer && isConstantText(d.initializer, constants)) constants.add(d.name.text);
    }
  }
  const findings: Finding[] = [];
  const lines = text.split('\n');
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression)) {
      const method = node.expression.name.text;
      const target = node.expression.expression;
      const kyselyRaw = ts.isIdentifier(target) && target.text === 'sql' && KYSELY_RAW.has(method);
      const first = node.arguments[0];
      if ((SQL_METHODS.has(method) || kyselyRaw) && first && !isSafeSql(first, constants, kyselyRaw)) {
        const { line } = sf.getLineAndCharacterOfPosition(node.getStart());
        if (excused(lines, line)) {
          ts.forEachChild(node, visit);
          return;
        }
        findings.push({ file: rel(file), line: line + 1, text: node.getText().split('\n')[0]!.slice(0, 120) });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return findings;
}

/**
 * SQL that cannot take parameters (COPY, DDL, a publication's row filter, a SET) is excused by a
 * comment on its line or one of the two above, `// sql-text: <why what is spliced is safe>`, so each
 * such site says where its text comes from and a reviewer sees it in the diff.
 */
const EXCUSE = /\/\/ sql-text: \S.{15,}/;
function excused(lines: readonly string[], line: number): boolean {
  return [line, line - 1, line - 2].some((i) => i >= 0 && EXCUSE.test(lines[i] ?? ''));
}

function isConstantText(node: ts.Expression, constants: ReadonlySet<string>): boolean {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return true;
  if (ts.isTemplateExpression(node)) return node.templateSpans.every((s) => isConstantText(s.expression, constants));
  if (ts.isIdentifier(node)) return constants.has(node.text);
  if (ts.isParenthesizedExpression(node)) return isConstantText(node.expression, constants);
  if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken) {
    return isConstantText(node.left, constants) && isConstantText(node.right, constants);
  }
  return false;
}

function isSafeSql(arg: ts.Expression, constants: ReadonlySet<string>, kyselyRaw: boolean): boolean {
  // sql.raw / sql.lit take the value itself: only a literal is safe there.
  if (kyselyRaw) return ts.isStringLiteral(arg) || ts.isNoSubstitutionTemplateLiteral(arg);
  if (ts.isStringLiteral(arg) || ts.isNoSubstitutionTemplateLiteral(arg)) return true;
  if (ts.isIdentifier(arg)) return constants.has(arg.text);
  // A query config object ({ text, values }) or a prepared query: pg parameterises it.
  if (ts.isObjectLiteralExpression(arg)) return true;
  if (ts.isTemplateExpression(arg)) {
    return arg.templateSpans.every((span) => {
      const e = span.expression;
      if (isConstantText(e, constants)) return true;
      return ts.isCallExpression(e) && ESCAPERS.has(ts.isPropertyAccessExpression(e.expression) ? e.expression.name.text : e.expression.getText());
    });
  }
  return false;
}

describe('static security properties of the source', () => {
  it('builds no SQL from strings: values go in as parameters, identifiers through escapeIdentifier', () => {
    expect(SOURCES.length).toBeGreaterThan(20);
    expect(SOURCES.flatMap(stringBuiltSql)).toEqual([]);
  });

  it('the checker itself flags string-built SQL (so an empty result above means something), and an excuse must say why', () => {
    const probe = path.join(ROOT, 'test/security/fixtures/string-built-sql.ts.txt');
    expect(stringBuiltSql(probe).map((f) => f.line)).toEqual([5, 6, 7, 8, 9, 17]);
  });

  it('library code reads no environment and fetches nothing at run time', () => {
    const offenders: string[] = [];
    for (const file of SOURCES) {
      const r = rel(file);
      const text = readFileSync(file, 'utf8').replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, '');
      // The CLI edge (and the demo it launches) may read the environment; nothing else may.
      if (/process\.env\b/.test(text) && !/^src\/(cli|demo)\//.test(r)) offenders.push(`${r}: reads process.env`);
      if (/\bfetch\(|\bhttps?\.(get|request)\(|from 'node:https'|from 'https'|XMLHttpRequest|WebSocket\(/.test(text))
        offenders.push(`${r}: makes outbound requests`);
      if (/\bimport\(\s*['"`]https?:/.test(text)) offenders.push(`${r}: imports code from the network`);
      if (/\bnpm (install|i)\b|\bnpx\s/.test(text) && /child_process/.test(text)) offenders.push(`${r}: installs packages at run time`);
    }
    expect(offenders).toEqual([]);
  });

  it('every production dependency is named with its purpose in docs/security.md', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    // The table under "## Dependencies" (until the next heading) of docs/security.md.
    const security = readFileSync(path.join(ROOT, 'docs/security.md'), 'utf8');
    expect(security).toMatch(/^## Dependencies$/m);
    const section = security.split(/^## Dependencies$/m)[1] ?? '';
    const doc = section.split(/^#/m)[0] ?? '';
    const undocumented = Object.keys(pkg.dependencies).filter(
      (name) => !new RegExp(`^\\|\\s*\`${name.replace(/[/.]/g, '\\$&')}\`\\s*\\|\\s*\\S`, 'm').test(doc),
    );
    expect(undocumented).toEqual([]);
    const documented = [...doc.matchAll(/^\|\s*`([^`]+)`\s*\|/gm)].map((m) => m[1]);
    expect(documented.filter((name) => name !== undefined && !(name in pkg.dependencies))).toEqual([]);
  });

  it('the lockfile is committed, matches package.json, and pins every package by hash from the npm registry', () => {
    const tracked = execFileSync('git', ['ls-files', 'package-lock.json'], { cwd: ROOT, encoding: 'utf8' }).trim();
    expect(tracked).toBe('package-lock.json');
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
      lockfileVersion: number;
      packages: Record<
        string,
        { dependencies?: Record<string, string>; devDependencies?: Record<string, string>; resolved?: string; integrity?: string; link?: boolean }
      >;
    };
    expect(lock.lockfileVersion).toBeGreaterThanOrEqual(2);
    expect(lock.packages['']?.dependencies).toEqual(pkg.dependencies);
    expect(lock.packages['']?.devDependencies).toEqual(pkg.devDependencies);
    // Every package pinned by a sha512 integrity hash (a git or tarball URL dependency has none);
    // `resolved` may be omitted (npm then uses the configured registry) but never points elsewhere.
    const offRegistry = Object.entries(lock.packages)
      .filter(([key, p]) => key !== '' && !p.link)
      .filter(([, p]) => !p.integrity?.startsWith('sha512-') || (p.resolved !== undefined && !p.resolved.startsWith('https://registry.npmjs.org/')))
      .map(([key]) => key);
    expect(offRegistry).toEqual([]);
  });
});
