import type { ShardOwnershipFault } from '../errors/index.js';
import { BUCKET_COUNT } from '../shardmap/schema.js';
import type { ShardSpec } from '../shardmap/index.js';

/**
 * A shard owns the buckets of its ownership record (at first, its identity stamp's); the map only
 * says where to look (src/db/live-routing.ts combines them). These pure
 * functions compare the two as sets of buckets (a stamp written as "0-10,20-30" and a map that
 * writes ["20-30", "0-10"] agree), so a map edit that would hide a shard's players is found
 * before a query runs, whatever the spelling.
 */

export type BucketRange = readonly [number, number];

/** Inclusive ranges as the stamp stores them: "0-1023", "0-10,20-30", "7"; "" for none. */
export function formatBuckets(ranges: readonly BucketRange[]): string {
  return ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
}

/** formatBuckets for messages: "none" rather than an empty string. */
export function showBuckets(ranges: readonly BucketRange[]): string {
  return ranges.length === 0 ? 'none' : formatBuckets(ranges);
}

/**
 * The buckets of a stamp's text, sorted and merged, or null when the text is not a list of
 * bucket ranges inside the bucket space (a stamp written by hand or by a future format).
 */
export function parseBuckets(text: unknown): BucketRange[] | null {
  if (typeof text !== 'string') return null;
  if (text.trim() === '') return [];
  const set = new Uint8Array(BUCKET_COUNT);
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)(?:\s*-\s*(\d+))?\s*$/.exec(part);
    if (!m) return null;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo > hi || hi >= BUCKET_COUNT) return null;
    set.fill(1, lo, hi + 1);
  }
  return runsOf(set, 1);
}

/** What a map gives a shard compared with what its stamp owns: both empty when they agree. */
export interface BucketDiff {
  /** Buckets the map gives the shard that its stamp does not own. */
  gained: BucketRange[];
  /** Buckets its stamp owns that the map does not give it. */
  lost: BucketRange[];
}

export function compareBuckets(stamped: readonly BucketRange[], mapped: readonly BucketRange[]): BucketDiff {
  const own = bitmap(stamped);
  const given = bitmap(mapped);
  const gained = new Uint8Array(BUCKET_COUNT);
  const lost = new Uint8Array(BUCKET_COUNT);
  for (let b = 0; b < BUCKET_COUNT; b++) {
    if (given[b] && !own[b]) gained[b] = 1;
    else if (own[b] && !given[b]) lost[b] = 1;
  }
  return { gained: runsOf(gained, 1), lost: runsOf(lost, 1) };
}

export function sameBuckets(stamped: readonly BucketRange[], mapped: readonly BucketRange[]): boolean {
  const d = compareBuckets(stamped, mapped);
  return d.gained.length === 0 && d.lost.length === 0;
}

/**
 * What is known of a shard's stamp: its buckets when stamped (and readable), `unstamped` when the
 * database has no stamp or does not exist yet, `unknown` when it could not be read.
 */
export type StampKnowledge =
  | { readonly kind: 'stamped'; readonly buckets: readonly BucketRange[] }
  | { readonly kind: 'unstamped' }
  | { readonly kind: 'unknown'; readonly reason: string };

/**
 * Every shard of `mapShards` whose stamp disagrees with the map, with the other party of each
 * range: whom the map gives a shard's lost buckets to, and which stamped shard holds the
 * buckets the map gives it (null when no stamp read here owns them). `stamps` holds what was
 * read, by shard id; a shard missing from it is skipped. Pure: the callers do the reading.
 */
export function ownershipFaults(mapShards: readonly ShardSpec[], stamps: ReadonlyMap<string, StampKnowledge>): ShardOwnershipFault[] {
  const NONE = -1;
  const mapOwner = new Int32Array(BUCKET_COUNT).fill(NONE);
  const stampOwner = new Int32Array(BUCKET_COUNT).fill(NONE);
  mapShards.forEach((s, i) => {
    for (const [lo, hi] of s.buckets) mapOwner.fill(i, lo, hi + 1);
    const st = stamps.get(s.id);
    if (st?.kind === 'stamped') for (const [lo, hi] of st.buckets) stampOwner.fill(i, lo, hi + 1);
  });
  const faults: ShardOwnershipFault[] = [];
  mapShards.forEach((s, i) => {
    const st = stamps.get(s.id);
    if (st?.kind !== 'stamped') return;
    const diff = compareBuckets(st.buckets, s.buckets);
    if (diff.gained.length === 0 && diff.lost.length === 0) return;
    const nameOf = (owner: number) => (owner === NONE || owner === i ? null : (mapShards[owner]?.id ?? null));
    faults.push({
      shardId: s.id,
      owned: showBuckets(st.buckets),
      mapped: showBuckets(s.buckets),
      gained: splitBy(diff.gained, stampOwner).map(([ranges, owner]) => ({ buckets: formatBuckets(ranges), heldBy: nameOf(owner) })),
      lost: splitBy(diff.lost, mapOwner).map(([ranges, owner]) => ({ buckets: formatBuckets(ranges), givenTo: nameOf(owner) })),
    });
  });
  return faults;
}

/** The ranges grouped by `owner[b]` of their buckets, in order of first appearance. */
function splitBy(ranges: readonly BucketRange[], owner: Int32Array): [BucketRange[], number][] {
  const groups = new Map<number, BucketRange[]>();
  for (const [lo, hi] of ranges) {
    let start = lo;
    for (let b = lo; b <= hi; b++) {
      if (b === hi || owner[b + 1] !== owner[b]) {
        const o = owner[b] as number;
        groups.set(o, [...(groups.get(o) ?? []), [start, b]]);
        start = b + 1;
      }
    }
  }
  return [...groups].map(([o, r]) => [r, o]);
}

function bitmap(ranges: readonly BucketRange[]): Uint8Array {
  const set = new Uint8Array(BUCKET_COUNT);
  for (const [lo, hi] of ranges) set.fill(1, Math.max(0, lo), Math.min(BUCKET_COUNT, hi + 1));
  return set;
}

function runsOf(set: Uint8Array, value: number): BucketRange[] {
  const out: BucketRange[] = [];
  for (let b = 0; b < set.length; b++) {
    if (set[b] !== value) continue;
    let e = b;
    while (e + 1 < set.length && set[e + 1] === value) e++;
    out.push([b, e]);
    b = e;
  }
  return out;
}
