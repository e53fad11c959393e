import type { Kysely } from 'kysely';
import type { ShardDatabase, ShardSet } from '../db/index.js';
import type { PlayerId } from '../routing/index.js';

/** `ShardSet.withShard` for a batch: a ShardUnavailableError names the ids the caller did not get. */
export function onShard<T>(
  shards: ShardSet,
  shardId: string,
  playerIds: readonly PlayerId[],
  fn: (db: Kysely<ShardDatabase>) => Promise<T>,
): Promise<T> {
  return shards.withShard(shardId, fn, playerIds.map(String));
}

export type ShardOutcome<T> =
  | { shardId: string; ok: true; value: T }
  | { shardId: string; ok: false; error: unknown };

/**
 * Runs one call per shard, all at once, and waits for every one of them (never leaving a query
 * running behind a thrown error). Outcomes come back in the order of `shardIds`.
 */
export async function scatter<T>(shardIds: readonly string[], fn: (shardId: string) => Promise<T>): Promise<ShardOutcome<T>[]> {
  const settled = await Promise.allSettled(shardIds.map((id) => fn(id)));
  return settled.map((s, i) => {
    const shardId = shardIds[i] as string;
    return s.status === 'fulfilled' ? { shardId, ok: true, value: s.value } : { shardId, ok: false, error: s.reason as unknown };
  });
}

/** Every value, or the first failure in shard order once all calls have finished. */
export async function scatterAll<T>(shardIds: readonly string[], fn: (shardId: string) => Promise<T>): Promise<T[]> {
  const values: T[] = [];
  for (const o of await scatter(shardIds, fn)) {
    if (!o.ok) throw o.error;
    values.push(o.value);
  }
  return values;
}
