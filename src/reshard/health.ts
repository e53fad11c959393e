import type { ConnectionOptions } from '../db/connection.js';
import type { ShardMap } from '../shardmap/index.js';
import { readOwnership } from './ownership-record.js';
import { MOVER_LOCK, MoverShards } from './session.js';
import { phaseOf } from './states.js';
import { readMoves } from './store.js';

/** What `shards check` reports about moves on one shard: each entry is a problem (exit 1). */
export interface MoveHealth {
  shardId: string;
  /** Ranges frozen by a move no mover is working on: writes to them are refused until it is resumed or aborted. */
  frozen: { range: [number, number]; moveId: string }[];
  /**
   * Active moves recorded on this shard but not on their other shard, no mover connected: a mover
   * killed between a move's two first writes. Nothing is frozen yet, but the move blocks others on
   * both shards until it is resumed or aborted (either writes the missing row first).
   */
  halfRecorded: { moveId: string; missingOn: string }[];
  /** `shardline_mv_%` slots, publications and subscriptions that no active move names, with the WAL a slot holds back. */
  orphans: { kind: 'slot' | 'publication' | 'subscription'; name: string; retainedBytes: number | null }[];
  /** Set when the shard could not be read. */
  error?: string;
}

/**
 * Moves left behind, per shard: a frozen range or a move recorded on one side only with no mover
 * connected (its session lock is free), and replication artifacts no active move owns (a slot holds WAL back until dropped: see
 * max_slot_wal_keep_size in docs/resharding.md).
 */
export async function moveHealth(map: ShardMap, options: { connection?: ConnectionOptions } = {}): Promise<MoveHealth[]> {
  const shards = new MoverShards(map, { connectionTimeoutMs: 5000, ...options.connection });
  try {
    // Per shard; null where unreadable (a move there cannot be judged half-recorded).
    const perShard = new Map(await Promise.all(map.shards.map(async (s) => [s.id, await shards.with(s.id, (c) => readMoves(c)).catch(() => null)] as const)));
    const moves = [...perShard.values()].flatMap((m) => m ?? []);
    const owned = new Set<string>();
    for (const m of moves) {
      if (phaseOf(m.state) !== 'active') continue;
      for (const n of [m.artifacts.publication, m.artifacts.slot, m.artifacts.subscription]) if (n) owned.add(n);
    }
    return await Promise.all(
      map.shards.map(async (s): Promise<MoveHealth> => {
        try {
          return await shards.with(s.id, async (c) => {
            const rec = await readOwnership(c);
            const locked = (
              await c.query<{ n: number }>(
                `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND classid = $1 AND objid = $2 AND objsubid = 2 AND granted`,
                [MOVER_LOCK[0], MOVER_LOCK[1]],
              )
            ).rows[0]?.n;
            const frozen = locked ? [] : rec.frozen.map(([lo, hi, moveId]) => ({ range: [lo, hi] as [number, number], moveId }));
            const halfRecorded: MoveHealth['halfRecorded'] = [];
            for (const m of locked ? [] : (perShard.get(s.id) ?? [])) {
              const other = m.side === 'target' ? m.from : m.to;
              const there = perShard.get(other);
              if (phaseOf(m.state) === 'active' && there && !there.some((x) => x.id === m.id)) halfRecorded.push({ moveId: m.id, missingOn: other });
            }
            const orphans: MoveHealth['orphans'] = [];
            const slots = await c.query<{ name: string; retained: string | null }>(
              `SELECT slot_name::text AS name, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS retained
                 FROM pg_replication_slots WHERE database = current_database() AND slot_name LIKE 'shardline\\_mv\\_%'`,
            );
            for (const r of slots.rows)
              if (!owned.has(r.name)) orphans.push({ kind: 'slot', name: r.name, retainedBytes: r.retained === null ? null : Number(r.retained) });
            const pubs = await c.query<{ name: string }>(`SELECT pubname::text AS name FROM pg_publication WHERE pubname LIKE 'shardline\\_mv\\_%'`);
            for (const r of pubs.rows) if (!owned.has(r.name)) orphans.push({ kind: 'publication', name: r.name, retainedBytes: null });
            const subs = await c.query<{ name: string }>(
              `SELECT subname::text AS name FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND subname LIKE 'shardline\\_mv\\_%'`,
            );
            for (const r of subs.rows) if (!owned.has(r.name)) orphans.push({ kind: 'subscription', name: r.name, retainedBytes: null });
            return { shardId: s.id, frozen, halfRecorded, orphans };
          });
        } catch (err) {
          return { shardId: s.id, frozen: [], halfRecorded: [], orphans: [], error: (err as Error).message };
        }
      }),
    );
  } finally {
    await shards.close();
  }
}
