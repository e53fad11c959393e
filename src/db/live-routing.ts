import { MapAheadOfOwnershipError, ShardOwnershipError, type ShardOwnershipFault } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import { attachConnectionUrl, connectionUrlOf } from '../shardmap/connection-url.js';
import { BUCKET_COUNT } from '../shardmap/schema.js';
import type { RegionSpec, ShardMap, ShardSpec } from '../shardmap/index.js';
import { formatBuckets, ownershipFaults, type BucketRange, type StampKnowledge } from './bucket-ownership.js';

/**
 * Live routing (docs/shard-map.md, "Live routing"): the map file combined with every shard's
 * ownership record (migration 0009), bucket by bucket, the higher epoch winning. Pure: the caller
 * reads the records (ShardSet.refreshRouting, migrate) and decides what to do with a refusal.
 */

/** A shard's ownership record, `shardline_meta['ownership']` (contract A). */
export interface OwnershipRecord {
  readonly version: number;
  /** [lo, hi, epoch]: owned and served, got at that epoch (0: from the map). */
  readonly owned: readonly (readonly [number, number, number])[];
  /** [lo, hi, moveId]: being copied here, not owned yet. */
  readonly incoming: readonly (readonly [number, number, string])[];
  /** [lo, hi, moveId]: cut-over in progress, writes refused as moving. */
  readonly frozen: readonly (readonly [number, number, string])[];
  /** [lo, hi, shardId, epoch]: moved away at that epoch. */
  readonly movedTo: readonly (readonly [number, number, string, number])[];
}

const isBucket = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) < BUCKET_COUNT;
const isEpoch = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;

/** The record in a stored value, or null when it is not one (then nothing is known of that shard). */
export function parseOwnershipRecord(value: unknown): OwnershipRecord | null {
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  const list = (key: string, ok: (e: readonly unknown[]) => boolean): unknown[][] | null => {
    const a = v[key] ?? [];
    if (!Array.isArray(a)) return null;
    for (const e of a) if (!Array.isArray(e) || !isBucket(e[0]) || !isBucket(e[1]) || e[0] > e[1] || !ok(e)) return null;
    return a as unknown[][];
  };
  const owned = list('owned', (e) => isEpoch(e[2]));
  const incoming = list('incoming', (e) => typeof e[2] === 'string');
  const frozen = list('frozen', (e) => typeof e[2] === 'string');
  const movedTo = list('movedTo', (e) => typeof e[2] === 'string' && isEpoch(e[3]));
  if (!owned || !incoming || !frozen || !movedTo || !isEpoch(v.version)) return null;
  return {
    version: v.version,
    owned: owned as unknown as OwnershipRecord['owned'],
    incoming: incoming as unknown as OwnershipRecord['incoming'],
    frozen: frozen as unknown as OwnershipRecord['frozen'],
    movedTo: movedTo as unknown as OwnershipRecord['movedTo'],
  };
}

/** A range of the map that the records override, for the one warning. */
export interface RoutingOverride {
  buckets: string;
  /** The shard the map gives them to. */
  mapShard: string;
  /** The shard that owns them per the records. */
  owner: string;
  epoch: number;
}

export interface LiveRouting {
  /** The map with each shard's buckets as live routing assigns them, and `epoch` the highest known. */
  map: ShardMap;
  /** Where the records override the (older) map. */
  overrides: RoutingOverride[];
  /** Buckets frozen in a cut-over, by the shard holding them (routed there: its writes back off). */
  frozen: ReadonlyMap<string, readonly BucketRange[]>;
}

const NONE = -1;

/**
 * Combines `map` with the records read (by shard id; a shard missing from `records` is unknown and
 * the map stands for what only it could say). Per bucket, the live claim is the highest epoch any
 * record gives it, as `owned` (this shard) or `movedTo` (that shard):
 * - the map agrees with the live owner: served there;
 * - the map is older than the claim (its epoch below the bucket's live epoch): the records win,
 *   listed in `overrides` (the caller warns once);
 * - the map gives the bucket to another shard at the live epoch (a map edit without a move: it
 *   would hide the owner's players) or gives a bucket to a shard whose record does not own it and
 *   no record claims: ShardOwnershipError;
 * - the map gives it to another shard at an epoch above the live one: MapAheadOfOwnershipError.
 * A bucket frozen in a cut-over stays with the shard that froze it until a record claims it higher.
 */
export function combineRouting(map: ShardMap, records: ReadonlyMap<string, OwnershipRecord>): LiveRouting {
  const mapEpoch = map.epoch ?? 0;
  const index = new Map(map.shards.map((s, i) => [s.id, i]));
  const liveEpoch = new Int32Array(BUCKET_COUNT).fill(NONE);
  const liveOwner: (string | null)[] = new Array<string | null>(BUCKET_COUNT).fill(null);
  const liveOwned = new Uint8Array(BUCKET_COUNT); // the claim is an `owned` entry (beats a movedTo at the same epoch)
  const frozenBy = new Int32Array(BUCKET_COUNT).fill(NONE);
  const claim = (lo: number, hi: number, owner: string, epoch: number, owned: boolean) => {
    for (let b = lo; b <= hi; b++) {
      const e = liveEpoch[b] as number;
      if (epoch > e || (epoch === e && owned && !liveOwned[b])) {
        liveEpoch[b] = epoch;
        liveOwner[b] = owner;
        liveOwned[b] = owned ? 1 : 0;
      }
    }
  };
  for (const s of map.shards) {
    const r = records.get(s.id);
    if (!r) continue;
    for (const [lo, hi, e] of r.owned) claim(lo, hi, s.id, e, true);
    for (const [lo, hi, to, e] of r.movedTo) claim(lo, hi, to, e, false);
    for (const [lo, hi] of r.frozen) frozenBy.fill(index.get(s.id) as number, lo, hi + 1);
  }

  const assigned = Int32Array.from(map.bucketOwner);
  const overrides: { b: number; mapShard: number; owner: number; epoch: number }[] = [];
  const ahead: { b: number; mapShard: number; owner: string; epoch: number }[] = [];
  const missingOwner: { b: number; owner: string }[] = [];
  for (let b = 0; b < BUCKET_COUNT; b++) {
    const x = map.bucketOwner[b] as number;
    const e = liveEpoch[b] as number;
    if (e === NONE) {
      const f = frozenBy[b] as number;
      if (f !== NONE) assigned[b] = f;
      continue;
    }
    const owner = liveOwner[b] as string;
    const o = index.get(owner);
    if (o === x) continue;
    if (mapEpoch < e) {
      if (o === undefined) missingOwner.push({ b, owner });
      else {
        assigned[b] = o;
        overrides.push({ b, mapShard: x, owner: o, epoch: e });
      }
    } else if (mapEpoch > e) ahead.push({ b, mapShard: x, owner, epoch: e });
    // mapEpoch === e: left as the map says, so the fault check below names it.
  }

  if (ahead.length > 0) {
    throw new MapAheadOfOwnershipError(
      mapEpoch,
      runs(ahead, (a) => `${a.mapShard}|${a.owner}|${a.epoch}`).map(([first, ranges]) => ({
        buckets: formatBuckets(ranges),
        mapShard: map.shards[first.mapShard]?.id ?? '?',
        owner: first.owner,
        liveEpoch: first.epoch,
      })),
    );
  }

  // What each recorded shard owns (and holds frozen) live, against the map as the records amend it:
  // any difference left is a map edit that would hide players.
  const effective = map.shards.map((s, i) => ({ ...s, buckets: rangesOf(assigned, i) }));
  const knowledge = new Map<string, StampKnowledge>();
  for (const s of map.shards) {
    const r = records.get(s.id);
    if (!r) continue;
    const mine = new Uint8Array(BUCKET_COUNT);
    // A frozen bucket is its freezer's only while no record claims it: once the target's commit is
    // read (even beside a source record read mid-cut-over), the target's claim stands.
    for (let b = 0; b < BUCKET_COUNT; b++) if (liveOwner[b] === s.id || (frozenBy[b] === s.index && liveEpoch[b] === NONE)) mine[b] = 1;
    knowledge.set(s.id, { kind: 'stamped', buckets: rangesOf(mine, 1) });
  }
  const faults: ShardOwnershipFault[] = ownershipFaults(effective, knowledge);
  if (missingOwner.length > 0) {
    const byOwner = runs(missingOwner, (m) => m.owner);
    for (const [first, ranges] of byOwner) {
      const given = map.shards[map.bucketOwner[ranges[0]?.[0] ?? 0] as number]?.id ?? '?';
      faults.push({
        shardId: first.owner,
        owned: formatBuckets(ranges),
        mapped: 'none (it is not in the map)',
        gained: [],
        lost: [{ buckets: formatBuckets(ranges), givenTo: given }],
      });
    }
  }
  if (faults.length > 0) throw new ShardOwnershipError(faults);

  let epoch = mapEpoch;
  for (const e of liveEpoch) if (e > epoch) epoch = e;
  const frozen = new Map<string, BucketRange[]>();
  map.shards.forEach((s, i) => {
    const r = rangesOf(frozenBy, i);
    if (r.length > 0) frozen.set(s.id, r);
  });
  return {
    map: overrides.length === 0 && epoch === mapEpoch ? map : withAssignment(map, assigned, epoch),
    overrides: runs(overrides, (o) => `${o.mapShard}|${o.owner}|${o.epoch}`).map(([first, ranges]) => ({
      buckets: formatBuckets(ranges),
      mapShard: map.shards[first.mapShard]?.id ?? '?',
      owner: map.shards[first.owner]?.id ?? '?',
      epoch: first.epoch,
    })),
    frozen,
  };
}

/** The one warning for a map the records override, with how to write the current map. */
export function overrideWarning(mapEpoch: number, overrides: readonly RoutingOverride[]): string {
  const moved = overrides.map((o) => `buckets ${o.buckets} of ${showValue(o.mapShard)} are owned by ${showValue(o.owner)} since epoch ${o.epoch}`);
  return (
    `the shard map (epoch ${mapEpoch}) is older than the shards' ownership records, which routing follows: ${moved.join('; ')}; ` +
    'write the current map with "shardline buckets move … --write-map FILE" or "shardline map write"'
  );
}

/** The buckets live routing gives `shardId`. */
export function bucketsOf(map: ShardMap, shardId: string): readonly BucketRange[] {
  return map.shards.find((s) => s.id === shardId)?.buckets ?? [];
}

/** A map like `map` whose buckets are `assigned` (bucket → shard index), its specs copied with their connections. */
function withAssignment(map: ShardMap, assigned: Int32Array, epoch: number): ShardMap {
  const shards: ShardSpec[] = map.shards.map((s, i) => {
    const buckets = rangesOf(assigned, i);
    const spec: ShardSpec = { ...s, buckets, bucketCount: buckets.reduce((n, [lo, hi]) => n + hi - lo + 1, 0) };
    const url = connectionUrlOf(s);
    return url ? attachConnectionUrl(spec, url) : spec;
  });
  const regions: RegionSpec[] = map.regions.map((r) => ({ name: r.name, shards: shards.filter((s) => s.region === r.name) }));
  return { ...map, epoch, regions, shards, bucketOwner: Uint16Array.from(assigned) };
}

function rangesOf(values: ArrayLike<number>, value: number): BucketRange[] {
  const out: BucketRange[] = [];
  for (let b = 0; b < values.length; b++) {
    if (values[b] !== value) continue;
    let e = b;
    while (e + 1 < values.length && values[e + 1] === value) e++;
    out.push([b, e]);
    b = e;
  }
  return out;
}

/** Items with a bucket `b`, grouped by `key` (in order of first appearance), each group's buckets as ranges. */
function runs<T extends { b: number }>(items: readonly T[], key: (t: T) => string): [T, BucketRange[]][] {
  const groups = new Map<string, { first: T; ranges: [number, number][] }>();
  for (const it of items) {
    const k = key(it);
    const g = groups.get(k);
    if (!g) groups.set(k, { first: it, ranges: [[it.b, it.b]] });
    else {
      const last = g.ranges[g.ranges.length - 1] as [number, number];
      if (last[1] + 1 === it.b) last[1] = it.b;
      else g.ranges.push([it.b, it.b]);
    }
  }
  return [...groups.values()].map((g) => [g.first, g.ranges]);
}
