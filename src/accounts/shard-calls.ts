import type { Kysely } from 'kysely';
import type { ShardDatabase, ShardSet } from '../db/index.js';
import type { PlayerId } from '../routing/index.js';
import type { ReadOptions } from '../db/replicas.js';

/** `ShardSet.withShard` for a batch: a ShardUnavailableError names the ids the caller did not get. */
export function onShard<T>(shards: ShardSet, shardId: string, playerIds: readonly PlayerId[], fn: (db: Kysely<ShardDatabase>) => Promise<T>): Promise<T> {
  return shards.withShard(shardId, fn, playerIds.map(String));
}

/** `onShard` for a read: a replica may answer, as `options` and the ShardSet's defaults allow (ShardSet.withReadShard). */
export function onShardRead<T>(
  shards: ShardSet,
  shardId: string,
  playerIds: readonly PlayerId[],
  options: ReadOptions,
  fn: (db: Kysely<ShardDatabase>) => Promise<T>,
): Promise<T> {
  return shards.withReadShard(shardId, fn, options, playerIds.map(String));
}
