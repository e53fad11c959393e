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
  /** The fence's info word, lower-cased (`ts`, `sh`, `json`, ...), '' when none. */
  readonly lang: string;
  readonly code: string;
  /** The reason given by a `// fragment: <why>` first line, or null for a block that is checked. */
  readonly fragment: string | null;
  /**
   * The program the block belongs to, or null. Blocks between `<!-- docs-check: program NAME -->`
   * and `<!-- docs-check: end -->` are one program, in order (the README walk-through): its
   * TypeScript blocks are checked as one module, and test/docs runs them.
   */
  readonly program: string | null;
}

const FENCE = /^\s*(`{3,}|~{3,})\s*([^\s`]*)/;
const FRAGMENT = /^\s*\/\/\s*fragment:\s*(.*\S)\s*$/;
const PROGRAM_START = /^\s*<!--\s*docs-check:\s*program\s+([A-Za-z0-9_-]+)\s*-->\s*$/;
const PROGRAM_END = /^\s*<!--\s*docs-check:\s*end\s*-->\s*$/;
const TS_LANGS = new Set(['ts', 'typescript']);

export function isTypeScript(block: DocBlock): boolean {
  return TS_LANGS.has(block.lang);
}

/** Every fenced block of one markdown text, in order, with its language and program. */
export function extractFences(markdown: string, file: string): DocBlock[] {
  const lines = markdown.split(/\r?\n/);
  const blocks: DocBlock[] = [];
  let program: string | null = null;
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i] ?? '';
    const start = PROGRAM_START.exec(text);
    if (start) {
      if (program !== null) throw new Error(`${file}:${i + 1}: program ${start[1]} starts inside program ${program}`);
      program = start[1] ?? null;
      continue;
    }
    if (PROGRAM_END.test(text)) {
      program = null;
      continue;
    }
    const open = FENCE.exec(text);
    if (!open) continue;
    const fence = open[1] ?? '```';
    const first = i + 1;
    let end = first;
    // A closing fence is the same character, at least as long, and nothing after it (CommonMark).
    while (end < lines.length && !isClosing(lines[end] ?? '', fence)) end++;
    const body = lines.slice(first, end);
    const marker = FRAGMENT.exec(body[0] ?? '');
    blocks.push({
      file,
      line: first + 1,
      lang: (open[2] ?? '').toLowerCase(),
      code: body.join('\n'),
      fragment: marker ? (marker[1] ?? '') : null,
      program,
    });
    i = end;
  }
  if (program !== null) throw new Error(`${file}: program ${program} has no <!-- docs-check: end -->`);
  return blocks;
}

/** The TypeScript blocks of one markdown text, in order (```ts and ```typescript). */
export function extractBlocks(markdown: string, file: string): DocBlock[] {
  return extractFences(markdown, file).filter(isTypeScript);
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
  const base = block.file.replace(/\.md$/, '').replace(/[^A-Za-z0-9]+/g, '_');
  return block.program === null ? `${base}_L${block.line}.ts` : `${base}_program_${block.program}.ts`;
}

/** Where each block starts in a module: to map a compiler position back to the markdown. */
export interface Segment {
  /** 1-based line of the module where the block's first line is. */
  readonly moduleLine: number;
  readonly block: DocBlock;
}

export interface DocModule {
  readonly name: string;
  readonly text: string;
  readonly segments: readonly Segment[];
}

/**
 * The modules to check: one per checked block, and one per program (its TypeScript blocks joined
 * in order, as the walk-through is one program). `export {}` makes every module a module (top-level
 * await, no globals shared between blocks), whether or not it imports anything.
 */
export function modulesOf(blocks: readonly DocBlock[]): DocModule[] {
  const byName = new Map<string, { lines: string[]; segments: Segment[] }>();
  for (const block of blocks) {
    if (!isTypeScript(block) || block.fragment !== null) continue;
    const name = moduleNameOf(block);
    let m = byName.get(name);
    if (!m) byName.set(name, (m = { lines: [], segments: [] }));
    m.segments.push({ moduleLine: m.lines.length + 1, block });
    m.lines.push(...block.code.split('\n'));
  }
  return [...byName].map(([name, m]) => ({ name, text: `${m.lines.join('\n')}\nexport {};\n`, segments: m.segments }));
}

function main(): number {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const outDir = join(root, '.tmp', 'docs-check');
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });

  const blocks = docFiles(root).flatMap((file) => extractBlocks(readFileSync(join(root, file), 'utf8'), file));
  const skipped = blocks.filter((b) => b.fragment !== null);
  const modules = modulesOf(blocks);
  const byPath = new Map<string, DocModule>();
  for (const m of modules) {
    const path = join(outDir, m.name);
    writeFileSync(path, m.text);
    byPath.set(relative(root, path), m);
  }

  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const run = spawnSync(process.execPath, [tsc, '-p', join(root, 'scripts', 'tsconfig.docs.json'), '--noEmit', '--pretty', 'false'], {
    cwd: root,
    encoding: 'utf8',
  });
  const output = `${run.stdout}${run.stderr}`;
  for (const line of output.split('\n')) if (line.trim() !== '') console.error(toMarkdownPosition(line, byPath));
  for (const b of skipped) console.log(`skipped ${b.file}:${b.line} (fragment: ${b.fragment})`);
  const checked = blocks.length - skipped.length;
  const failed = run.status !== 0;
  console.log(`${checked} TypeScript blocks checked in ${modules.length} modules, ${skipped.length} fragments skipped: ${failed ? 'FAILED' : 'ok'}`);
  return failed ? 1 : 0;
}

/** `.tmp/docs-check/docs_x_L12.ts(3,5): error ...` -> `docs/x.md:14:5: error ...` (block line + offset). */
export function toMarkdownPosition(line: string, byPath: ReadonlyMap<string, DocModule>): string {
  const m = /^(.+?)\((\d+),(\d+)\): (.*)$/.exec(line);
  const module = m ? byPath.get(m[1] ?? '') : undefined;
  if (!m || !module) return line;
  const at = Number(m[2]);
  const segment = [...module.segments].reverse().find((s) => s.moduleLine <= at);
  if (!segment) return line;
  return `${segment.block.file}:${segment.block.line + at - segment.moduleLine}:${m[3]}: ${m[4]}`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exit(main());
