import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * Each subpath export, imported alone in a fresh Node process, loads only the packages it needs:
 * code that only routes must not pay for BullMQ, knex or prom-client (or open anything). The
 * pack-check CI step repeats the check on the built, installed package.
 */
const run = promisify(execFile);
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { exports: Record<string, unknown>; sideEffects?: unknown };
const HEAVY = ['bullmq', 'knex', 'prom-client'] as const;

/** Packages each subpath must not load: the heavy three unless it is what the subpath is for, and more. */
const FORBIDDEN: Record<string, readonly string[]> = {
  routing: [...HEAVY, 'ioredis', 'pg', 'kysely', 'pino'],
  shardmap: [...HEAVY, 'ioredis', 'pg', 'kysely', 'pino'],
  errors: [...HEAVY, 'ioredis', 'pg', 'kysely', 'pino', 'zod'],
  accounts: [...HEAVY, 'ioredis'],
  scores: [...HEAVY, 'ioredis'],
  db: [...HEAVY, 'ioredis'],
  rooms: [...HEAVY, 'pg'],
  migrate: ['bullmq', 'prom-client', 'ioredis'],
  settlement: [],
};

const dir = mkdtempSync(path.join(tmpdir(), 'shardline-subpaths-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The packages (node_modules names) that importing `module` resolves, recorded by a resolve hook. */
async function packagesLoadedBy(module: string): Promise<Set<string>> {
  const log = path.join(dir, `${path.basename(path.dirname(module))}.log`);
  await run(
    process.execPath,
    ['--import', 'tsx/esm', '--import', './test/package/record-loads.mjs', '--input-type=module', '-e', `await import(${JSON.stringify(module)});`],
    { env: { ...process.env, SHARDLINE_LOAD_LOG: log }, timeout: 60_000 },
  );
  const names = new Set<string>();
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(line.split(' ')[0] ?? '');
    if (m?.[1]) names.add(m[1]);
  }
  return names;
}

describe('subpath exports', () => {
  const subpaths = Object.keys(pkg.exports)
    .filter((k) => k !== '.' && k !== './package.json')
    .map((k) => k.slice(2));

  it('are the library folders, each with its own barrel, and the package declares no side effects', () => {
    expect(subpaths.sort()).toEqual(Object.keys(FORBIDDEN).sort());
    for (const name of subpaths) {
      expect(existsSync(`src/${name}/index.ts`), name).toBe(true);
      expect(pkg.exports[`./${name}`]).toEqual({ types: `./dist/src/${name}/index.d.ts`, import: `./dist/src/${name}/index.js` });
    }
    expect(pkg.sideEffects).toBe(false);
  });

  it.each(Object.entries(FORBIDDEN))('shardline/%s loads none of the packages it does not need', async (name, forbidden) => {
    const loaded = await packagesLoadedBy(path.resolve(`src/${name}/index.ts`));
    expect(
      forbidden.filter((p) => loaded.has(p)),
      `shardline/${name} loaded ${[...loaded].join(', ')}`,
    ).toEqual([]);
  });
});
