// The README's walk-through, run as written: its shell steps in a fresh app folder (where
// node_modules/shardline is this checkout), then its TypeScript blocks as one program, against the
// machine's PostgreSQL and Redis, on databases, a map and a key prefix of this test's own.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { extractFences, type DocBlock } from '../../scripts/check-docs.js';
import { REDIS_URL, RUN_PREFIX, uniqueName, urlFor } from '../support/env.js';
import { dropDatabases } from '../support/shards.js';

const root = path.resolve(new URL('../..', import.meta.url).pathname);
const steps = extractFences(readFileSync(path.join(root, 'README.md'), 'utf8'), 'README.md').filter((b) => b.program === 'walkthrough');
const shellSteps = steps.filter((b) => b.lang === 'sh');
const program = steps.filter((b) => b.lang === 'ts' || b.lang === 'typescript');

const app = path.join(root, '.tmp', uniqueName('walkthrough-app'));
const base = uniqueName(RUN_PREFIX + 'walk');
const prefix = uniqueName('walk');
const databases: string[] = [];

interface Run {
  code: number | null;
  output: string;
}

/** Runs a command in the app folder; resolves with its exit code and interleaved output. */
function run(command: string, args: readonly string[], env: Record<string, string | undefined>, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: app, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

// The environment of every step: the machine's Redis, no map or prefix from the developer's shell,
// and npx that never downloads anything (the bin must come from node_modules/shardline).
const stepEnv = {
  REDIS_URL,
  SHARDLINE_MAP: undefined,
  SHARDLINE_QUEUE_PREFIX: undefined,
  npm_config_yes: 'false',
  npm_config_offline: 'true',
  npm_config_update_notifier: 'false',
};

/** A fresh game-server project that has installed shardline: this checkout, linked. */
function makeApp(): void {
  mkdirSync(path.join(app, 'node_modules', '.bin'), { recursive: true });
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'walkthrough-app', private: true, type: 'module', dependencies: { shardline: '*' } }));
  symlinkSync(root, path.join(app, 'node_modules', 'shardline'), 'dir');
  symlinkSync(path.join(root, 'src', 'cli', 'bin.js'), path.join(app, 'node_modules', '.bin', 'shardline'));
}

/**
 * What the README asks the reader to do by hand after copying the map: point every shard at a
 * database of their own (here: this test's), and name the deployment's Redis prefix.
 */
function pointMapAtOwnDatabases(): void {
  const file = path.join(app, 'shardmap.json');
  const map = JSON.parse(readFileSync(file, 'utf8')) as { prefix?: string; shards: { id: string; connection: string }[] };
  for (const shard of map.shards) {
    const db = `${base}_${shard.id.replace(/[^a-z0-9]/gi, '_')}`;
    databases.push(db);
    shard.connection = urlFor(db);
  }
  map.prefix = prefix;
  writeFileSync(file, JSON.stringify(map, null, 2));
}

/**
 * The program's imports resolve to this checkout's TypeScript sources (as the docs check compiles
 * them), so the walk-through runs against the code under test, not a stale build.
 */
function resolveImports(code: string): string {
  return code.replace(/(from\s+)(['"])shardline(\/[a-z-]+)?\2/g, (_m, from: string, quote: string, sub: string | undefined) => {
    const target = sub ? path.join(root, 'src', sub.slice(1), 'index.ts') : path.join(root, 'src', 'index.ts');
    return `${from}${quote}${target}${quote}`;
  });
}

async function deletePrefixKeys(): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    for (const pattern of [`${prefix}*`, `*{${prefix}*`]) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await redis.del(...keys);
      } while (cursor !== '0');
    }
  } finally {
    redis.disconnect();
  }
}

afterAll(async () => {
  await dropDatabases(databases);
  await deletePrefixKeys();
  rmSync(app, { recursive: true, force: true });
}, 60_000);

describe('README walk-through', () => {
  it('has shell steps first, then one TypeScript program, none of it a fragment', () => {
    expect(shellSteps.length).toBeGreaterThanOrEqual(2);
    expect(program.length).toBeGreaterThanOrEqual(4);
    const firstTs = steps.indexOf(program[0] as DocBlock);
    expect(steps.slice(firstTs).every((b) => b.lang === 'ts' || b.lang === 'typescript')).toBe(true);
    expect(program.every((b) => b.fragment === null)).toBe(true);
    expect(shellSteps.some((b) => /npx shardline migrate latest --map /.test(b.code))).toBe(true);
  });

  it('runs as written: map, migrate, players, rooms, a table, the worker, the result, the leaderboard', async () => {
    makeApp();
    let mapEdited = false;
    for (const step of shellSteps) {
      const r = await run('bash', ['-euo', 'pipefail', '-c', step.code], stepEnv, 120_000);
      expect(r.code, `README.md:${step.line}\n${step.code}\n${r.output}`).toBe(0);
      if (!mapEdited && step.code.includes('shardmap.json') && step.code.startsWith('cp ')) {
        pointMapAtOwnDatabases();
        mapEdited = true;
      }
    }
    expect(mapEdited).toBe(true);

    writeFileSync(path.join(app, 'walkthrough.ts'), resolveImports(program.map((b) => b.code).join('\n')) + '\nexport {};\n');
    const r = await run(path.join(root, 'node_modules', '.bin', 'tsx'), ['walkthrough.ts'], stepEnv, 120_000);
    expect(r.code, r.output).toBe(0);
    expect(r.output).toMatch(/^match sz-hall-1\/t-1\/\d+: applied$/m);
    expect(r.output).toMatch(/^1\. Ann 40$/m);
    expect(r.output).toMatch(/^[23]\. Bo -20$/m);
    expect(r.output).toMatch(/^[23]\. Chen -20$/m);
  }, 240_000);
});
