import { createHash } from 'node:crypto';
import { BUCKET_COUNT } from '../shardmap/schema.js';
import type { ShardMap, ShardSpec } from '../shardmap/types.js';

/**
 * The bucket of a key that is not a player id (a match id, a login identity): the first four bytes
 * of its SHA-256, big-endian, modulo the bucket count. Rows are placed by it, so it never changes;
 * migration 0008 recomputes it in SQL to check each identity row's bucket.
 */
export function bucketOfKey(key: string): number {
  return createHash('sha256').update(key, 'utf8').digest().readUInt32BE(0) % BUCKET_COUNT;
}

/** The shard the map gives `bucket` to. */
export function ownerOfBucket(map: ShardMap, bucket: number): ShardSpec {
  const shard = map.shards[map.bucketOwner[bucket] ?? -1];
  // Unreachable with a validated map (every bucket owned); kept so a hand-built map fails loudly.
  if (!shard) throw new Error(`bucket ${bucket} is owned by no shard`);
  return shard;
}
