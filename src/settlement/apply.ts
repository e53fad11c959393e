import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { ShardDatabase } from '../db/schema.js';
import type { PlayerId } from '../routing/index.js';
import { runEffects, type AppliedResult, type SettlementEffects } from './effects.js';
import {
  lockParts,
  markAppliedSql,
  markFailed,
  markFailedSql,
  recordForwarded,
  type AppliedRow,
  type ForwardedUpdate,
  type LockedPart,
  type PartFailure,
} from './inbox-store.js';
import { forwardResults, splitByPlacement, type Forwarder } from './forwarding.js';
import { parseOwnership } from './ownership-view.js';
import { parseStoredResults, type StoredResult } from './validate.js';
import { applyToBoards, BOARDS_OF_LOCKED } from '../scores/apply-boards.js';

export type PartOutcome =
  /**
   * `lagMs`: from the part's recording to its flip to applied, both on the shard's clock.
   * `forwardedTo`: shards that results of moved players went to (their queues get a job).
   */
  | { kind: 'applied'; matchId: string; results: number; inserted: number; lagMs: number; forwardedTo?: string[] }
  /** Already applied (a retried or duplicated job): nothing changed. */
  | { kind: 'duplicate'; matchId: string }
  /**
   * Can never apply as it stands; `recorded` when the inbox row now says failed with the reason.
   * `forwardedTo`: results of moved players went there first (they apply there all the same).
   */
  | { kind: 'failed'; matchId: string; reason: string; recorded: boolean; forwardedTo?: string[] }
  /** Every result went to the shards its players moved to; the part here is done (state forwarded). */
  | { kind: 'forwarded'; matchId: string; forwardedTo: string[] }
  /** Not now: a player's bucket is in its cut-over, or the shard to forward to did not answer. Nothing changed. */
  | { kind: 'deferred'; matchId: string; reason: string };

interface GoodPart {
  row: LockedPart;
  results: StoredResult[];
}

interface StatDelta {
  playerId: string;
  gameId: string;
  score: bigint;
  wins: number;
  losses: number;
  draws: number;
  games: number;
  lastMatchId: string;
}

// Player ids are canonical decimals (no sign, no leading zero): shorter is smaller, and equal
// lengths compare as text. Parsing BigInts in a sort comparator was a hot spot of the worker.
const byDecimalId = (a: string, b: string) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);

/**
 * Applies the pending parts of `matchIds` on one shard in ONE transaction: ledger rows are inserted
 * with ON CONFLICT DO NOTHING ... RETURNING and only the rows actually inserted move the stats, so a
 * part applied twice (retried job, duplicated job, job whose lock was lost after commit) changes
 * nothing the second time. The inbox rows are locked first and flipped to applied in the same
 * transaction, so two workers racing on one part serialize and the second sees it applied.
 * Parts that can never apply (malformed row, unknown player) are marked failed in the same commit
 * and do not hold back the others.
 *
 * The games' effects run last, in the same transaction, over the ledger rows inserted in it: so they
 * happen exactly when the stats move, once. An effect that throws fails the whole transaction (with
 * no savepoint per part, the common case pays nothing); the worker then applies the parts one by
 * one, and the one whose effect throws alone becomes a dead letter (see SettlementWorker).
 *
 * Buckets move (docs/settlement.md, "Moves"): the shard's ownership record is read under a lock an
 * ownership change must wait for, so it holds until commit. Results of players whose buckets moved
 * away are forwarded (`forwarder`) to their new shard's inbox, committed there before this
 * transaction takes them out of the part here; a part with a player in a range being cut over is
 * deferred whole and retried later. Without a forwarder, parts to forward are deferred too.
 */
export async function applyParts(
  db: Kysely<ShardDatabase>,
  matchIds: readonly string[],
  effects: SettlementEffects<unknown> = {},
  forwarder?: Forwarder,
): Promise<Map<string, PartOutcome>> {
  const ids = [...new Set(matchIds)].sort();
  return db.transaction().execute(async (trx) => {
    // No fsync wait: the inbox row (written durably at submit) is the source of truth and flips to
    // applied in this same transaction, so a commit lost in a crash is lost whole (ledger, stats and
    // flip together) and the reconciler runs the part again. Exactly-once holds; only lag grows.
    const out = new Map<string, PartOutcome>();
    // One round trip: the fence's lock, the parts, the ownership record and the games' boards.
    const locked = await lockParts(trx, ids, BOARDS_OF_LOCKED);
    const rows = locked.rows;
    const ownership = parseOwnership(locked.ownership);
    const byId = new Map(rows.map((r) => [r.match_id, r]));
    const failed: PartFailure[] = [];
    let good: GoodPart[] = [];
    for (const matchId of ids) {
      const row = byId.get(matchId);
      if (!row) {
        out.set(matchId, { kind: 'failed', matchId, reason: 'no inbox row for this match on this shard', recorded: false });
        continue;
      }
      switch (row.status) {
        case 'applied':
        case 'forwarded': // its results went to the shards their players moved to: nothing left here
          out.set(matchId, { kind: 'duplicate', matchId });
          break;
        case 'failed':
          out.set(matchId, { kind: 'failed', matchId, reason: row.last_error ?? 'failed', recorded: true });
          break;
        case 'pending': {
          const parsed = parseStoredResults(row.results);
          if (parsed.ok) good.push({ row, results: parsed.results });
          else failed.push({ matchId, reason: parsed.reason });
          break;
        }
        default: {
          const unhandled: never = row.status;
          throw new Error(`inbox row of ${matchId} has unknown status ${String(unhandled)}`);
        }
      }
    }

    const forwardedTo = new Map<string, string[]>();
    if (good.length > 0 && ownership.version !== null) {
      const stay: GoodPart[] = [];
      const toForward: { part: GoodPart; own: StoredResult[]; moved: Map<string, StoredResult[]> }[] = [];
      for (const p of good) {
        const split = splitByPlacement(ownership, p.results);
        const matchId = p.row.match_id;
        if (split.wait !== null) out.set(matchId, { kind: 'deferred', matchId, reason: split.wait });
        else if (split.foreign.length > 0)
          failed.push({
            matchId,
            reason: `player${split.foreign.length > 1 ? 's' : ''} of buckets this shard neither owns nor moved away: ${split.foreign.join(', ')}`,
          });
        else if (split.moved.size === 0) stay.push(p);
        else toForward.push({ part: p, own: split.own, moved: split.moved });
      }
      if (toForward.length > 0) {
        const verdicts = await forwardResults(
          forwarder,
          toForward.map((f) => ({ row: f.part.row, moved: f.moved })),
        );
        const updates: ForwardedUpdate[] = [];
        for (const f of toForward) {
          const matchId = f.part.row.match_id;
          const verdict = verdicts.get(matchId) ?? { kind: 'deferred', reason: 'not forwarded' };
          if (verdict.kind === 'deferred') out.set(matchId, { kind: 'deferred', matchId, reason: verdict.reason });
          else if (verdict.kind === 'conflict') failed.push({ matchId, reason: verdict.reason });
          else {
            const to = [...f.moved.keys()].sort();
            updates.push({ matchId, remaining: f.own, to });
            forwardedTo.set(matchId, to);
            if (f.own.length > 0) stay.push({ row: f.part.row, results: f.own });
            else out.set(matchId, { kind: 'forwarded', matchId, forwardedTo: to });
          }
        }
        await recordForwarded(trx, updates);
      }
      good = stay;
    }

    let inserted: InsertedRow[] = [];
    const lagBy = new Map<string, number>();
    if (good.length > 0) {
      // The common case in one round trip: ledger rows, stats, the flip to applied and the failures.
      let r = await applyLedger(trx, good, failed);
      while (r.missing.size > 0) {
        // Nothing was inserted: the parts with a player missing fail, the others go again.
        const missingFailures: PartFailure[] = [];
        const missingOf = r.missing;
        good = good.filter((p) => {
          const missing = p.results.filter((x) => missingOf.has(x.playerId)).map((x) => x.playerId);
          if (missing.length === 0) return true;
          missingFailures.push({ matchId: p.row.match_id, reason: `player${missing.length > 1 ? 's' : ''} not found on this shard: ${missing.join(', ')}` });
          return false;
        });
        failed.push(...missingFailures);
        if (good.length === 0) {
          await markFailed(trx, missingFailures);
          break;
        }
        r = await applyLedger(trx, good, missingFailures);
      }
      inserted = r.inserted;
      if (good.length > 0 && r.applied.length === 0) {
        // Some rows were in the ledger already (a part applied before, forwarded back, reset): the
        // stats move for the rows inserted now only.
        const markApplied = markAppliedSql(good.map((p) => p.row.match_id));
        r.applied = inserted.length > 0 ? await upsertStats(trx, statDeltas(good, inserted), markApplied) : (await markApplied.execute(trx)).rows;
      }
      for (const l of r.applied) lagBy.set(l.match_id, l.lag_ms);
    } else await markFailed(trx, failed);
    // The defined boards of the games move with the stats, for the ledger rows inserted now only.
    await applyToBoards(trx, locked.alongside, good, inserted);
    if (inserted.length > 0) {
      const byGame = appliedByGame(good, inserted, effects);
      if (byGame.size > 0) await runEffects(trx, effects, byGame);
    }

    const insertedBy = new Map<string, number>();
    for (const r of inserted) insertedBy.set(r.match_id, (insertedBy.get(r.match_id) ?? 0) + 1);
    for (const p of good) {
      const matchId = p.row.match_id;
      const to = forwardedTo.get(matchId);
      out.set(matchId, {
        kind: 'applied',
        matchId,
        results: p.results.length,
        inserted: insertedBy.get(matchId) ?? 0,
        lagMs: Math.max(0, lagBy.get(matchId) ?? 0),
        ...(to ? { forwardedTo: to } : {}),
      });
    }
    for (const f of failed) {
      const to = forwardedTo.get(f.matchId);
      out.set(f.matchId, { kind: 'failed', matchId: f.matchId, reason: f.reason, recorded: true, ...(to ? { forwardedTo: to } : {}) });
    }
    return out;
  });
}

interface InsertedRow {
  match_id: string;
  player_id: string;
}

interface LedgerApplied {
  inserted: InsertedRow[];
  /** The parts flipped to applied (with the stats moved): none unless every row was inserted. */
  applied: AppliedRow[];
  /** Players of the parts not on this shard: when any, nothing was inserted or flipped. */
  missing: Set<string>;
}

/**
 * One statement for the batch: the players' existence (KEY SHARE keeps them from being deleted
 * until commit), the ledger rows (ON CONFLICT DO NOTHING), and, when every row was inserted (the
 * common case: stats computed here for all of them are right), the stats and the flip to applied;
 * `failures` are marked failed in it too. When a player is missing nothing is inserted; when some
 * rows were there already the stats and the flip are left to the caller, for the rows inserted.
 */
async function applyLedger(trx: Kysely<ShardDatabase>, parts: readonly GoodPart[], failures: readonly PartFailure[]): Promise<LedgerApplied> {
  const rows = parts
    .flatMap((p) => p.results.map((r) => ({ p, r })))
    .sort((a, b) => (a.p.row.match_id < b.p.row.match_id ? -1 : a.p.row.match_id > b.p.row.match_id ? 1 : byDecimalId(a.r.playerId, b.r.playerId)));
  const wanted = [...new Set(rows.map((x) => x.r.playerId))].sort(byDecimalId);
  const all = sql<boolean>`(SELECT count(*) FROM ins) = ${rows.length}`;
  const failedSql = failures.length > 0 ? sql`, failed AS (${markFailedSql(failures)})` : sql``;
  const r = await sql<{ kind: 'i' | 'a' | 'm'; match_id: string | null; player_id: string | null; lag_ms: number | null }>`
    WITH present AS (
      SELECT player_id FROM players WHERE player_id = ANY(${wanted}::bigint[]) ORDER BY player_id FOR KEY SHARE),
    missing AS (
      SELECT w.id FROM unnest(${wanted}::bigint[]) AS w(id) WHERE NOT EXISTS (SELECT 1 FROM present p WHERE p.player_id = w.id)),
    ins AS (
      INSERT INTO settlement_ledger (match_id, player_id, game_id, score_delta, outcome, ended_at, data)
      SELECT * FROM unnest(
        ${rows.map((x) => x.p.row.match_id)}::text[], ${rows.map((x) => x.r.playerId)}::bigint[],
        ${rows.map((x) => x.p.row.game_id)}::text[], ${rows.map((x) => x.r.scoreDelta)}::int[],
        ${rows.map((x) => x.r.outcome)}::text[], ${rows.map((x) => x.p.row.ended_at)}::timestamptz[],
        ${rows.map((x) => (x.r.data === undefined ? null : JSON.stringify(x.r.data)))}::jsonb[])
      WHERE NOT EXISTS (SELECT 1 FROM missing)
      ON CONFLICT (match_id, player_id) DO NOTHING
      RETURNING match_id, player_id::text AS player_id),
    stats AS (${statsUpsertSql(statDeltas(parts, null), all)}),
    applied AS (${markAppliedSql(
      parts.map((p) => p.row.match_id),
      all,
    )})${failedSql}
    SELECT 'i' AS kind, match_id, player_id, NULL::float8 AS lag_ms FROM ins
    UNION ALL SELECT 'a', match_id, NULL, lag_ms FROM applied
    UNION ALL SELECT 'm', NULL, id::text, NULL FROM missing`.execute(trx);
  const out: LedgerApplied = { inserted: [], applied: [], missing: new Set() };
  for (const row of r.rows) {
    if (row.kind === 'i') out.inserted.push({ match_id: row.match_id as string, player_id: row.player_id as string });
    else if (row.kind === 'a') out.applied.push({ match_id: row.match_id as string, lag_ms: row.lag_ms ?? 0 });
    else out.missing.add(row.player_id as string);
  }
  return out;
}

/** The inserted rows of the games that have an effect, by game, in (match, player) order. */
function appliedByGame(parts: readonly GoodPart[], inserted: readonly InsertedRow[], effects: SettlementEffects<unknown>): Map<string, AppliedResult[]> {
  const byGame = new Map<string, AppliedResult[]>();
  const withEffect = parts.filter((p) => Object.hasOwn(effects, p.row.game_id) && effects[p.row.game_id] !== undefined);
  if (withEffect.length === 0) return byGame;
  const fresh = new Set(inserted.map((r) => `${r.match_id}\u0000${r.player_id}`));
  for (const p of [...withEffect].sort((a, b) => (a.row.match_id < b.row.match_id ? -1 : 1))) {
    for (const r of [...p.results].sort((a, b) => byDecimalId(a.playerId, b.playerId))) {
      if (!fresh.has(`${p.row.match_id}\u0000${r.playerId}`)) continue;
      const list = byGame.get(p.row.game_id) ?? [];
      list.push({
        matchId: p.row.match_id,
        gameId: p.row.game_id,
        playerId: BigInt(r.playerId) as PlayerId,
        outcome: r.outcome,
        scoreDelta: r.scoreDelta,
        endedAt: p.row.ended_at,
        data: r.data ?? null,
      });
      byGame.set(p.row.game_id, list);
    }
  }
  return byGame;
}

/**
 * One delta per (player, game): a statement may not update the same stats row twice. `inserted`:
 * the ledger rows inserted (null: all of the parts' rows).
 */
function statDeltas(parts: readonly GoodPart[], inserted: readonly InsertedRow[] | null): StatDelta[] {
  const fresh = inserted ? new Set(inserted.map((r) => `${r.match_id}\u0000${r.player_id}`)) : null;
  // Oldest match first, so last_match_id ends as the latest-ended match of the batch.
  const ordered = [...parts].sort((a, b) => a.row.ended_at.getTime() - b.row.ended_at.getTime() || (a.row.match_id < b.row.match_id ? -1 : 1));
  const deltas = new Map<string, StatDelta>();
  for (const p of ordered) {
    for (const r of p.results) {
      if (fresh && !fresh.has(`${p.row.match_id}\u0000${r.playerId}`)) continue;
      const key = `${r.playerId}\u0000${p.row.game_id}`;
      let d = deltas.get(key);
      if (!d) {
        d = { playerId: r.playerId, gameId: p.row.game_id, score: 0n, wins: 0, losses: 0, draws: 0, games: 0, lastMatchId: p.row.match_id };
        deltas.set(key, d);
      }
      d.score += BigInt(r.scoreDelta);
      switch (r.outcome) {
        case 'win':
          d.wins++;
          break;
        case 'loss':
          d.losses++;
          break;
        case 'draw':
          d.draws++;
          break;
        default: {
          // A new outcome must say which counter it moves (and needs a migration for the CHECK).
          const unhandled: never = r.outcome;
          throw new Error(`no stats counter for outcome ${String(unhandled)}`);
        }
      }
      d.games++;
      d.lastMatchId = p.row.match_id;
    }
  }
  // Sorted by key: concurrent batches lock stats rows in the same order.
  return [...deltas.values()].sort((a, b) => byDecimalId(a.playerId, b.playerId) || (a.gameId < b.gameId ? -1 : a.gameId > b.gameId ? 1 : 0));
}

/** Runs `alongside` in the same statement and returns its rows. */
async function upsertStats(trx: Kysely<ShardDatabase>, deltas: readonly StatDelta[], alongside: RawBuilder<AppliedRow>): Promise<AppliedRow[]> {
  const r = await sql<AppliedRow>`
    WITH alongside AS (${alongside}),
    upserted AS (${statsUpsertSql(deltas)})
    SELECT match_id, lag_ms FROM alongside`.execute(trx);
  return r.rows;
}

/** The stats upsert of `deltas`, as a statement to run inside another, only `when` that holds. */
function statsUpsertSql(deltas: readonly StatDelta[], when: RawBuilder<boolean> = sql<boolean>`true`): RawBuilder<never> {
  return sql<never>`
    INSERT INTO player_stats AS s (player_id, game_id, score, wins, losses, draws, games_played, last_match_id, updated_at)
    SELECT t.player_id, t.game_id, t.score, t.wins, t.losses, t.draws, t.games, t.last_match_id, now()
    FROM unnest(
      ${deltas.map((d) => d.playerId)}::bigint[], ${deltas.map((d) => d.gameId)}::text[], ${deltas.map((d) => d.score.toString())}::bigint[],
      ${deltas.map((d) => d.wins)}::int[], ${deltas.map((d) => d.losses)}::int[], ${deltas.map((d) => d.draws)}::int[],
      ${deltas.map((d) => d.games)}::int[], ${deltas.map((d) => d.lastMatchId)}::text[])
      AS t(player_id, game_id, score, wins, losses, draws, games, last_match_id)
    WHERE ${when}
    ON CONFLICT (player_id, game_id) DO UPDATE SET
      score = s.score + EXCLUDED.score,
      wins = s.wins + EXCLUDED.wins,
      losses = s.losses + EXCLUDED.losses,
      draws = s.draws + EXCLUDED.draws,
      games_played = s.games_played + EXCLUDED.games_played,
      last_match_id = EXCLUDED.last_match_id,
      updated_at = now()`;
}
