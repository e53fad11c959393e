import type { Kysely } from 'kysely';
import type { ShardDatabase, ShardSet } from '../db/index.js';
import type { PlayerId } from '../routing/index.js';

/** `ShardSet.withShard` for a batch: a ShardUnavailableError names the ids the caller did not get. */
export function onShard<T>(shards: ShardSet, shardId: string, playerIds: readonly PlayerId[], fn: (db: Kysely<ShardDatabase>) => Promise<T>): Promise<T> {
  return shards.withShard(shardId, fn, playerIds.map(String));
}
