import { sql, type Kysely } from 'kysely';
import type { Outcome, PartState, ShardDatabase } from '../db/schema.js';
import type { StoredResult } from './validate.js';

/** SQL on one shard's settlement_inbox / settlement_inbox_claims tables (see migrations/0002). */

type Db = Kysely<ShardDatabase>;

export interface InboxSummary {
  hash: string;
  status: PartState;
  attempts: number;
  error: string | null;
  appliedAt: Date | null;
  players: number;
}

export interface LedgerRow {
  playerId: string;
  scoreDelta: number;
  outcome: Outcome;
  gameId: string;
  endedAt: string;
}

export interface MatchOnShard {
  claim: { hash: string; shardIds: string[] } | null;
  inbox: InboxSummary | null;
  ledger: LedgerRow[];
  /** Of the player ids asked about, those that exist on the shard. */
  found: Set<string>;
}

interface RawMatchRow {
  claim: { hash: string; shardIds: string[] } | null;
  inbox: (Omit<InboxSummary, 'appliedAt'> & { appliedAt: string | null }) | null;
  ledger: LedgerRow[] | null;
  found: string[];
}

/** Everything the submit and status paths need to know about a match on a shard, in one round trip. */
export async function readMatch(db: Db, matchId: string, playerIds: readonly string[] = []): Promise<MatchOnShard> {
  const r = await sql<RawMatchRow>`
    SELECT
      (SELECT json_build_object('hash', content_hash, 'shardIds', shard_ids)
         FROM settlement_inbox_claims WHERE match_id = ${matchId}) AS claim,
      (SELECT json_build_object('hash', content_hash, 'status', status, 'attempts', attempts, 'error', last_error,
                                'appliedAt', applied_at, 'players', jsonb_array_length(results))
         FROM settlement_inbox WHERE match_id = ${matchId}) AS inbox,
      (SELECT json_agg(json_build_object('playerId', player_id::text, 'scoreDelta', score_delta, 'outcome', outcome,
                                         'gameId', game_id, 'endedAt', ended_at))
         FROM settlement_ledger WHERE match_id = ${matchId}) AS ledger,
      (SELECT coalesce(array_agg(player_id::text), '{}') FROM players WHERE player_id = ANY(${[...playerIds]}::bigint[])) AS found`.execute(db);
  const row = r.rows[0];
  if (!row) throw new Error('readMatch returned no row');
  return {
    claim: row.claim,
    inbox: row.inbox ? { ...row.inbox, appliedAt: row.inbox.appliedAt ? new Date(row.inbox.appliedAt) : null } : null,
    ledger: row.ledger ?? [],
    found: new Set(row.found),
  };
}

export interface ClaimRow {
  matchId: string;
  contentHash: string;
  gameId: string;
  shardIds: readonly string[];
  playerCount: number;
}

export interface PartRow {
  matchId: string;
  contentHash: string;
  gameId: string;
  endedAt: Date;
  results: readonly StoredResult[];
  shardIds: readonly string[];
}

/**
 * On the home shard: claims the match id and, when the home shard has players in the match, records
 * its part in the same statement (so one round trip, one commit). The part is only written when
 * the claim was won; a lost claim is resolved by the caller comparing hashes.
 */
export async function claimMatch(db: Db, claim: ClaimRow, part: PartRow | null): Promise<{ claimed: boolean; inserted: boolean }> {
  const claimSql = sql`
    INSERT INTO settlement_inbox_claims (match_id, content_hash, game_id, shard_ids, player_count)
    VALUES (${claim.matchId}, ${claim.contentHash}, ${claim.gameId}, ${[...claim.shardIds]}::text[], ${claim.playerCount})
    ON CONFLICT (match_id) DO NOTHING RETURNING 1`;
  if (!part) {
    const r = await sql<{ claimed: number }>`WITH c AS (${claimSql}) SELECT count(*)::int AS claimed FROM c`.execute(db);
    return { claimed: (r.rows[0]?.claimed ?? 0) > 0, inserted: false };
  }
  const r = await sql<{ claimed: number; inserted: number }>`
    WITH c AS (${claimSql}),
    p AS (
      INSERT INTO settlement_inbox (match_id, content_hash, game_id, ended_at, results, shard_ids)
      SELECT ${part.matchId}, ${part.contentHash}, ${part.gameId}, ${part.endedAt}::timestamptz, ${JSON.stringify(part.results)}::jsonb, ${[...part.shardIds]}::text[]
      WHERE EXISTS (SELECT 1 FROM c)
      ON CONFLICT (match_id) DO NOTHING RETURNING 1)
    SELECT (SELECT count(*) FROM c)::int AS claimed, (SELECT count(*) FROM p)::int AS inserted`.execute(db);
  return { claimed: (r.rows[0]?.claimed ?? 0) > 0, inserted: (r.rows[0]?.inserted ?? 0) > 0 };
}

/** Records a shard's part; false when a row for the match was already there. */
export async function writePart(db: Db, part: PartRow): Promise<boolean> {
  const r = await sql`
    INSERT INTO settlement_inbox (match_id, content_hash, game_id, ended_at, results, shard_ids)
    VALUES (${part.matchId}, ${part.contentHash}, ${part.gameId}, ${part.endedAt}::timestamptz, ${JSON.stringify(part.results)}::jsonb, ${[...part.shardIds]}::text[])
    ON CONFLICT (match_id) DO NOTHING RETURNING 1`.execute(db);
  return r.rows.length > 0;
}

export async function readClaimHash(db: Db, matchId: string): Promise<string | null> {
  const row = await db.selectFrom('settlement_inbox_claims').select('content_hash').where('match_id', '=', matchId).executeTakeFirst();
  return row?.content_hash ?? null;
}

export async function readPartHash(db: Db, matchId: string): Promise<string | null> {
  const row = await db.selectFrom('settlement_inbox').select('content_hash').where('match_id', '=', matchId).executeTakeFirst();
  return row?.content_hash ?? null;
}

export interface FailedRow {
  matchId: string;
  gameId: string;
  reason: string;
  attempts: number;
  failedAt: Date;
}

export async function listFailedParts(db: Db, limit: number, matchId?: string): Promise<FailedRow[]> {
  let q = db
    .selectFrom('settlement_inbox')
    .select(['match_id', 'game_id', 'last_error', 'attempts', 'updated_at'])
    .where('status', '=', 'failed');
  if (matchId !== undefined) q = q.where('match_id', '=', matchId);
  const rows = await q.orderBy('updated_at').limit(limit).execute();
  return rows.map((r) => ({ matchId: r.match_id, gameId: r.game_id, reason: r.last_error ?? '(no reason recorded)', attempts: r.attempts, failedAt: r.updated_at }));
}

/** Of `matchIds`, those with an inbox row on this shard (in any state). */
export async function inboxRowsAmong(db: Db, matchIds: readonly string[]): Promise<Set<string>> {
  if (matchIds.length === 0) return new Set();
  const rows = await db.selectFrom('settlement_inbox').select('match_id').where('match_id', 'in', [...new Set(matchIds)]).execute();
  return new Set(rows.map((r) => r.match_id));
}

/** Puts failed parts back to pending (one match, or all); returns the match ids reset. */
export async function resetFailed(db: Db, matchId: string | null): Promise<string[]> {
  let q = db.updateTable('settlement_inbox').set({ status: 'pending', last_error: null, updated_at: sql`now()` }).where('status', '=', 'failed');
  if (matchId !== null) q = q.where('match_id', '=', matchId);
  const rows = await q.returning('match_id').execute();
  return rows.map((r) => r.match_id);
}

/**
 * Pending parts untouched for `olderThanMs`, oldest first, and touches them in the same statement:
 * each is looked at once per period, and a backlog is walked through rather than re-read from its
 * head. SKIP LOCKED lets several reconcilers share a shard.
 */
export async function takeStalePending(db: Db, olderThanMs: number, limit: number): Promise<string[]> {
  const r = await sql<{ match_id: string }>`
    UPDATE settlement_inbox SET updated_at = now()
    WHERE match_id IN (
      SELECT match_id FROM settlement_inbox
      WHERE status = 'pending' AND updated_at <= now() - make_interval(secs => ${olderThanMs / 1000})
      ORDER BY updated_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)
    RETURNING match_id`.execute(db);
  return r.rows.map((row) => row.match_id);
}

/** Records a permanent failure outside a batch (after the batch fell back to one part at a time). */
export async function markFailed(db: Db, matchId: string, reason: string): Promise<void> {
  await db
    .updateTable('settlement_inbox')
    .set({ status: 'failed', last_error: reason, attempts: sql`attempts + 1`, updated_at: sql`now()` })
    .where('match_id', '=', matchId)
    .where('status', '=', 'pending')
    .execute();
}
