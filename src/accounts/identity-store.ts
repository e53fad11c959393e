import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import type { IdentityRequestState, IdentityState, PlayerStatus, ShardDatabase } from '../db/schema.js';
import type { PlayerId } from '../routing/index.js';
import type { IdentityKey } from './identity-key.js';
import { toPlayer } from './player-rows.js';
import type { Player } from './types.js';

/**
 * The statements of the identity protocol (docs/identities.md), one shard each: the directory row
 * on the identity's shard, the request rows on the player's shard. Every statement is one round
 * trip and commits alone, except the unlink decision, which locks the player.
 */

type Db = Kysely<ShardDatabase>;

/** A directory row as read, with its age by the identity shard's own clock (the lease is measured there). */
export interface DirectoryRow {
  playerId: PlayerId;
  state: IdentityState;
  requestId: string;
  ageMs: number;
}

interface RawDirectoryRow {
  player_id: PlayerId;
  state: IdentityState;
  request_id: string;
  age_ms: number;
  inserted: boolean;
}

const toDirectoryRow = (r: RawDirectoryRow): DirectoryRow => ({ playerId: r.player_id, state: r.state, requestId: r.request_id, ageMs: Number(r.age_ms) });

const AGE_MS = sql<number>`(extract(epoch FROM now() - updated_at) * 1000)::float8`;

// ---- the identity's shard ---------------------------------------------------------------------

/** One primary-key read, with the row's age (for settling a row that is not confirmed). */
export async function readDirectory(db: Db, key: IdentityKey): Promise<DirectoryRow | null> {
  const r = await sql<RawDirectoryRow>`
    SELECT player_id, state, request_id, ${AGE_MS} AS age_ms, false AS inserted FROM identities
     WHERE bucket = ${key.bucket} AND provider = ${key.provider} AND subject = ${key.subject}`.execute(db);
  const row = r.rows[0];
  return row ? toDirectoryRow(row) : null;
}

const READ_HOLDER = 'SELECT player_id, state, request_id FROM identities WHERE bucket = $1 AND provider = $2 AND subject = $3';

/**
 * The login hot path: the same primary-key read without the age, as a constant statement straight
 * on the shard's pool (whose int8 parser gives bigint ids), with no query building in between.
 */
export async function readHolder(pool: Pick<pg.Pool, 'query'>, key: IdentityKey): Promise<Omit<DirectoryRow, 'ageMs'> | null> {
  // A named statement: each connection parses and plans the login lookup once, not on every login.
  const r = await pool.query<Omit<RawDirectoryRow, 'age_ms' | 'inserted'>>({
    name: 'shardline_read_identity_holder_v1',
    text: READ_HOLDER,
    values: [key.bucket, key.provider, key.subject],
  });
  const row = r.rows[0];
  return row ? { playerId: row.player_id, state: row.state, requestId: row.request_id } : null;
}

/**
 * Reserves the identity for (playerId, requestId) as `pending`, or reads the row that holds it.
 * `row` is null only when a concurrent reservation committed after this statement's snapshot: the
 * caller reads again.
 */
export async function reserve(db: Db, key: IdentityKey, playerId: PlayerId, requestId: string): Promise<{ inserted: boolean; row: DirectoryRow | null }> {
  const r = await sql<RawDirectoryRow>`
    WITH ins AS (
      INSERT INTO identities (bucket, provider, subject, player_id, state, request_id)
      VALUES (${key.bucket}, ${key.provider}, ${key.subject}, ${playerId}, 'pending', ${requestId})
      ON CONFLICT (bucket, provider, subject) DO NOTHING
      RETURNING player_id, state, request_id, 0::float8 AS age_ms, true AS inserted)
    SELECT * FROM ins
    UNION ALL
    SELECT player_id, state, request_id, ${AGE_MS}, false FROM identities
     WHERE bucket = ${key.bucket} AND provider = ${key.provider} AND subject = ${key.subject}`.execute(db);
  const row = r.rows[0];
  return { inserted: row?.inserted === true, row: row ? toDirectoryRow(row) : null };
}

/** `from` → `to` for the row of exactly this (player, request); false when it is not in `from` any more. */
export async function moveDirectory(
  db: Db,
  key: IdentityKey,
  at: { playerId: PlayerId; requestId: string },
  from: IdentityState,
  to: IdentityState,
  newRequestId?: string,
): Promise<boolean> {
  const r = await sql<{ one: number }>`
    UPDATE identities SET state = ${to}, request_id = ${newRequestId ?? at.requestId}, updated_at = now()
     WHERE bucket = ${key.bucket} AND provider = ${key.provider} AND subject = ${key.subject}
       AND player_id = ${at.playerId} AND request_id = ${at.requestId} AND state = ${from}
    RETURNING 1 AS one`.execute(db);
  return r.rows.length > 0;
}

/** Starts an unlink: the confirmed row of `playerId` becomes `unlinking` under the unlink's request id. */
export async function beginUnlink(db: Db, key: IdentityKey, playerId: PlayerId, requestId: string): Promise<boolean> {
  const r = await sql<{ one: number }>`
    UPDATE identities SET state = 'unlinking', request_id = ${requestId}, updated_at = now()
     WHERE bucket = ${key.bucket} AND provider = ${key.provider} AND subject = ${key.subject}
       AND player_id = ${playerId} AND state = 'confirmed'
    RETURNING 1 AS one`.execute(db);
  return r.rows.length > 0;
}

/** Deletes the row of exactly this (player, request) while it is in `state`. */
export async function deleteDirectory(db: Db, key: IdentityKey, at: { playerId: PlayerId; requestId: string }, state: IdentityState): Promise<boolean> {
  const r = await sql<{ one: number }>`
    DELETE FROM identities
     WHERE bucket = ${key.bucket} AND provider = ${key.provider} AND subject = ${key.subject}
       AND player_id = ${at.playerId} AND request_id = ${at.requestId} AND state = ${state}
    RETURNING 1 AS one`.execute(db);
  return r.rows.length > 0;
}

/** Rows still being settled whose lease has run out, oldest first (the sweeper). */
export async function unsettledRows(db: Db, olderThanMs: number, limit: number): Promise<(DirectoryRow & IdentityKey)[]> {
  const r = await sql<RawDirectoryRow & { bucket: number; provider: string; subject: string }>`
    SELECT bucket, provider, subject, player_id, state, request_id, ${AGE_MS} AS age_ms, false AS inserted FROM identities
     WHERE state <> 'confirmed' AND updated_at < now() - make_interval(secs => ${olderThanMs / 1000})
     ORDER BY updated_at LIMIT ${limit}`.execute(db);
  return r.rows.map((row) => ({ ...toDirectoryRow(row), bucket: row.bucket, provider: row.provider, subject: row.subject }));
}

// ---- the player's shard -----------------------------------------------------------------------

/** The outcome of request `requestId` on player `playerId`, or null while it has none. */
export async function requestState(db: Db, playerId: PlayerId, requestId: string): Promise<IdentityRequestState | null> {
  const r = await db.selectFrom('player_identities').select('state').where('player_id', '=', playerId).where('request_id', '=', requestId).executeTakeFirst();
  return r?.state ?? null;
}

/**
 * Gives up request `requestId` unless it has an outcome already: records `aborted`, so the request
 * can never take effect later. Returns the outcome now on record, whichever it is.
 */
export async function fenceRequest(db: Db, playerId: PlayerId, requestId: string, key: IdentityKey): Promise<IdentityRequestState> {
  const r = await sql<{ state: IdentityRequestState }>`
    INSERT INTO player_identities (player_id, request_id, provider, subject, state)
    VALUES (${playerId}, ${requestId}, ${key.provider}, ${key.subject}, 'aborted')
    ON CONFLICT (player_id, request_id) DO UPDATE SET updated_at = player_identities.updated_at
    RETURNING state`.execute(db);
  const state = r.rows[0]?.state;
  if (state === undefined) throw new Error('fencing an identity request returned no row');
  return state;
}

export interface NewPlayerRow {
  playerId: PlayerId;
  requestId: string;
  key: IdentityKey;
  region: string;
  nickname: string;
  status: PlayerStatus;
}

/**
 * Creates the player and its `linked` request row in one statement, unless the request has an
 * outcome already (then null: the caller reads it).
 */
export async function createLinkedPlayer(db: Db, p: NewPlayerRow): Promise<Player | null> {
  const r = await sql<{ player_id: PlayerId; region: string; nickname: string; status: PlayerStatus; created_at: Date; updated_at: Date }>`
    WITH d AS (
      INSERT INTO player_identities (player_id, request_id, provider, subject, state)
      VALUES (${p.playerId}, ${p.requestId}, ${p.key.provider}, ${p.key.subject}, 'linked')
      ON CONFLICT (player_id, request_id) DO NOTHING
      RETURNING player_id)
    INSERT INTO players (player_id, region, nickname, status)
    SELECT player_id, ${p.region}, ${p.nickname}, ${p.status} FROM d
    RETURNING player_id, region, nickname, status, created_at, updated_at`.execute(db);
  const row = r.rows[0];
  return row ? toPlayer(row) : null;
}

/**
 * Links the identity to an existing player (`linked`), or records `aborted` when there is no such
 * player, unless the request has an outcome already (then `inserted` is false: the caller reads it).
 */
export async function linkToPlayer(
  db: Db,
  playerId: PlayerId,
  requestId: string,
  key: IdentityKey,
): Promise<{ inserted: boolean; state: IdentityRequestState | null }> {
  const r = await sql<{ state: IdentityRequestState }>`
    INSERT INTO player_identities (player_id, request_id, provider, subject, state)
    SELECT ${playerId}, ${requestId}, ${key.provider}, ${key.subject},
           CASE WHEN EXISTS (SELECT 1 FROM players WHERE player_id = ${playerId}) THEN 'linked' ELSE 'aborted' END
    ON CONFLICT (player_id, request_id) DO NOTHING
    RETURNING state`.execute(db);
  const state = r.rows[0]?.state;
  return state === undefined ? { inserted: false, state: null } : { inserted: true, state };
}

export type UnlinkVerdict = 'removed' | 'last' | 'not-linked' | 'no-player' | 'fenced';

/**
 * Unlinks in one transaction that locks the player row, so two unlinks of one player cannot both
 * see two identities and leave none: records the unlink request's outcome (`removed`, or `aborted`
 * when the identity is the last or not linked) and marks the link row `unlinked`.
 */
export async function unlinkFromPlayer(db: Db, playerId: PlayerId, requestId: string, key: IdentityKey): Promise<UnlinkVerdict> {
  return db.transaction().execute(async (trx) => {
    const player = await trx.selectFrom('players').select('player_id').where('player_id', '=', playerId).forUpdate().executeTakeFirst();
    const counts = await sql<{ n: number; has: boolean }>`
      SELECT count(*)::int AS n, coalesce(bool_or(provider = ${key.provider} AND subject = ${key.subject}), false) AS has
        FROM player_identities WHERE player_id = ${playerId} AND state = 'linked'`.execute(trx);
    const { n, has } = counts.rows[0] ?? { n: 0, has: false };
    const verdict: UnlinkVerdict = !player ? 'no-player' : !has ? 'not-linked' : n < 2 ? 'last' : 'removed';
    const state: IdentityRequestState = verdict === 'removed' ? 'removed' : 'aborted';
    const ins = await sql<{ state: IdentityRequestState }>`
      INSERT INTO player_identities (player_id, request_id, provider, subject, state)
      VALUES (${playerId}, ${requestId}, ${key.provider}, ${key.subject}, ${state})
      ON CONFLICT (player_id, request_id) DO NOTHING
      RETURNING state`.execute(trx);
    if (ins.rows.length === 0) {
      // A resolver gave this request up first (or an earlier attempt of it decided): that stands.
      return (await requestState(trx, playerId, requestId)) === 'removed' ? 'removed' : 'fenced';
    }
    if (verdict === 'removed') {
      await sql`UPDATE player_identities SET state = 'unlinked', updated_at = now()
                 WHERE player_id = ${playerId} AND provider = ${key.provider} AND subject = ${key.subject} AND state = 'linked'`.execute(trx);
    }
    return verdict;
  });
}

export interface LinkedRow {
  provider: string;
  subject: string;
  linkedAt: Date;
}

/** The player's linked identities (oldest first), or null when there is no such player: one statement. */
export async function linkedIdentities(db: Db, playerId: PlayerId): Promise<LinkedRow[] | null> {
  const r = await sql<{ provider: string | null; subject: string | null; created_at: Date | null }>`
    SELECT i.provider, i.subject, i.created_at FROM players p
      LEFT JOIN player_identities i ON i.player_id = p.player_id AND i.state = 'linked'
     WHERE p.player_id = ${playerId}
     ORDER BY i.created_at, i.provider, i.subject`.execute(db);
  if (r.rows.length === 0) return null;
  return r.rows.flatMap((row) =>
    row.provider === null || row.subject === null || row.created_at === null
      ? []
      : [{ provider: row.provider, subject: row.subject, linkedAt: row.created_at }],
  );
}
