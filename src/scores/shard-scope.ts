import { sql, type RawBuilder } from 'kysely';
import type { ShardSet } from '../db/index.js';

type Ranges = readonly (readonly [number, number])[];

const BUCKETS = 4096;

/**
 * The bucket ranges a shard serves under current routing: its rows of other buckets (copied in by
 * a move, or left behind until purged) are not counted, so a player in a move is counted once.
 * `ShardSet.ownedBuckets` (live routing) when the ShardSet has it, else the map's own buckets.
 */
export function ownedRanges(shards: ShardSet, shardId: string): Ranges {
  const live = (shards as unknown as { ownedBuckets?: (id: string) => Ranges }).ownedBuckets;
  if (typeof live === 'function') return live.call(shards, shardId);
  return shards.router.shard(shardId).buckets;
}

/** The bucket of the player id in `column`, in SQL (the same expression as the leaderboard_scores_bucket index). */
const bucketOf = (column: string) => sql`((${sql.ref(column)} >> 10) & 4095)`;

/** True for rows whose player is in `ranges`; `true` itself when they cover every bucket. */
export function inBuckets(column: string, ranges: Ranges): RawBuilder<boolean> {
  const merged = merge(ranges);
  if (merged.length === 1 && merged[0]![0] === 0 && merged[0]![1] === BUCKETS - 1) return sql<boolean>`true`;
  if (merged.length === 0) return sql<boolean>`false`;
  return sql<boolean>`(${sql.join(
    merged.map(([lo, hi]) => sql`${bucketOf(column)} BETWEEN ${sql.lit(lo)} AND ${sql.lit(hi)}`),
    sql` OR `,
  )})`;
}

/** The buckets not in `ranges`, as ranges (empty when they cover every bucket). */
export function complement(ranges: Ranges): [number, number][] {
  const out: [number, number][] = [];
  let next = 0;
  for (const [lo, hi] of merge(ranges)) {
    if (lo > next) out.push([next, lo - 1]);
    next = Math.max(next, hi + 1);
  }
  if (next < BUCKETS) out.push([next, BUCKETS - 1]);
  return out;
}

function merge(ranges: Ranges): [number, number][] {
  const sorted = [...ranges].map(([lo, hi]) => [lo, hi] as [number, number]).sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push(r);
  }
  return out;
}
