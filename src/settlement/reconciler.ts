import type { ShardSet } from '../db/shard-set.js';
import { takeStalePending } from './inbox-store.js';
import type { SettlementQueues } from './queues.js';

export interface ReconcileOptions {
  /** Only parts pending and untouched for at least this long (default 60 s): younger ones are in flight. */
  olderThanMs?: number;
  /** Parts looked at per shard per run (default 1000). */
  limit?: number;
}

/**
 * Re-enqueues the pending parts of one shard that have gone stale, so a part whose job the queue
 * no longer holds runs again (Redis restarted without persistence, flushed, or the job was parked
 * after its tries). A part's job usually carries other parts too (SettlementQueues.enqueueMany), and
 * no index finds it by part, so every stale part gets a job of its own under its deterministic id
 * (jobIdFor) whether or not a batch job still holds it: applying is exactly once, so a part that
 * runs twice changes nothing the second time.
 *
 * What that costs in a backlog older than `olderThanMs` (workers stopped for minutes, a slow
 * shard): at most one extra job per stale part at a time (redrive is a no-op while the part's own
 * job waits or runs), each part taken once per `olderThanMs` (takeStalePending touches it), and at
 * most `limit` parts per shard per run: with the worker's defaults, 1000 single-part jobs per shard
 * per 30 s, each a duplicate apply (one row lock, nothing written) if the batch job got there first.
 */
export async function reconcileShard(
  shards: ShardSet,
  queues: SettlementQueues,
  shardId: string,
  options: ReconcileOptions = {},
): Promise<{ checked: number; requeued: string[] }> {
  const stale = await shards.withShard(shardId, (db) => takeStalePending(db, options.olderThanMs ?? 60_000, options.limit ?? 1000));
  const requeued: string[] = [];
  // A few at a time: each is one or two Redis round trips.
  for (let i = 0; i < stale.length; i += 50) {
    const chunk = stale.slice(i, i + 50);
    const added = await Promise.all(chunk.map((m) => queues.redrive(shardId, m)));
    chunk.forEach((m, j) => {
      if (added[j]) requeued.push(m);
    });
  }
  return { checked: stale.length, requeued };
}
