import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { JsonObject, Outcome, PartState, ShardDatabase } from '../db/schema.js';
import { OWNERSHIP_RECORD, parseOwnership, type OwnershipView } from './ownership-view.js';
import type { StoredResult } from './validate.js';

/**
 * Every statement on one shard's settlement_inbox and settlement_inbox_claims tables (see
 * migrations/0002), each for many matches at once: the submit path groups concurrent submissions
 * into one statement per step (inbox-batch.ts), the worker applies many parts per transaction.
 */

type Db = Kysely<ShardDatabase>;

// ---- what a shard knows about a match (submit and status) ------------------------------------

export interface InboxSummary {
  hash: string;
  status: PartState;
  attempts: number;
  error: string | null;
  appliedAt: Date | null;
  players: number;
  /** The results' data by player id, null when none carries any. */
  data: Record<string, JsonObject> | null;
  /** Shards that results of this part were forwarded to, their players having moved there. */
  forwardedTo: string[];
}

export interface LedgerRow {
  playerId: string;
  scoreDelta: number;
  outcome: Outcome;
  gameId: string;
  endedAt: string;
  data: JsonObject | null;
}

export interface MatchOnShard {
  claim: { hash: string; shardIds: string[] } | null;
  inbox: InboxSummary | null;
  ledger: LedgerRow[];
  /** Of the player ids asked about, those that exist on the shard. */
  found: Set<string>;
  /** The shard's ownership record, read in the same statement: a player missing from a bucket it no longer owns moved away. */
  ownership: OwnershipView;
}

export interface ReadRequest {
  matchId: string;
  /** Players whose existence to check (none for a status read). */
  playerIds: readonly string[];
}

interface RawMatchRow {
  i: number;
  claim: { hash: string; shardIds: string[] } | null;
  inbox: (Omit<InboxSummary, 'appliedAt'> & { appliedAt: string | null }) | null;
  ledger: LedgerRow[] | null;
  found: string[] | null;
  ownership: unknown;
}

/** An inbox row's results' data by player id (NULL when none carries any), as an SQL expression. */
const DATA_BY_PLAYER = sql`(SELECT jsonb_object_agg(e->>'playerId', e->'data') FROM jsonb_array_elements(results) AS e WHERE e->'data' IS NOT NULL)`;

/** What a shard holds of the match whose id is `m` (an SQL expression): claim, inbox part, ledger rows. */
const viewColumns = (m: RawBuilder<unknown>) => sql`
  (SELECT json_build_object('hash', content_hash, 'shardIds', shard_ids)
     FROM settlement_inbox_claims c WHERE c.match_id = ${m}) AS claim,
  (SELECT json_build_object('hash', content_hash, 'status', status, 'attempts', attempts, 'error', last_error,
                            'appliedAt', applied_at, 'players', jsonb_array_length(results), 'data', ${DATA_BY_PLAYER},
                            'forwardedTo', forwarded_to)
     FROM settlement_inbox b WHERE b.match_id = ${m}) AS inbox,
  (SELECT json_agg(json_build_object('playerId', player_id::text, 'scoreDelta', score_delta, 'outcome', outcome,
                                     'gameId', game_id, 'endedAt', ended_at, 'data', data))
     FROM settlement_ledger l WHERE l.match_id = ${m}) AS ledger`;

const toView = (row: Omit<RawMatchRow, 'i' | 'ownership'>, ownership: OwnershipView): MatchOnShard => ({
  claim: row.claim,
  inbox: row.inbox ? { ...row.inbox, appliedAt: row.inbox.appliedAt ? new Date(row.inbox.appliedAt) : null } : null,
  ledger: row.ledger ?? [],
  found: new Set(row.found ?? []),
  ownership,
});

/** Claim, inbox part, ledger rows and existing players of each request, in one round trip. */
export async function readMatches(db: Db, reqs: readonly ReadRequest[]): Promise<MatchOnShard[]> {
  const pi: number[] = [];
  const pids: string[] = [];
  reqs.forEach((r, i) => {
    for (const p of r.playerIds) {
      pi.push(i + 1);
      pids.push(p);
    }
  });
  const r = await sql<RawMatchRow>`
    WITH m AS (SELECT match_id, i::int AS i FROM unnest(${reqs.map((q) => q.matchId)}::text[]) WITH ORDINALITY AS m(match_id, i)),
    f AS (SELECT x.i, array_agg(p.player_id::text) AS found
          FROM unnest(${pi}::int[], ${pids}::bigint[]) AS x(i, pid) JOIN players p ON p.player_id = x.pid GROUP BY x.i)
    SELECT m.i, ${viewColumns(sql.ref('m.match_id'))},
      f.found,
      CASE WHEN m.i = 1 THEN ${OWNERSHIP_RECORD} END AS ownership
    FROM m LEFT JOIN f ON f.i = m.i ORDER BY m.i`.execute(db);
  if (r.rows.length !== reqs.length) throw new Error(`readMatches returned ${r.rows.length} rows for ${reqs.length} matches`);
  const ownership = parseOwnership(r.rows[0]?.ownership ?? null);
  return r.rows.map((row) => toView(row, ownership));
}

/**
 * Whether a shard's view of a match lets the match be recorded there as new: no claim, part or
 * ledger row of it, and every player of `playerIds` found (what claimMatches' `checkPlayers` asks).
 */
export function isFresh(v: MatchOnShard, playerIds: readonly string[]): boolean {
  return !v.claim && !v.inbox && v.ledger.length === 0 && playerIds.every((p) => v.found.has(p));
}

// ---- recording (submit) ------------------------------------------------------------------------

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

export interface ClaimRequest {
  claim: ClaimRow;
  /** The home shard's own part, when it has players in the match. */
  part: PartRow | null;
  /**
   * For a match whose home shard is its only shard: the part's players. The claim and the part are
   * then written only if the shard holds nothing of the match and every one of them exists there
   * (isFresh), and the outcome carries what the shard held, read in the same statement, so the
   * submit checks it without a read of its own.
   */
  checkPlayers?: readonly string[];
}

export interface ClaimOutcome {
  claimed: boolean;
  inserted: boolean;
  /**
   * A claim lost: the content hash of the claim holding the match id, when it had committed before
   * this statement began (undefined otherwise: a race that close is read again).
   */
  heldHash?: string;
  /** With `checkPlayers`: the match on this shard before this statement, as readMatches reads it. */
  view?: MatchOnShard;
}

const partJson = (p: PartRow) => ({
  match_id: p.matchId,
  content_hash: p.contentHash,
  game_id: p.gameId,
  ended_at: p.endedAt.toISOString(),
  results: p.results,
  shard_ids: p.shardIds,
});

/**
 * On the home shard: claims each match id and, for a claim won, records the home part in the same
 * statement and commit; a request with `checkPlayers` is first checked in that statement too (see
 * ClaimRequest). A lost claim is resolved by the caller comparing hashes (`heldHash`, when this
 * statement saw the claim). Match ids must be distinct (the group commit's key sees to it).
 */
export async function claimMatches(db: Db, reqs: readonly ClaimRequest[]): Promise<ClaimOutcome[]> {
  const rows = reqs.map(({ claim, part, checkPlayers }) => ({
    match_id: claim.matchId,
    content_hash: claim.contentHash,
    game_id: claim.gameId,
    shard_ids: claim.shardIds,
    player_count: claim.playerCount,
    part: part ? partJson(part) : null,
    check_players: checkPlayers ?? null,
  }));
  const r = await sql<{
    claimed: string[];
    inserted: string[];
    held: Record<string, string> | null;
    views: (Omit<RawMatchRow, 'i' | 'ownership'> & { match_id: string })[] | null;
    ownership: unknown;
  }>`
    WITH x AS (
      SELECT * FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
        AS x(match_id text, content_hash text, game_id text, shard_ids text[], player_count int, part jsonb, check_players text[])),
    v AS (
      SELECT x.match_id, ${viewColumns(sql.ref('x.match_id'))},
        (SELECT array_agg(p.player_id::text) FROM players p WHERE p.player_id = ANY(x.check_players::bigint[])) AS found
      FROM x WHERE x.check_players IS NOT NULL),
    go AS (
      SELECT match_id FROM x WHERE check_players IS NULL
      UNION ALL
      SELECT v.match_id FROM v JOIN x USING (match_id)
      WHERE v.claim IS NULL AND v.inbox IS NULL AND v.ledger IS NULL AND coalesce(cardinality(v.found), 0) = cardinality(x.check_players)),
    c AS (
      INSERT INTO settlement_inbox_claims (match_id, content_hash, game_id, shard_ids, player_count)
      SELECT match_id, content_hash, game_id, shard_ids, player_count FROM x WHERE match_id IN (SELECT match_id FROM go) ORDER BY match_id
      ON CONFLICT (match_id) DO NOTHING RETURNING match_id),
    p AS (
      INSERT INTO settlement_inbox (match_id, content_hash, game_id, ended_at, results, shard_ids)
      SELECT y.match_id, y.content_hash, y.game_id, y.ended_at, y.results, y.shard_ids
      FROM x JOIN c USING (match_id),
        LATERAL jsonb_to_record(x.part) AS y(match_id text, content_hash text, game_id text, ended_at timestamptz, results jsonb, shard_ids text[])
      WHERE jsonb_typeof(x.part) = 'object' ORDER BY y.match_id
      ON CONFLICT (match_id) DO NOTHING RETURNING match_id)
    SELECT (SELECT coalesce(array_agg(match_id), '{}') FROM c) AS claimed, (SELECT coalesce(array_agg(match_id), '{}') FROM p) AS inserted,
      (SELECT json_object_agg(h.match_id, h.content_hash) FROM settlement_inbox_claims h WHERE h.match_id IN (SELECT match_id FROM x)) AS held,
      (SELECT json_agg(v) FROM v) AS views,
      CASE WHEN EXISTS (SELECT 1 FROM v) THEN ${OWNERSHIP_RECORD} END AS ownership`.execute(db);
  const row = r.rows[0];
  const claimed = new Set(row?.claimed ?? []);
  const inserted = new Set(row?.inserted ?? []);
  const held = row?.held ?? {};
  const ownership = parseOwnership(row?.ownership ?? null);
  const views = new Map((row?.views ?? []).map((v) => [v.match_id, toView(v, ownership)]));
  return reqs.map(({ claim }) => {
    const id = claim.matchId;
    const won = claimed.has(id);
    const heldHash = won ? undefined : held[id];
    const view = views.get(id);
    return { claimed: won, inserted: inserted.has(id), ...(heldHash !== undefined ? { heldHash } : {}), ...(view ? { view } : {}) };
  });
}

/** Records parts (distinct match ids); for each, false when a row for the match was already there. */
export async function writeParts(db: Db, parts: readonly PartRow[]): Promise<boolean[]> {
  const r = await sql<{ match_id: string }>`
    INSERT INTO settlement_inbox (match_id, content_hash, game_id, ended_at, results, shard_ids)
    SELECT match_id, content_hash, game_id, ended_at, results, shard_ids
    FROM jsonb_to_recordset(${JSON.stringify(parts.map(partJson))}::jsonb)
      AS x(match_id text, content_hash text, game_id text, ended_at timestamptz, results jsonb, shard_ids text[])
    ORDER BY match_id
    ON CONFLICT (match_id) DO NOTHING RETURNING match_id`.execute(db);
  const inserted = new Set(r.rows.map((row) => row.match_id));
  return parts.map((p) => inserted.has(p.matchId));
}

// ---- applying (worker) -------------------------------------------------------------------------

export interface LockedPart {
  match_id: string;
  content_hash: string;
  game_id: string;
  ended_at: Date;
  results: unknown;
  shard_ids: string[];
  status: PartState;
  last_error: string | null;
}

/**
 * Locks the inbox rows of `sortedIds` (sorted, so concurrent batches lock in one order and cannot
 * deadlock) for the rest of the transaction, and lets that transaction commit without waiting for
 * fsync (why that is safe: see applyParts). The first statement of an apply transaction, in one
 * round trip:
 *  - it takes the ledger's ROW EXCLUSIVE lock (the `fence` CTE: an INSERT of no row, so it fires no
 *    trigger and writes nothing, needing only the INSERT privilege the apply needs anyway; its target
 *    is locked when the statement is parsed, before the snapshot it reads with is taken). An ownership change (shardline_set_ownership) takes SHARE ROW
 *    EXCLUSIVE on the ledger, so it waits for this transaction, or this statement waits for it and
 *    then reads the new record;
 *  - it reads the shard's ownership record, which cannot change before this transaction ends;
 *  - `alongside`, an expression over `m` (the locked rows: match_id, game_id, ended_at, status...),
 *    is evaluated once and returned as it is (applyParts reads the boards of the parts' games).
 * The record and `alongside` come on the first row only: the driver parses each JSON value it gets.
 */
export async function lockParts<A = unknown>(
  trx: Db,
  sortedIds: readonly string[],
  alongside: RawBuilder<A> = sql<A>`NULL`,
): Promise<{ rows: LockedPart[]; ownership: unknown; alongside: A | null }> {
  const r = await sql<LockedPart & { ownership: unknown; alongside: A | null }>`
    WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true)),
    fence AS (INSERT INTO settlement_ledger (match_id, player_id, game_id, score_delta, outcome, ended_at)
              SELECT NULL, NULL, NULL, NULL, NULL, NULL WHERE false),
    m AS (SELECT match_id, content_hash, game_id, ended_at, results, shard_ids, status, last_error
          FROM settlement_inbox, cfg WHERE match_id = ANY(${[...sortedIds]}::text[]) ORDER BY match_id FOR UPDATE OF settlement_inbox)
    SELECT m.*, CASE WHEN row_number() OVER () = 1 THEN o.value END AS ownership, CASE WHEN row_number() OVER () = 1 THEN o.alongside END AS alongside
    FROM (SELECT ${OWNERSHIP_RECORD} AS value, ${alongside} AS alongside) o LEFT JOIN m ON true`.execute(trx);
  const first = r.rows[0];
  return {
    rows: r.rows.filter((row) => row.match_id !== null).map(({ ownership: _o, alongside: _a, ...row }) => row),
    ownership: first?.ownership ?? null,
    alongside: first?.alongside ?? null,
  };
}

// ---- forwarding (results of players whose buckets moved, docs/settlement.md "Moves") -------------

export interface ForwardRow {
  matchId: string;
  contentHash: string;
  gameId: string;
  endedAt: Date;
  /** The results of the players who now live on the target shard. */
  results: readonly StoredResult[];
  shardIds: readonly string[];
}

/**
 * On the shard the players moved to: inserts each part, or merges it into the part already there
 * (the target's own players of the match, or an earlier forward), union by player id, and makes it
 * pending again. A repeat after a crash merges the same results again and changes nothing; a part
 * applied there already re-applies without effect (ledger ON CONFLICT DO NOTHING, stats only for
 * rows inserted). Returns the match ids merged; a match missing from it holds other content there.
 */
export async function mergeForwarded(db: Db, parts: readonly ForwardRow[]): Promise<Set<string>> {
  const rows = parts.map((p) => ({
    match_id: p.matchId,
    content_hash: p.contentHash,
    game_id: p.gameId,
    ended_at: p.endedAt.toISOString(),
    results: p.results,
    shard_ids: p.shardIds,
  }));
  const r = await sql<{ match_id: string }>`
    INSERT INTO settlement_inbox AS i (match_id, content_hash, game_id, ended_at, results, shard_ids)
    SELECT match_id, content_hash, game_id, ended_at, results, shard_ids
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
      AS x(match_id text, content_hash text, game_id text, ended_at timestamptz, results jsonb, shard_ids text[])
    ORDER BY match_id
    ON CONFLICT (match_id) DO UPDATE SET
      results = (SELECT coalesce(jsonb_agg(u.e ORDER BY length(u.e->>'playerId'), u.e->>'playerId'), '[]'::jsonb)
                 FROM (SELECT DISTINCT ON (e->>'playerId') e FROM jsonb_array_elements(i.results || EXCLUDED.results) WITH ORDINALITY AS a(e, n)
                       ORDER BY e->>'playerId', n) u),
      shard_ids = (SELECT array_agg(DISTINCT s ORDER BY s) FROM unnest(i.shard_ids || EXCLUDED.shard_ids) AS s),
      status = 'pending', last_error = NULL, updated_at = now()
    WHERE i.content_hash = EXCLUDED.content_hash
    RETURNING match_id`.execute(db);
  return new Set(r.rows.map((row) => row.match_id));
}

export interface ForwardedUpdate {
  matchId: string;
  /** The part's results still for this shard (none: the part becomes forwarded). */
  remaining: readonly StoredResult[];
  to: readonly string[];
}

/** On the shard the players left: takes the forwarded results out of each part and records where they went. */
export async function recordForwarded(db: Db, updates: readonly ForwardedUpdate[]): Promise<void> {
  if (updates.length === 0) return;
  await sql`
    UPDATE settlement_inbox AS i SET
      results = u.remaining,
      forwarded_to = (SELECT array_agg(DISTINCT s ORDER BY s) FROM unnest(i.forwarded_to || u.dest) AS s),
      status = CASE WHEN jsonb_array_length(u.remaining) = 0 THEN 'forwarded' ELSE i.status END,
      updated_at = now()
    FROM jsonb_to_recordset(${JSON.stringify(updates.map((u) => ({ match_id: u.matchId, remaining: u.remaining, dest: u.to })))}::jsonb)
      AS u(match_id text, remaining jsonb, dest text[])
    WHERE i.match_id = u.match_id AND i.status = 'pending'`.execute(db);
}

export interface ForwardCandidate {
  match_id: string;
  content_hash: string;
  game_id: string;
  ended_at: Date;
  results: unknown;
  shard_ids: string[];
}

/**
 * Pending parts holding a result in one of `ranges` (buckets moved away), locked, skipping those a
 * worker holds (it forwards them itself), with the ownership record read in the same statement.
 */
export async function lockMovedPending(
  db: Db,
  ranges: readonly (readonly [number, number])[],
  limit: number,
): Promise<{ rows: ForwardCandidate[]; ownership: unknown }> {
  const multirange = `{${ranges.map(([lo, hi]) => `[${lo},${hi + 1})`).join(',')}}`;
  const r = await sql<ForwardCandidate & { ownership: unknown }>`
    WITH m AS (
      SELECT match_id, content_hash, game_id, ended_at, results, shard_ids FROM settlement_inbox i
      WHERE status = 'pending' AND EXISTS (
        SELECT 1 FROM jsonb_array_elements(i.results) AS e
        WHERE ${multirange}::int4multirange @> ((((e->>'playerId')::bigint) >> 10) & 4095)::int)
      ORDER BY match_id LIMIT ${limit} FOR UPDATE SKIP LOCKED)
    SELECT m.*, o.value AS ownership FROM (SELECT ${OWNERSHIP_RECORD} AS value) o LEFT JOIN m ON true`.execute(db);
  const ownership = r.rows[0]?.ownership ?? null;
  return { rows: r.rows.filter((row) => row.match_id !== null).map(({ ownership: _o, ...row }) => row), ownership };
}

export interface AppliedRow {
  match_id: string;
  /** From the part's recording to its flip to applied, both on the shard's clock. */
  lag_ms: number;
}

/**
 * Flips parts to applied, as a statement to run on its own or inside another (one round trip).
 * Lag on the database's clock alone: created_at is its clock too, and a worker host's may be off.
 * `when`: a condition of the enclosing statement (the apply's: every ledger row was inserted).
 */
export function markAppliedSql(matchIds: readonly string[], when: RawBuilder<boolean> = sql<boolean>`true`): RawBuilder<AppliedRow> {
  return sql<AppliedRow>`
    UPDATE settlement_inbox SET status = 'applied', applied_at = now(), updated_at = now(), attempts = attempts + 1, last_error = NULL
    WHERE match_id = ANY(${[...matchIds]}::text[]) AND ${when}
    RETURNING match_id, (extract(epoch FROM clock_timestamp() - created_at) * 1000)::float8 AS lag_ms`;
}

export interface PartFailure {
  matchId: string;
  reason: string;
}

/**
 * The one place a part becomes a dead letter: pending parts that can never apply as they stand
 * (inside the apply transaction, or after a part failed alone) keep their reason until retried.
 */
export async function markFailed(db: Db, failures: readonly PartFailure[]): Promise<void> {
  if (failures.length === 0) return;
  await markFailedSql(failures).execute(db);
}

/** markFailed as a statement to run inside another (one round trip); none: it changes nothing. */
export function markFailedSql(failures: readonly PartFailure[]): RawBuilder<never> {
  return sql<never>`
    UPDATE settlement_inbox AS i SET status = 'failed', last_error = f.reason, updated_at = now(), attempts = i.attempts + 1
    FROM unnest(${failures.map((f) => f.matchId)}::text[], ${failures.map((f) => f.reason)}::text[]) AS f(match_id, reason)
    WHERE i.match_id = f.match_id AND i.status = 'pending'`;
}

// ---- dead letters and reconciling ------------------------------------------------------------

export interface FailedRow {
  matchId: string;
  gameId: string;
  reason: string;
  attempts: number;
  failedAt: Date;
  data?: Record<string, JsonObject>;
}

export async function listFailedParts(db: Db, limit: number, matchId?: string): Promise<FailedRow[]> {
  let q = db
    .selectFrom('settlement_inbox')
    .select(['match_id', 'game_id', 'last_error', 'attempts', 'updated_at'])
    .select(sql<Record<string, JsonObject> | null>`${DATA_BY_PLAYER}`.as('data'))
    .where('status', '=', 'failed');
  if (matchId !== undefined) q = q.where('match_id', '=', matchId);
  const rows = await q.orderBy('updated_at').limit(limit).execute();
  return rows.map((r) => ({
    matchId: r.match_id,
    gameId: r.game_id,
    reason: r.last_error ?? '(no reason recorded)',
    attempts: r.attempts,
    failedAt: r.updated_at,
    ...(r.data ? { data: r.data } : {}),
  }));
}

/** Of `matchIds`, those with an inbox row on this shard (in any state). */
export async function inboxRowsAmong(db: Db, matchIds: readonly string[]): Promise<Set<string>> {
  if (matchIds.length === 0) return new Set();
  const rows = await db
    .selectFrom('settlement_inbox')
    .select('match_id')
    .where('match_id', 'in', [...new Set(matchIds)])
    .execute();
  return new Set(rows.map((r) => r.match_id));
}

/** Puts failed parts back to pending (one match, or all); returns the match ids reset. */
export async function resetFailed(db: Db, matchId: string | null): Promise<string[]> {
  let q = db
    .updateTable('settlement_inbox')
    .set({ status: 'pending', last_error: null, updated_at: sql`now()` })
    .where('status', '=', 'failed');
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
