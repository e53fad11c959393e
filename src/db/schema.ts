import type { ColumnType, Generated } from 'kysely';
import type { PlayerId } from '../routing/index.js';

/**
 * The typed view of one shard's tables (the self-closed record set of its players). Every table
 * but the meta and migration tables has `player_id` in its primary key; see migrations/.
 */
export interface ShardDatabase {
  players: PlayersTable;
  player_stats: PlayerStatsTable;
  settlement_ledger: SettlementLedgerTable;
  settlement_inbox: SettlementInboxTable;
  settlement_inbox_claims: SettlementInboxClaimsTable;
  identities: IdentitiesTable;
  player_identities: PlayerIdentitiesTable;
  shardline_meta: MetaTable;
}

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export type PlayerStatus = 'active' | 'suspended' | 'deleted';

export interface PlayersTable {
  player_id: ColumnType<PlayerId, PlayerId, never>;
  region: ColumnType<string, string, never>;
  nickname: string;
  status: ColumnType<PlayerStatus, PlayerStatus | undefined, PlayerStatus>;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  updated_at: Timestamp;
}

export interface PlayerStatsTable {
  player_id: ColumnType<PlayerId, PlayerId, never>;
  game_id: ColumnType<string, string, never>;
  score: ColumnType<bigint, bigint | number | undefined, bigint | number>;
  wins: ColumnType<number, number | undefined, number>;
  losses: ColumnType<number, number | undefined, number>;
  draws: ColumnType<number, number | undefined, number>;
  games_played: ColumnType<number, number | undefined, number>;
  last_match_id: string | null;
  updated_at: Timestamp;
}

/**
 * A player's result in a match: the one list behind the type, the input validation and the
 * worker's stats. migrations/0001 checks the same values in SQL (a migration never changes), so a
 * new outcome also needs a migration widening settlement_ledger_outcome_check.
 */
export const OUTCOMES = ['win', 'loss', 'draw'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface SettlementLedgerTable {
  match_id: string;
  player_id: PlayerId;
  game_id: string;
  score_delta: number;
  outcome: Outcome;
  ended_at: ColumnType<Date, Date | string, never>;
  applied_at: Generated<Date>;
  /** The result's `data` (migration 0007), null when the match carried none. */
  data: ColumnType<JsonObject | null, string | null | undefined, never>;
}

/** A JSON value as pg reads jsonb back. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
/** A JSON object: what a match result's `data` is. */
export interface JsonObject {
  [key: string]: JsonValue;
}

export interface MetaTable {
  key: string;
  value: ColumnType<unknown, string, string>;
  updated_at: Generated<Date>;
}

/**
 * The state of one shard's part of a match (settlement_inbox.status): the one list behind the
 * column type and the settlement status. migrations/0002 checks the same values in SQL (0011
 * added `forwarded`: every result of the part went to the shards its players moved to).
 */
export const PART_STATES = ['pending', 'applied', 'failed', 'forwarded'] as const;
export type PartState = (typeof PART_STATES)[number];

/** A meta/queue table keyed by match_id (not a player table): this shard's part of one match. */
export interface SettlementInboxTable {
  match_id: ColumnType<string, string, never>;
  content_hash: ColumnType<string, string, never>;
  game_id: ColumnType<string, string, never>;
  ended_at: ColumnType<Date, Date | string, never>;
  /** [{ playerId: decimal string, scoreDelta, outcome }] */
  results: ColumnType<unknown, string, never>;
  shard_ids: ColumnType<string[], string[], never>;
  status: ColumnType<PartState, PartState | undefined, PartState>;
  attempts: ColumnType<number, number | undefined, number>;
  last_error: string | null;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  updated_at: Timestamp;
  applied_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** Shards this part's results of moved players were forwarded to (migration 0011). */
  forwarded_to: ColumnType<string[], string[] | undefined, string[]>;
}

/** A meta table keyed by match_id on the match's home shard: who owns the match id. */
export interface SettlementInboxClaimsTable {
  match_id: ColumnType<string, string, never>;
  content_hash: ColumnType<string, string, never>;
  game_id: ColumnType<string, string, never>;
  shard_ids: ColumnType<string[], string[], never>;
  player_count: ColumnType<number, number, never>;
  created_at: ColumnType<Date, Date | string | undefined, never>;
}

/**
 * The state of an identity's directory row (migration 0008, docs/identities.md): the one list
 * behind the column type and the protocol's switches.
 */
export const IDENTITY_STATES = ['pending', 'confirmed', 'unlinking'] as const;
export type IdentityState = (typeof IDENTITY_STATES)[number];

/** The outcome of one identity request on the player's shard (player_identities.state, migration 0008). */
export const IDENTITY_REQUEST_STATES = ['linked', 'unlinked', 'removed', 'aborted'] as const;
export type IdentityRequestState = (typeof IDENTITY_REQUEST_STATES)[number];

/** A record set keyed by bucket (not a player table): the identity directory, on the identity's own shard. */
export interface IdentitiesTable {
  bucket: ColumnType<number, number, never>;
  provider: ColumnType<string, string, never>;
  subject: ColumnType<string, string, never>;
  player_id: ColumnType<PlayerId, PlayerId, never>;
  state: ColumnType<IdentityState, IdentityState, IdentityState>;
  request_id: ColumnType<string, string, string>;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  updated_at: Timestamp;
}

/** A player table: the identity requests that touched a player, with their outcome (`linked` rows are the player's list). */
export interface PlayerIdentitiesTable {
  player_id: ColumnType<PlayerId, PlayerId, never>;
  request_id: ColumnType<string, string, never>;
  provider: ColumnType<string, string, never>;
  subject: ColumnType<string, string, never>;
  state: ColumnType<IdentityRequestState, IdentityRequestState, IdentityRequestState>;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  updated_at: Timestamp;
}
