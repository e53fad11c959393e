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
  readonly regions: readonly RegionSpec[];
  readonly shards: readonly ShardSpec[];
  /** bucket -> index into `shards`. */
  readonly bucketOwner: Uint16Array;
}
