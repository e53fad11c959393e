import { randomUUID } from 'node:crypto';
import { DEFAULT_KEY_PREFIX, validateKeyPrefix } from '../redis/prefix.js';
import { bucketOfKey, ownerOfBucket } from '../routing/key-bucket.js';
import type { ShardMap, ShardSpec } from '../shardmap/index.js';

/** The settlement key prefix when neither an option nor the map's `"prefix"` names one. */
export const DEFAULT_PREFIX = DEFAULT_KEY_PREFIX;

/**
 * The key prefix a SettlementClient or SettlementWorker uses: its `prefix` option, else the map's
 * `"prefix"`, else "shardline". A plain name (see validateKeyPrefix): the hash tags are ours.
 */
export function resolvePrefix(option: string | undefined, map: ShardMap): string {
  if (option !== undefined) return validateKeyPrefix(option);
  return map.prefix === undefined ? DEFAULT_PREFIX : validateKeyPrefix(map.prefix, 'map.prefix');
}

/**
 * One queue per shard, so a region's workers can run next to that region's database. The name is
 * a Redis Cluster hash tag and BullMQ's prefix the plain name, so every key of a shard's queue is
 * `<prefix>:{settle-<shardId>}:...`: one slot per queue (BullMQ's scripts need all of a queue's
 * keys in one slot), and the shards' queues spread over the cluster's nodes. (BullMQ refuses ':'
 * in a queue name, hence the dash.)
 */
export function queueNameFor(shardId: string): string {
  return `{settle-${shardId}}`;
}

/**
 * Where a shard's queue sat before the per-queue hash tags: prefix `{<prefix>}` (the old default
 * was `{shardline}`), queue `settle-<shardId>`: every queue in one slot. Only read, to notice jobs
 * left there (see SettlementWorker.start).
 */
export function legacyQueueOf(prefix: string, shardId: string): { prefix: string; name: string } {
  return { prefix: `{${prefix}}`, name: `settle-${shardId}` };
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
 * Job id of a job carrying several parts of a shard: unique, so it never swallows another's add.
 * Nothing looks such a job up by id: the reconciler and retry re-drive a part under jobIdFor.
 */
export function batchJobId(): string {
  return `b-${randomUUID()}`;
}

/**
 * Job id of a part forwarded to a shard from `fromShardId` (its players moved): not the match's
 * own job id there, whose finished job (the shard's own part, applied) would swallow the add. The
 * components are URI-encoded, so the '/' between them is unambiguous.
 */
export function forwardJobIdFor(fromShardId: string, matchId: string): string {
  return `f-${encodeURIComponent(fromShardId)}/${encodeURIComponent(matchId)}`;
}

/**
 * The shard that arbitrates a match id: derived from the id alone, never from the players, so every
 * submission of that id meets on the same row. Uses the map's bucket table like player ids do.
 */
export function homeShardOf(map: ShardMap, matchId: string): ShardSpec {
  return ownerOfBucket(map, bucketOfKey(matchId));
}
