/**
 * Docs are code: every ```ts / ```typescript block of README.md and docs/*.md is written to its own
 * module under .tmp/docs-check/ and type-checked against the package's source (`shardline` and
 * `shardline/<sub>` resolve through the paths of scripts/tsconfig.docs.json), so the docs cannot
 * drift from the API. A block whose first line is `// fragment: <why>` is skipped; that marker is
 * shown to readers on purpose, so a skipped block is never mistaken for a checked one.
 *
 * Run: npm run check:docs  (exit 1 with each error at its markdown file and line)
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface DocBlock {
  /** The markdown file, relative to the repository root. */
  readonly file: string;
  /** 1-based line of the block's first code line (the line after the opening fence). */
  readonly line: number;
  readonly code: string;
  /** The reason given by a `// fragment: <why>` first line, or null for a block that is checked. */
  readonly fragment: string | null;
}

const TS_FENCE = /^(\s*)(`{3,}|~{3,})\s*(ts|typescript)\b.*$/;
const ANY_FENCE = /^(\s*)(`{3,}|~{3,})(.*)$/;
const FRAGMENT = /^\s*\/\/\s*fragment:\s*(.*\S)\s*$/;

/** The TypeScript blocks of one markdown text, in order. Fences of other languages are passed over whole. */
export function extractBlocks(markdown: string, file: string): DocBlock[] {
  const lines = markdown.split(/\r?\n/);
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = ANY_FENCE.exec(lines[i] ?? '');
    if (!open) continue;
    const fence = open[2] ?? '```';
    const isTs = TS_FENCE.test(lines[i] ?? '');
    const start = i + 1;
    let end = start;
    // A closing fence is the same character, at least as long, and nothing after it (CommonMark).
    while (end < lines.length && !isClosing(lines[end] ?? '', fence)) end++;
    if (isTs) {
      const body = lines.slice(start, end);
      const marker = FRAGMENT.exec(body[0] ?? '');
      blocks.push({ file, line: start + 1, code: body.join('\n'), fragment: marker ? (marker[1] ?? '') : null });
    }
    i = end;
  }
  return blocks;
}

function isClosing(line: string, fence: string): boolean {
  const t = line.trim();
  return t.length >= fence.length && t[0] === fence[0] && /^(`+|~+)$/.test(t);
}

/** README.md and every docs/*.md, relative to the root, in a stable order. */
export function docFiles(root: string): string[] {
  let docs: string[] = [];
  try {
    docs = readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .sort()
      .map((f) => `docs/${f}`);
  } catch {
    // No docs/ folder: only the README is checked.
  }
  return ['README.md', ...docs];
}

/** The module file name of a block: its markdown file and line, so an error points back at it. */
export function moduleNameOf(block: DocBlock): string {
  return `${block.file.replace(/\.md$/, '').replace(/[^A-Za-z0-9]+/g, '_')}_L${block.line}.ts`;
}

/**
 * The module text of a block. `export {}` makes every block a module (top-level await, no globals
 * shared between blocks), whether or not it imports anything.
 */
export function moduleTextOf(block: DocBlock): string {
  return `${block.code}\nexport {};\n`;
}

interface Written {
  readonly path: string;
  readonly block: DocBlock;
}

function main(): number {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const outDir = join(root, '.tmp', 'docs-check');
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });

  const written: Written[] = [];
  const skipped: DocBlock[] = [];
  for (const file of docFiles(root)) {
    for (const block of extractBlocks(readFileSync(join(root, file), 'utf8'), file)) {
      if (block.fragment !== null) {
        skipped.push(block);
        continue;
      }
      const path = join(outDir, moduleNameOf(block));
      writeFileSync(path, moduleTextOf(block));
      written.push({ path, block });
    }
  }

  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const run = spawnSync(process.execPath, [tsc, '-p', join(root, 'scripts', 'tsconfig.docs.json'), '--noEmit', '--pretty', 'false'], {
    cwd: root,
    encoding: 'utf8',
  });
  const output = `${run.stdout}${run.stderr}`;
  const byPath = new Map(written.map((w) => [relative(root, w.path), w.block]));
  const errors = output
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => toMarkdownPosition(l, byPath));
  for (const e of errors) console.error(e);
  for (const b of skipped) console.log(`skipped ${b.file}:${b.line} (fragment: ${b.fragment})`);
  const failed = run.status !== 0;
  console.log(`${written.length} blocks checked, ${skipped.length} fragments skipped: ${failed ? 'FAILED' : 'ok'}`);
  return failed ? 1 : 0;
}

/** `.tmp/docs-check/docs_x_L12.ts(3,5): error ...` -> `docs/x.md:14:5: error ...` (block line + offset). */
function toMarkdownPosition(line: string, byPath: ReadonlyMap<string, DocBlock>): string {
  const m = /^(.+?)\((\d+),(\d+)\): (.*)$/.exec(line);
  const block = m ? byPath.get(m[1] ?? '') : undefined;
  if (!m || !block) return line;
  return `${block.file}:${block.line + Number(m[2]) - 1}:${m[3]}: ${m[4]}`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exit(main());
