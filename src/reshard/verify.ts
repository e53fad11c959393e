import type pg from 'pg';
import type { MoveMismatch } from '../errors/index.js';
import { bucketExpr, rowsIn, type MovedTable } from './tables.js';

/** Per bucket: row count and the sum of the rows' 64-bit text hashes, as decimal text (exact). */
export type BucketSums = Map<number, { count: string; sum: string }>;

/**
 * Settings every checksum runs under, so both sides render a row to the same text: time zone,
 * date, interval and float formats are session settings, and a shard's defaults may differ.
 */
const CANONICAL = [
  `SET LOCAL TimeZone = 'UTC'`,
  `SET LOCAL DateStyle = 'ISO, YMD'`,
  `SET LOCAL IntervalStyle = 'postgres'`,
  `SET LOCAL extra_float_digits = 1`,
  `SET LOCAL bytea_output = 'hex'`,
];

/** Counts and checksums of buckets lo..hi of each table, in one read-only transaction (one snapshot). */
export async function checksums(client: pg.ClientBase, tables: readonly MovedTable[], lo: number, hi: number): Promise<Map<string, BucketSums>> {
  const out = new Map<string, BucketSums>();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    // sql-text: CANONICAL is the fixed list of SET statements above
    for (const s of CANONICAL) await client.query(s);
    for (const t of tables) {
      // sql-text: table and column names escaped by movedTables(), bucket bounds checked integers (inRange); COPY and DDL take no parameters
      const r = await client.query<{ b: number; n: string; s: string }>(
        `SELECT ${bucketExpr(t.key)} AS b, count(*)::text AS n, coalesce(sum(hashtextextended(ROW(${t.columns.join(', ')})::text, 0)), 0)::text AS s
           FROM ${t.sql} WHERE ${rowsIn(t, lo, hi)} GROUP BY 1`,
      );
      out.set(t.name, new Map(r.rows.map((row) => [Number(row.b), { count: row.n, sum: row.s }])));
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return out;
}

/** Every (table, bucket) where the two sides differ; empty when equal. A bucket missing on one side counts as 0 rows. */
export function compareSums(tables: readonly MovedTable[], source: Map<string, BucketSums>, target: Map<string, BucketSums>): MoveMismatch[] {
  const zero = { count: '0', sum: '0' };
  const out: MoveMismatch[] = [];
  for (const t of tables) {
    const a: BucketSums = source.get(t.name) ?? new Map<number, { count: string; sum: string }>();
    const b: BucketSums = target.get(t.name) ?? new Map<number, { count: string; sum: string }>();
    for (const bucket of [...new Set([...a.keys(), ...b.keys()])].sort((x, y) => x - y)) {
      const s = a.get(bucket) ?? zero;
      const d = b.get(bucket) ?? zero;
      if (s.count !== d.count || s.sum !== d.sum) out.push({ table: t.name, bucket, source: s, target: d });
    }
  }
  return out;
}
