import type { SslMode } from './schema.js';

export interface ShardSpec {
  readonly id: string;
  readonly region: string;
  /** Position of this shard in `ShardMap.shards`; the router's hot path indexes by it. */
  readonly index: number;
  /** The connection as written in the map (`env:NAME` or a password-free URL): safe to print. */
  readonly connectionRef: string;
  /**
   * host:port/database the shard connects to: safe to print (no user, no password). The resolved
   * URL itself is deliberately not on this object, so a logged or serialized spec leaks nothing.
   */
  readonly target: string;
  /** Inclusive bucket ranges, sorted. */
  readonly buckets: readonly (readonly [number, number])[];
  readonly bucketCount: number;
  readonly ssl?: { readonly mode: SslMode; readonly ca?: string };
  readonly pool?: { readonly max: number };
  /** The shard's streaming replicas (`"replicas"` in the map), in map order; absent when it lists none. */
  readonly replicas?: readonly ReplicaSpec[];
}

/**
 * One replica of a shard: the shard's spec (id, region, buckets: what its data is) with the
 * replica's own connection, so it connects and is identity-checked like the primary. `replica` is
 * its position in the shard's `replicas`.
 */
export interface ReplicaSpec extends Omit<ShardSpec, 'replicas'> {
  readonly replica: number;
}

export interface RegionSpec {
  readonly name: string;
  readonly shards: readonly ShardSpec[];
}

/** A validated shard map: every bucket has exactly one owner, every region at least one shard. */
export interface ShardMap {
  readonly file: string;
  readonly version: 1;
  readonly name?: string;
  /** The map's Redis key prefix (`"prefix"` in the file), when it sets one: a plain name, see validateKeyPrefix. */
  readonly prefix?: string;
  /** The ownership epoch the map was written at (`"epoch"` in the file); absent means 0. */
  readonly epoch?: number;
  readonly regions: readonly RegionSpec[];
  readonly shards: readonly ShardSpec[];
  /** bucket -> index into `shards`. */
  readonly bucketOwner: Uint16Array;
}
