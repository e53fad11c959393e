import type { ShardUnavailableError } from '../errors/index.js';
import type { Outcome, PlayerStatus } from '../db/index.js';
import type { JsonObject } from '../db/schema.js';
// Where a read goes: `readFrom: 'replica'` lets a shard's replica answer while its replay lag is
// within `maxLagMs` (docs/shard-map.md); the defaults come from the ShardSet's options.
import type { ReadOptions } from '../db/replicas.js';
import type { PlayerId } from '../routing/index.js';
import type { IdentityStepHook } from './identities.js';
import type { Identity, IdentityProviderOptions } from './identity-key.js';

/** One player's totals in one game. A player who never played that game has all zeros. */
export interface PlayerStats {
  gameId: string;
  score: bigint;
  wins: number;
  losses: number;
  draws: number;
  gamesPlayed: number;
  lastMatchId: string | null;
  /** Null when the player has no stats row for this game yet. */
  updatedAt: Date | null;
}

export interface Player {
  id: PlayerId;
  region: string;
  nickname: string;
  status: PlayerStatus;
  createdAt: Date;
  updatedAt: Date;
  /** Present when the read asked for a `gameId`. */
  stats?: PlayerStats;
}

export interface CreatePlayerInput {
  region: string;
  nickname: string;
  status?: PlayerStatus;
  /** The login the player is found by (docs/identities.md): created with the player, or IdentityTakenError. */
  identity?: Identity;
  /**
   * The caller's idempotency key for a registration with an identity: a retry with the same
   * `requestId` (after a timeout, a crash) gets the same player instead of IdentityTakenError.
   */
  requestId?: string;
}

/** Fields a profile update may change; the id and region of a player never change. */
export interface ProfilePatch {
  nickname?: string;
  status?: PlayerStatus;
}

export interface GetPlayerOptions extends ReadOptions {
  /** Fill `stats` for this game (read on the same shard, in the same query). */
  gameId?: string;
}

export interface GetPlayersOptions extends GetPlayerOptions {
  /**
   * Return what the reachable shards hold and list the unreachable ones in `unavailable`, instead
   * of throwing ShardUnavailableError for the first shard that could not be reached.
   */
  partial?: boolean;
}

export interface UnavailableShard {
  shardId: string;
  playerIds: PlayerId[];
  error: ShardUnavailableError;
}

export interface GetPlayersResult {
  /** Players found, in input order (an id given twice appears once, at its first position). */
  players: Player[];
  /** Ids no reachable shard holds, in input order. Ids of unreachable shards are never here. */
  missing: PlayerId[];
  /** Always empty unless `partial` was asked for. */
  unavailable: UnavailableShard[];
}

export interface MatchHistoryOptions extends ReadOptions {
  /** Only matches of this game. */
  gameId?: string;
  /** Page size, 1..100 (default 20). */
  limit?: number;
  /** `nextCursor` of the previous page. */
  before?: string;
}

export interface MatchHistoryItem {
  matchId: string;
  gameId: string;
  scoreDelta: number;
  outcome: Outcome;
  endedAt: Date;
  appliedAt: Date;
  /** The result's data (see docs/effects.md); null when the match carried none. */
  data: JsonObject | null;
}

export interface MatchHistoryPage {
  /** Newest first: by ended_at, then match_id, both descending. */
  items: MatchHistoryItem[];
  /** Pass as `before` for the next page; null on the last page. */
  nextCursor: string | null;
}

export interface AccountsOptions {
  /** Most ids one getPlayers call accepts (default 1000). */
  maxBatchSize?: number;
  /**
   * How the subjects of each provider compare: `username` and `email` are case-insensitive, every
   * other provider exact, unless declared here (`{ gamertag: { caseInsensitive: true } }`).
   */
  identityProviders?: Record<string, IdentityProviderOptions>;
  /**
   * How long an identity registration may stay half-way before another request, a lookup or the
   * sweeper gives it up (default 10000 ms). Longer than any registration takes; shorter means a
   * crashed registration blocks its identity for less time.
   */
  identityLeaseMs?: number;
  /** @internal Called after each step of the identity protocol; only the crash tests set it. */
  __identityStepHook?: IdentityStepHook;
}

/** An identity a player holds, in its stored (normalised) form. */
export interface LinkedIdentity extends Identity {
  linkedAt: Date;
}

export interface ResolvePendingIdentitiesOptions {
  /** Settle rows half-way for longer than this (default: the lease). */
  olderThanMs?: number;
  /** At most this many rows per shard per call (default 1000). */
  limit?: number;
}

/** What `resolvePendingIdentities` did. */
export interface IdentityResolution {
  /** Rows settled as held: the player's shard says the player holds the identity. */
  confirmed: number;
  /** Rows removed: the registration was given up, or the unlink had happened. */
  released: number;
  /** Shards that could not be reached (theirs, or the players' shards of their rows): call again later. */
  unavailableShards: string[];
}
