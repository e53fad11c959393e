import { sql, type RawBuilder } from 'kysely';
import { BUCKET_COUNT } from '../shardmap/schema.js';
import type { BucketRange } from './bucket-ownership.js';

const COLUMN = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;

/**
 * A condition true for rows whose player id column (`column`, e.g. `player_id` or `s.player_id`)
 * lies in `ranges` (inclusive bucket ranges, as `shards.ownedBuckets(shardId)` gives them): a
 * scatter query limited this way counts a player once while a moved copy remains on its old shard.
 * The whole bucket space is plain `true`; no range is `false`. It computes the bucket from the id
 * (`(id >> 10) & 4095`), so no index is needed and the planner keeps the query's own.
 */
export function bucketFilter(column: string, ranges: readonly (readonly [number, number])[]): RawBuilder<boolean> {
  if (!COLUMN.test(column)) throw new TypeError(`bucketFilter: ${JSON.stringify(column)} is not a plain column name`);
  const merged = merge(ranges);
  if (merged.length === 1 && merged[0]?.[0] === 0 && merged[0][1] === BUCKET_COUNT - 1) return sql<boolean>`true`;
  if (merged.length === 0) return sql<boolean>`false`;
  const bucket = sql`((${sql.ref(column)} >> 10) & 4095)`;
  // sql-text: bucket bounds are integers merged and range-checked by merge(); literals so the planner sees them
  const parts = merged.map(([lo, hi]) => (lo === hi ? sql`${bucket} = ${sql.lit(lo)}` : sql`${bucket} BETWEEN ${sql.lit(lo)} AND ${sql.lit(hi)}`));
  return sql<boolean>`(${sql.join(parts, sql` OR `)})`;
}

function merge(ranges: readonly (readonly [number, number])[]): BucketRange[] {
  const sorted = ranges
    .map(([lo, hi]) => [Math.max(0, Math.trunc(lo)), Math.min(BUCKET_COUNT - 1, Math.trunc(hi))] as [number, number])
    .filter(([lo, hi]) => Number.isFinite(lo) && Number.isFinite(hi) && lo <= hi)
    .sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}
