import type { ShardSet } from '../db/index.js';

type Ranges = readonly (readonly [number, number])[];

const BUCKETS = 4096;

/**
 * The bucket ranges a shard serves under current routing (`ShardSet.ownedBuckets`): its rows of
 * other buckets (copied in by a move in progress, or left behind until purged) are not counted,
 * so a player in a move is counted once.
 */
export function ownedRanges(shards: ShardSet, shardId: string): Ranges {
  return shards.ownedBuckets(shardId);
}

/** The buckets not in `ranges`, as ranges (empty when they cover every bucket). */
export function complement(ranges: Ranges): [number, number][] {
  const sorted = [...ranges].map(([lo, hi]) => [lo, hi] as [number, number]).sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  let next = 0;
  for (const [lo, hi] of sorted) {
    if (lo > next) out.push([next, lo - 1]);
    next = Math.max(next, hi + 1);
  }
  if (next < BUCKETS) out.push([next, BUCKETS - 1]);
  return out;
}
