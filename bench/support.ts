/**
 * What the benchmarks share: options, throwaway shard databases cloned from one migrated template,
 * statement counting, percentiles, and running a bench file on its own.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { ShardMigrator, ShardSet, validateShardMap, type ShardMap, type ShardSetOptions } from '../src/index.js';
import { printResults } from './report.js';
import type { BenchResult } from './types.js';

/** Benches create their databases here under unique names and drop them at the end. */
export const ADMIN_URL = process.env.SHARDLINE_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** The 4-shard layout every bench uses: 3 regions, Shenzhen split over two shards. */
export const BENCH_LAYOUT = [
  { id: 'sz-1', region: 'shenzhen', buckets: '0-1023' },
  { id: 'sz-2', region: 'shenzhen', buckets: '1024-2047' },
  { id: 'sc-1', region: 'sichuan', buckets: '2048-3071' },
  { id: 'na-1', region: 'north-america', buckets: '3072-4095' },
] as const;

/** `--name N` on the command line, else `$ENV_NAME`, else the fallback: a positive integer. */
export function option(name: string, envName: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const raw = i >= 0 ? process.argv[i + 1] : process.env[envName];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${raw}`);
  return n;
}

export function urlFor(database: string): string {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export async function dropDatabases(names: readonly string[]): Promise<void> {
  await withAdmin(async (c) => {
    for (const n of names) await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(n)} WITH (FORCE)`);
  });
}

export function benchMap(entries: readonly { id: string; region: string; db: string; buckets: string }[]): ShardMap {
  return validateShardMap({
    version: 1,
    buckets: 4096,
    regions: [...new Set(entries.map((s) => s.region))],
    shards: entries.map((s) => ({ id: s.id, region: s.region, connection: urlFor(s.db), buckets: [s.buckets] })),
  });
}

/**
 * Migrates one template database and clones `names` from it (recording every database in
 * `created`, for `dropDatabases`). Clones are not stamped: `benchShards` stamps its shards.
 */
export async function cloneFromTemplate(base: string, names: readonly string[], created: string[]): Promise<void> {
  const template = `${base}_tpl`;
  await withAdmin((c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(template)}`));
  created.push(template);
  await new ShardMigrator(benchMap([{ id: 't', region: 't', db: template, buckets: '0-4095' }]).shards[0]!).applyPending();
  await withAdmin(async (c) => {
    for (const n of names) {
      await c.query(`CREATE DATABASE ${pg.escapeIdentifier(n)} TEMPLATE ${pg.escapeIdentifier(template)}`);
      created.push(n);
    }
  });
}

/** Four migrated, stamped shards (BENCH_LAYOUT) and a ShardSet over them. */
export async function benchShards(base: string, created: string[], options: ShardSetOptions = {}): Promise<ShardSet> {
  const names = BENCH_LAYOUT.map((_, i) => `${base}_${i}`);
  await cloneFromTemplate(base, names, created);
  const map = benchMap(BENCH_LAYOUT.map((s, i) => ({ ...s, db: names[i]! })));
  await Promise.all(map.shards.map((s) => new ShardMigrator(s).latest()));
  return new ShardSet(map, { poolMax: 8, ...options });
}

/** Counts the statements sent to each shard (wraps each pooled client's query; pass-through). */
export function countStatements(set: ShardSet): { total(): number; touched(): number; reset(): void } {
  const counts = new Map<string, number>();
  for (const s of set.shards) {
    set.pool(s.id).on('acquire', (client: pg.PoolClient & { counted?: true }) => {
      if (client.counted) return;
      client.counted = true;
      const query = client.query.bind(client) as (...a: unknown[]) => unknown;
      (client as { query: unknown }).query = (...a: unknown[]) => {
        counts.set(s.id, (counts.get(s.id) ?? 0) + 1);
        return query(...a);
      };
    });
  }
  return {
    total: () => [...counts.values()].reduce((a, b) => a + b, 0),
    touched: () => counts.size,
    reset: () => counts.clear(),
  };
}

/** The p-th percentile of an ascending list. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

export const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

/** Runs the bench and prints its table when the file is run directly (`npx tsx bench/x.bench.ts`). */
export function runIfMain(moduleUrl: string, run: () => Promise<BenchResult[]>): void {
  if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(moduleUrl)) {
    run().then(printResults, (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
  }
}
