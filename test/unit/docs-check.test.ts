import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { docFiles, extractBlocks, extractFences, modulesOf, toMarkdownPosition } from '../../scripts/check-docs.js';

const root = new URL('../..', import.meta.url).pathname;

const SAMPLE = [
  '# Title', // 1
  '', // 2
  '```ts', // 3
  "import { parsePlayerId } from 'shardline';", // 4
  "parsePlayerId('1');", // 5
  '```', // 6
  '', // 7
  '```sh', // 8
  'npx shardline --help', // 9
  '```', // 10
  '', // 11
  '````typescript', // 12
  '// fragment: shows only the shape of an option', // 13
  '```', // 14: not a closing fence of a four-backtick block... it is shorter
  '````', // 15
  '', // 16
  '<!-- docs-check: program walk -->', // 17
  '```ts', // 18
  'const a = 1;', // 19
  '```', // 20
  '```sh', // 21
  'echo between', // 22
  '```', // 23
  '```ts', // 24
  'console.log(a);', // 25
  '```', // 26
  '<!-- docs-check: end -->', // 27
  '```json', // 28
  '{ "ts": true }', // 29
  '```', // 30
].join('\n');

describe('docs check: extracting blocks', () => {
  it('finds every ts and typescript block with its first code line, and nothing of other languages', () => {
    const blocks = extractBlocks(SAMPLE, 'x.md');
    expect(blocks.map((b) => [b.line, b.lang])).toEqual([
      [4, 'ts'],
      [13, 'typescript'],
      [19, 'ts'],
      [25, 'ts'],
    ]);
    expect(blocks[0]?.code).toBe("import { parsePlayerId } from 'shardline';\nparsePlayerId('1');");
  });

  it('closes a fence only with one at least as long, so a longer fence may show a shorter one', () => {
    const block = extractBlocks(SAMPLE, 'x.md')[1];
    expect(block?.code).toBe('// fragment: shows only the shape of an option\n```');
  });

  it('honours the fragment marker on the first line, and only there', () => {
    const blocks = extractBlocks(SAMPLE, 'x.md');
    expect(blocks.map((b) => b.fragment)).toEqual([null, 'shows only the shape of an option', null, null]);
    const late = extractBlocks('```ts\nconst x = 1;\n// fragment: too late\n```\n', 'y.md');
    expect(late[0]?.fragment).toBeNull();
  });

  it('skips fragments and joins the blocks of a program into one module, in order', () => {
    const modules = modulesOf(extractBlocks(SAMPLE, 'docs/x.md'));
    expect(modules.map((m) => m.name)).toEqual(['docs_x_L4.ts', 'docs_x_program_walk.ts']);
    const program = modules[1];
    expect(program?.text).toBe('const a = 1;\nconsole.log(a);\nexport {};\n');
    expect(program?.segments.map((s) => [s.moduleLine, s.block.line])).toEqual([
      [1, 19],
      [2, 25],
    ]);
    // Every module is a module, also without an import.
    expect(modules.every((m) => m.text.endsWith('export {};\n'))).toBe(true);
  });

  it('keeps the shell steps of a program in order with its TypeScript', () => {
    const steps = extractFences(SAMPLE, 'x.md').filter((b) => b.program === 'walk');
    expect(steps.map((b) => [b.lang, b.code])).toEqual([
      ['ts', 'const a = 1;'],
      ['sh', 'echo between'],
      ['ts', 'console.log(a);'],
    ]);
  });

  it('maps a compiler position back to the markdown file and line', () => {
    const modules = modulesOf(extractBlocks(SAMPLE, 'docs/x.md'));
    const byPath = new Map(modules.map((m) => [`.tmp/docs-check/${m.name}`, m]));
    expect(toMarkdownPosition('.tmp/docs-check/docs_x_program_walk.ts(2,9): error TS2304: nope', byPath)).toBe('docs/x.md:25:9: error TS2304: nope');
    expect(toMarkdownPosition('.tmp/docs-check/docs_x_L4.ts(2,1): error TS1: e', byPath)).toBe('docs/x.md:5:1: error TS1: e');
    expect(toMarkdownPosition('something else', byPath)).toBe('something else');
  });

  it('refuses a program that is never ended', () => {
    expect(() => extractFences('<!-- docs-check: program p -->\n```ts\n1;\n```\n', 'z.md')).toThrow(/no <!-- docs-check: end -->/);
  });
});

describe('docs check: the repository', () => {
  it('checks the README and every docs/*.md, and finds the walk-through as a program', () => {
    const files = docFiles(root);
    expect(files[0]).toBe('README.md');
    expect(files).toEqual(expect.arrayContaining(['docs/settlement.md', 'docs/rooms.md', 'docs/shard-map.md']));
    const readme = extractFences(readFileSync(`${root}README.md`, 'utf8'), 'README.md');
    const walk = readme.filter((b) => b.program === 'walkthrough');
    expect(walk.filter((b) => b.lang === 'ts').length).toBeGreaterThanOrEqual(4);
    expect(walk.some((b) => b.lang === 'sh' && b.code.includes('shardline migrate latest'))).toBe(true);
  });

  it('marks fragments as the exception: most TypeScript blocks are checked', () => {
    const blocks = docFiles(root).flatMap((f) => extractBlocks(readFileSync(`${root}${f}`, 'utf8'), f));
    const fragments = blocks.filter((b) => b.fragment !== null);
    expect(blocks.length).toBeGreaterThan(10);
    expect(fragments.length).toBeLessThanOrEqual(Math.floor(blocks.length / 5));
  });
});
