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
 * Re-enqueues the pending parts of one shard whose job the queue no longer holds (Redis restarted
 * without persistence, flushed, or the job was parked after its tries). Re-adding uses the same
 * deterministic job id, so a part whose job still exists is left alone, and a part applied twice
 * would change nothing anyway.
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
