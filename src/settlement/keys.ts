import { createHash } from 'node:crypto';
import { ValidationError } from '../errors/index.js';
import { BUCKET_COUNT } from '../shardmap/schema.js';
import type { ShardMap, ShardSpec } from '../shardmap/index.js';

/** BullMQ key prefix. The braces are a Redis Cluster hash tag: every settlement key in one slot. */
export const DEFAULT_PREFIX = '{shardline}';

export function checkPrefix(prefix: string): string {
  if (!/^[^{}]*\{[^{}]+\}[^{}]*$/.test(prefix) || /[\s:]/.test(prefix)) {
    throw new ValidationError('prefix', `must hold one Redis hash tag such as "{shardline}" and no spaces or ':' (got ${JSON.stringify(prefix)})`);
  }
  return prefix;
}

/** One queue per shard, so a region's workers can run next to that region's database. */
export function queueNameFor(shardId: string): string {
  return `settle-${shardId}`;
}

/**
 * Deterministic job id of a match's part in its shard's queue: re-adding it is a no-op while BullMQ
 * still holds the job. BullMQ refuses custom ids that are integers or contain ':', hence the fixed
 * prefix and the URI encoding (which is injective, so two match ids never share a job id).
 */
export function jobIdFor(matchId: string): string {
  return `m-${encodeURIComponent(matchId)}`;
}

/**
 * The shard that arbitrates a match id: derived from the id alone, never from the players, so every
 * submission of that id meets on the same row. Uses the map's bucket table like player ids do.
 */
export function homeShardOf(map: ShardMap, matchId: string): ShardSpec {
  const bucket = createHash('sha256').update(matchId).digest().readUInt32BE(0) % BUCKET_COUNT;
  const shard = map.shards[map.bucketOwner[bucket] ?? -1];
  if (!shard) throw new Error(`bucket ${bucket} is owned by no shard`);
  return shard;
}
