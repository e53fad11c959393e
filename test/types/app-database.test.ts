import { readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * `npm run typecheck` fails when an `@ts-expect-error` of test/types/app-database.ts stops being an
 * error. This checks the other half: that each one fails for the reason it gives (the `name` its reason
 * quotes is in the compiler's message), and that nothing else in the file is an error, so a
 * directive cannot hide a mistake of the fixture itself.
 */
const FIXTURE = path.resolve('test/types/app-database.ts');
const DIRECTIVE = /^\s*\/\/ @ts-expect-error: (.*)$/;

function diagnosticsOf(source: string): { line: number; message: string }[] {
  const config = ts.getParsedCommandLineOfConfigFile(path.resolve('tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
  if (!config) throw new Error('tsconfig.json could not be read');
  const host = ts.createCompilerHost(config.options);
  const readFile = host.readFile.bind(host);
  host.readFile = (file) => (path.resolve(file) === FIXTURE ? source : readFile(file));
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (file, lang, onError, fresh) =>
    path.resolve(file) === FIXTURE ? ts.createSourceFile(file, source, lang, true) : getSourceFile(file, lang, onError, fresh);
  const program = ts.createProgram({ rootNames: [FIXTURE], options: { ...config.options, noEmit: true }, host });
  const file = program.getSourceFile(FIXTURE)!;
  return ts.getPreEmitDiagnostics(program, file).map((d) => ({
    line: file.getLineAndCharacterOfPosition(d.start ?? 0).line,
    message: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
  }));
}

describe('ShardSet<AppDatabase> compile test', () => {
  const lines = readFileSync(FIXTURE, 'utf8').split('\n');
  const expected = lines.flatMap((l, i) => {
    const m = DIRECTIVE.exec(l);
    return m ? [{ line: i + 1, reason: m[1]! }] : [];
  });

  it('compiles as it is', () => {
    expect(expected.length).toBeGreaterThanOrEqual(8);
    expect(diagnosticsOf(lines.join('\n'))).toEqual([]);
  });

  it('without the directives, each marked line fails, for the name its reason gives, and no other line does', () => {
    const stripped = lines.map((l) => (DIRECTIVE.test(l) ? '' : l)).join('\n');
    const found = diagnosticsOf(stripped);
    expect([...new Set(found.map((d) => d.line))].sort((a, b) => a - b)).toEqual(expected.map((e) => e.line));
    for (const e of expected) {
      const messages = found
        .filter((d) => d.line === e.line)
        .map((d) => d.message)
        .join('\n');
      const name = /`([^`]+)`/.exec(e.reason)?.[1];
      expect(name, `line ${e.line}: the reason quotes no \`name\``).toBeDefined();
      expect(messages, `line ${e.line + 1}: ${e.reason}`).toContain(name);
    }
  }, 120_000);
});
