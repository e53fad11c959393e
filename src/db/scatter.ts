import { ShardUnavailableError } from '../errors/index.js';

/** One shard's answer to a scatter: its value, or why it has none. */
export type ShardOutcome<T> = { shardId: string; ok: true; value: T } | { shardId: string; ok: false; error: unknown };

/** What `ShardSet.scatter` resolves to: the shards that answered, and with `partial` those that could not be reached. */
export interface ScatterResult<T> {
  /** One entry per shard that answered, in map order. */
  results: { shardId: string; value: T }[];
  /** Shards that could not be reached (only ever filled with `partial`), in map order. */
  unavailable: { shardId: string; error: ShardUnavailableError }[];
}

/**
 * Runs one call per shard, all at once, and waits for every one of them (never leaving a query
 * running behind a thrown error). Outcomes come back in the order of `shardIds`.
 */
export async function settleEach<T>(shardIds: readonly string[], fn: (shardId: string) => Promise<T>): Promise<ShardOutcome<T>[]> {
  const settled = await Promise.allSettled(shardIds.map((id) => fn(id)));
  return settled.map((s, i) => {
    const shardId = shardIds[i] as string;
    return s.status === 'fulfilled' ? { shardId, ok: true, value: s.value } : { shardId, ok: false, error: s.reason as unknown };
  });
}

/** Every value, or the first failure in shard order once all calls have finished. */
export async function settleAll<T>(shardIds: readonly string[], fn: (shardId: string) => Promise<T>): Promise<T[]> {
  const values: T[] = [];
  for (const o of await settleEach(shardIds, fn)) {
    if (!o.ok) throw o.error;
    values.push(o.value);
  }
  return values;
}

/**
 * The down-shard rule of every cross-shard read (getPlayers, ShardSet.scatter): an error that is
 * not an outage (a bug, a schema or identity refusal) always throws, the first in shard order,
 * since a half answer would hide it; an unreachable shard throws its ShardUnavailableError unless
 * `partial`, and is then listed under `unavailable`.
 */
export function splitOutages<T>(outcomes: readonly ShardOutcome<T>[], partial: boolean): ScatterResult<T> {
  const results: ScatterResult<T>['results'] = [];
  const unavailable: ScatterResult<T>['unavailable'] = [];
  for (const o of outcomes) {
    if (o.ok) results.push({ shardId: o.shardId, value: o.value });
    else if (o.error instanceof ShardUnavailableError) unavailable.push({ shardId: o.shardId, error: o.error });
    else throw o.error;
  }
  const first = unavailable[0];
  if (first && !partial) throw first.error;
  return { results, unavailable };
}
