import { bucketOf, type PlayerId } from '../routing/player-id.js';
import { asPlainShardSet, type AnyShardSet, type ShardSet } from '../db/shard-set.js';
import type { Logger } from '../logging/logger.js';
import { resolveConnection } from '../redis/connection.js';
import { lockMovedPending, mergeForwarded, recordForwarded, type ForwardedUpdate, type ForwardRow, type LockedPart } from './inbox-store.js';
import { resolvePrefix } from './keys.js';
import { parseOwnership, OWNERSHIP_RECORD, type OwnershipView } from './ownership-view.js';
import { SettlementQueues } from './queues.js';
import type { RedisConnection } from './types.js';
import { parseStoredResults, type StoredResult } from './validate.js';
import { sql } from 'kysely';

/**
 * Settlement in flight across a bucket move (docs/settlement.md, "Moves"). A part pending on the
 * shard S that players left holds results none of which S applied (an apply is one transaction,
 * and the fence refuses S's writes to moved buckets). Those results are merged into the inbox of
 * the shard T the players moved to, committed there, and only then taken out of the part on S,
 * which records T in `forwarded_to`. A crash between the two commits repeats the merge: a union by
 * player id, harmless. T applies them through its idempotent ledger insert: exactly once.
 */

/** Writes forwarded results into another shard's inbox (mergeForwarded on that shard). */
export interface Forwarder {
  readonly fromShardId: string;
  /** Merges the parts on `targetShardId`; the match ids merged (a missing one holds other content there). */
  merge(targetShardId: string, rows: readonly ForwardRow[]): Promise<Set<string>>;
}

/**
 * The merge waits for the target's inbox rows while this shard's stay locked: bounded, since two
 * shards forwarding to each other at once would wait on each other across databases, where no
 * deadlock detector sees it. A timeout defers the parts; they are tried again.
 */
const MERGE_LOCK_TIMEOUT = '5s';

export function shardForwarder(shards: ShardSet, fromShardId: string): Forwarder {
  return {
    fromShardId,
    merge: (target, rows) =>
      shards.withShard(target, (db) =>
        db.transaction().execute(async (trx) => {
          await sql`SELECT set_config('lock_timeout', ${MERGE_LOCK_TIMEOUT}, true)`.execute(trx);
          return mergeForwarded(trx, rows);
        }),
      ),
  };
}

export interface PlacementSplit {
  /** Results of players this shard owns: applied here. */
  own: StoredResult[];
  /** Results of players whose buckets moved away, by the shard they went to. */
  moved: Map<string, StoredResult[]>;
  /** Player ids in buckets this shard neither owns nor moved away (a routing fault). */
  foreign: string[];
  /** Why the part must wait (a bucket in its cut-over, or being copied here), else null. */
  wait: string | null;
}

export function splitByPlacement(ownership: OwnershipView, results: readonly StoredResult[]): PlacementSplit {
  const split: PlacementSplit = { own: [], moved: new Map(), foreign: [], wait: null };
  for (const r of results) {
    const bucket = bucketOf(BigInt(r.playerId) as PlayerId);
    const place = ownership.placementOf(bucket);
    switch (place.kind) {
      case 'own':
        split.own.push(r);
        break;
      case 'moved': {
        const list = split.moved.get(place.to) ?? [];
        list.push(r);
        split.moved.set(place.to, list);
        break;
      }
      case 'wait':
        split.wait ??= `bucket ${bucket} of player ${r.playerId} is ${place.why === 'frozen' ? 'in its cut-over to another shard' : 'being copied to this shard'}`;
        break;
      case 'foreign':
        split.foreign.push(r.playerId);
        break;
      default: {
        const unhandled: never = place;
        throw new Error(`unhandled bucket placement ${JSON.stringify(unhandled)}`);
      }
    }
  }
  return split;
}

export type ForwardVerdict = { kind: 'ok' } | { kind: 'deferred'; reason: string } | { kind: 'conflict'; reason: string };

export interface ForwardPlan {
  row: Pick<LockedPart, 'match_id' | 'content_hash' | 'game_id' | 'ended_at' | 'shard_ids'>;
  moved: ReadonlyMap<string, readonly StoredResult[]>;
}

/**
 * Merges each plan's moved results into the target shards' inboxes, one statement per target, all
 * targets at once. A part is `ok` only when every target of it took it; a target that fails defers
 * its parts (retried later: the merges that did commit repeat harmlessly).
 */
export async function forwardResults(forwarder: Forwarder | undefined, plans: readonly ForwardPlan[]): Promise<Map<string, ForwardVerdict>> {
  const verdicts = new Map<string, ForwardVerdict>();
  if (!forwarder) {
    for (const p of plans) verdicts.set(p.row.match_id, { kind: 'deferred', reason: 'results of moved players, and no way to forward them here' });
    return verdicts;
  }
  const byTarget = new Map<string, ForwardRow[]>();
  for (const p of plans) {
    for (const [target, results] of p.moved) {
      const list = byTarget.get(target) ?? [];
      list.push({
        matchId: p.row.match_id,
        contentHash: p.row.content_hash,
        gameId: p.row.game_id,
        endedAt: p.row.ended_at,
        results,
        shardIds: [...new Set([...p.row.shard_ids, target])].sort(),
      });
      byTarget.set(target, list);
    }
  }
  const worse = (matchId: string, v: ForwardVerdict) => {
    const had = verdicts.get(matchId);
    if (!had || had.kind === 'ok' || (had.kind === 'conflict' && v.kind === 'deferred')) verdicts.set(matchId, v);
  };
  for (const p of plans) verdicts.set(p.row.match_id, { kind: 'ok' });
  await Promise.all(
    [...byTarget].map(async ([target, rows]) => {
      try {
        const merged = await forwarder.merge(target, rows);
        for (const r of rows)
          if (!merged.has(r.matchId))
            worse(r.matchId, { kind: 'conflict', reason: `shard ${target}, where players of this part moved, holds a part of the match with other content` });
      } catch (err) {
        const reason = `forwarding to shard ${target} failed: ${err instanceof Error ? err.message : String(err)}`;
        for (const r of rows) worse(r.matchId, { kind: 'deferred', reason });
      }
    }),
  );
  return verdicts;
}

export interface ForwardSweepOptions {
  /**
   * Redis of the settlement queues: each forwarded part gets a job on its new shard's queue.
   * Without it, the new shard's reconciler finds the part (after its `reconcileAfterMs`).
   */
  connection?: RedisConnection;
  /** Settlement key prefix (default: the map's, else "shardline"). */
  prefix?: string;
  /** Parts per transaction (default 200). */
  batch?: number;
  logger?: Logger;
}

export interface ForwardSweepReport {
  shardId: string;
  /** Parts whose moved players' results went to another shard, with where they went. */
  forwarded: { matchId: string; to: string[] }[];
  /** Parts left pending for now (a target did not answer, or holds other content: the worker decides). */
  left: { matchId: string; reason: string }[];
}

/**
 * The forward sweep of a move (step 6 of the cut-over): forwards the results of moved players out
 * of every pending part of `shardId` now, rather than when its job comes round. Parts a worker
 * holds are skipped (it forwards them itself); results of players the shard still owns stay in
 * their part, whose job is still queued. Safe to run any time, and more than once.
 */
export async function forwardMovedParts(shards: AnyShardSet, shardId: string, options: ForwardSweepOptions = {}): Promise<ForwardSweepReport> {
  const set = asPlainShardSet(shards);
  const batch = Math.max(1, options.batch ?? 200);
  const forwarder = shardForwarder(set, shardId);
  const report: ForwardSweepReport = { shardId, forwarded: [], left: [] };
  const seen = new Set<string>();
  for (;;) {
    const record = await set.withShard(shardId, async (db) =>
      parseOwnership((await sql<{ value: unknown }>`SELECT ${OWNERSHIP_RECORD} AS value`.execute(db)).rows[0]?.value ?? null),
    );
    const ranges = [...record.movedTo.values()].flat();
    if (ranges.length === 0) break;
    const round = await set.withShard(shardId, (db) =>
      db.transaction().execute(async (trx) => {
        const locked = await lockMovedPending(trx, ranges, batch);
        const ownership = parseOwnership(locked.ownership);
        const plans: (ForwardPlan & { own: StoredResult[] })[] = [];
        for (const row of locked.rows) {
          if (seen.has(row.match_id)) continue;
          seen.add(row.match_id);
          const parsed = parseStoredResults(row.results);
          if (!parsed.ok) {
            report.left.push({ matchId: row.match_id, reason: parsed.reason });
            continue;
          }
          const split = splitByPlacement(ownership, parsed.results);
          if (split.moved.size === 0) continue;
          const movedIds = new Set([...split.moved.values()].flat().map((r) => r.playerId));
          plans.push({ row, moved: split.moved, own: parsed.results.filter((r) => !movedIds.has(r.playerId)) });
        }
        const verdicts = await forwardResults(forwarder, plans);
        const updates: ForwardedUpdate[] = [];
        const done: { matchId: string; to: string[] }[] = [];
        for (const p of plans) {
          const v = verdicts.get(p.row.match_id);
          if (!v || v.kind !== 'ok') {
            report.left.push({ matchId: p.row.match_id, reason: v ? v.reason : 'not forwarded' });
            continue;
          }
          const to = [...p.moved.keys()].sort();
          updates.push({ matchId: p.row.match_id, remaining: p.own, to });
          done.push({ matchId: p.row.match_id, to });
        }
        await recordForwarded(trx, updates);
        return { done, full: locked.rows.length >= batch };
      }),
    );
    report.forwarded.push(...round.done);
    if (!round.full) break;
  }
  if (report.forwarded.length > 0 && options.connection !== undefined) await enqueueSwept(set, report, options.connection, options);
  return report;
}

async function enqueueSwept(shards: ShardSet, report: ForwardSweepReport, connection: RedisConnection, options: ForwardSweepOptions): Promise<void> {
  const { client, owned } = resolveConnection(connection);
  client.on('error', () => undefined); // failures surface on the calls below
  const queues = new SettlementQueues(client, resolvePrefix(options.prefix, shards.map));
  try {
    for (const f of report.forwarded) for (const to of f.to) await queues.enqueueForwarded(to, f.matchId, report.shardId);
  } catch (err) {
    // The parts are durable in the target inboxes: their reconcilers enqueue them.
    options.logger?.warn({ err, shardId: report.shardId }, 'forwarded parts not enqueued; the reconcilers of their shards will enqueue them');
  } finally {
    await queues.close();
    if (owned) await client.quit().catch(() => client.disconnect());
  }
}
