import { InvalidPlayerIdError, UnknownRegionError, UnknownShardError, ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import type { RegionSpec, ShardMap, ShardSpec } from '../shardmap/types.js';
import { PlayerIdGenerator, type PlayerIdGeneratorOptions } from './id-generator.js';
import { MAX_PLAYER_ID, bucketOf, type PlayerId } from './player-id.js';

/**
 * Routing is a pure function of (player id, shard map): the id carries its bucket, the map says
 * which shard owns the bucket. Built once from a validated map; every lookup is two array reads.
 */
export class Router {
  readonly map: ShardMap;
  private readonly ownerShard: ShardSpec[];
  private readonly regionByName: Map<string, RegionSpec>;
  private readonly shardById: Map<string, ShardSpec>;
  /** Per region, its shards that own buckets (a shard added ahead of a bucket move may own none). */
  private readonly ownersByRegion: Map<string, ShardSpec[]>;
  private readonly regionCursor = new Map<string, number>();
  private readonly generator: PlayerIdGenerator;

  /** `idOptions` may be another router's generator, so ids stay unique across a routing swap (`withMap`). */
  constructor(map: ShardMap, idOptions: PlayerIdGeneratorOptions | PlayerIdGenerator = {}) {
    this.map = map;
    this.ownerShard = Array.from(map.bucketOwner, (i) => map.shards[i] as ShardSpec);
    this.regionByName = new Map(map.regions.map((r) => [r.name, r]));
    this.shardById = new Map(map.shards.map((s) => [s.id, s]));
    this.ownersByRegion = new Map(map.regions.map((r) => [r.name, r.shards.filter((s) => s.bucketCount > 0)]));
    this.generator = idOptions instanceof PlayerIdGenerator ? idOptions : new PlayerIdGenerator(idOptions);
  }

  /** A router for another map (live routing after a bucket move) sharing this one's id generator. */
  withMap(map: ShardMap): Router {
    return new Router(map, this.generator);
  }

  get regions(): readonly string[] {
    return this.map.regions.map((r) => r.name);
  }

  get shards(): readonly ShardSpec[] {
    return this.map.shards;
  }

  shardFor(id: PlayerId): ShardSpec {
    if (id < 1n || id > MAX_PLAYER_ID) throw new InvalidPlayerIdError(id, 'must be between 1 and 2^63-1');
    const shard = this.ownerShard[bucketOf(id)];
    // Unreachable with a validated map (every bucket owned); kept so a hand-built map fails loudly.
    if (shard === undefined) throw new InvalidPlayerIdError(id, `bucket ${bucketOf(id)} is owned by no shard`);
    return shard;
  }

  regionOf(id: PlayerId): string {
    return this.shardFor(id).region;
  }

  shard(id: string): ShardSpec {
    const s = this.shardById.get(id);
    if (!s) throw new UnknownShardError(id, [...this.shardById.keys()]);
    return s;
  }

  region(name: string): RegionSpec {
    const r = this.regionByName.get(name);
    if (!r) throw new UnknownRegionError(name, this.regions);
    return r;
  }

  /** Groups ids by owning shard id, keeping each group in input order (duplicates kept). */
  groupByShard<T extends PlayerId>(ids: Iterable<T>): Map<string, T[]> {
    const out = new Map<string, T[]>();
    for (const id of ids) {
      const sid = this.shardFor(id).id;
      const list = out.get(sid);
      if (list) list.push(id);
      else out.set(sid, [id]);
    }
    return out;
  }

  /**
   * A bucket of `region`, spread evenly: shards of the region take turns, and within a shard the
   * bucket is drawn at random, so both shards and buckets fill evenly.
   */
  pickBucket(region: string): { bucket: number; shard: ShardSpec } {
    const r = this.region(region);
    const owners = this.ownersByRegion.get(r.name) ?? [];
    if (owners.length === 0) throw new ValidationError('region', `region ${showValue(region)} owns no buckets yet: its shards have "buckets": []`);
    const turn = this.regionCursor.get(region) ?? 0;
    this.regionCursor.set(region, turn + 1);
    const shard = owners[turn % owners.length] as ShardSpec;
    let k = Math.floor(Math.random() * shard.bucketCount);
    for (const [lo, hi] of shard.buckets) {
      const n = hi - lo + 1;
      if (k < n) return { bucket: lo + k, shard };
      k -= n;
    }
    throw new Error('unreachable: shard has no buckets');
  }

  /** A new id in `region` from this process's generator (see PlayerIdGenerator for uniqueness). */
  newPlayerId(region: string): PlayerId {
    return this.generator.next(this.pickBucket(region).bucket);
  }
}
