import type { JsonObject, JsonValue, Outcome, PartState } from '../db/schema.js';
import type { RedisConnection } from '../redis/connection.js';
import type { PlayerId } from '../routing/index.js';

export type { JsonObject, JsonValue, Outcome, PartState };

/** One player's result as the caller submits it. Ids as PlayerId or decimal string. */
export interface SettlementResultInput {
  playerId: PlayerId | string;
  scoreDelta: number;
  outcome: Outcome;
  /**
   * The game's own figures for this player (coins, xp, drops...): a JSON object, checked at submit
   * by the schema registered for the game (`games` of the client), part of the content hash, kept
   * with the ledger row and handed to the game's effect. A game without a schema refuses it.
   */
  data?: Readonly<Record<string, unknown>>;
}

/**
 * What checks a game's `data`: a zod schema, or anything whose `parse` returns the value (possibly
 * transformed: what it returns is what is stored) or throws. A thrown error with zod-like
 * `issues: { path, message }[]` names the spot; any other error is reported with its message.
 */
export interface DataSchema<T = JsonObject> {
  parse(value: unknown): T;
}

/** Per game: how its results' `data` is checked (without `data`, the game refuses data). */
export interface GameSettings<T = JsonObject> {
  data?: DataSchema<T>;
}

/** The value type a game's schema yields (JsonObject when there is none). */
export type DataOf<G> = G extends { data: DataSchema<infer T> } ? T : JsonObject;

/** A finished match. `matchId` is the caller's idempotency key. */
export interface SettlementInput {
  matchId: string;
  gameId: string;
  /** A Date, or an ISO 8601 string with a time zone (`Z` or `+08:00`). */
  endedAt: Date | string;
  results: readonly SettlementResultInput[];
}

export interface SettlementLimits {
  /** Most results one match may carry. Default 1000. */
  maxResults: number;
  /** Smallest allowed scoreDelta (inclusive). Default -1_000_000. */
  minScoreDelta: number;
  /** Largest allowed scoreDelta (inclusive). Default 1_000_000. */
  maxScoreDelta: number;
  /** Largest input, as JSON, in bytes. Default 256 KiB. */
  maxPayloadBytes: number;
  /** How far in the future `endedAt` may be, for clock skew between game servers. Default 1 h. */
  maxClockSkewMs: number;
}

export const DEFAULT_LIMITS: Readonly<SettlementLimits> = Object.freeze({
  maxResults: 1000,
  minScoreDelta: -1_000_000,
  maxScoreDelta: 1_000_000,
  maxPayloadBytes: 256 * 1024,
  maxClockSkewMs: 60 * 60 * 1000,
});

/** An ioredis client (the caller keeps owning it) or ioredis options (shardline connects and closes). */
export type { RedisConnection };

/** The state of one shard's part of a match. `unknown`: the shard could not be asked. */
export interface ShardSettlementStatus {
  shardId: string;
  state: PartState | 'unknown';
  /** Players of the match on this shard (0 when only known from elsewhere). */
  players: number;
  attempts: number;
  /** Why it failed (failed), or why it could not be asked (unknown). */
  reason?: string;
  appliedAt?: Date;
  /** The `data` of this shard's results, by player id (decimal string); absent when none carried any. */
  data?: Record<string, JsonObject>;
  /**
   * Shards that results of this part went to, their players having moved there (state `forwarded`
   * when none was left here): their parts are listed too (docs/settlement.md, "Moves").
   */
  forwardedTo?: string[];
}

export interface SettlementStatus {
  matchId: string;
  /** failed if any part failed, else unknown if any shard could not be asked, else pending until all applied. */
  state: PartState | 'unknown';
  /** sha256 of the canonical match content; equal hashes mean equal submissions. */
  contentHash: string | null;
  shards: ShardSettlementStatus[];
  /** Set by submitSettlement: true when the match had been submitted before with the same content. */
  duplicate?: boolean;
}

/**
 * A dead letter: a failed inbox row (`source: 'inbox'`), or a failed job of a shard's queue that
 * no inbox row of that shard accounts for (`source: 'queue'`).
 */
export type FailedSettlement = FailedPart | DeadJob;

/** A part that can never apply as it stands, kept in its shard's inbox until retried. */
export interface FailedPart {
  source: 'inbox';
  matchId: string;
  shardId: string;
  gameId: string;
  reason: string;
  attempts: number;
  failedAt: Date;
  /** The id of the part's own job in its shard's queue, the one `retry` re-drives it under. */
  jobId: string;
  /** The `data` of the part's results, by player id (decimal string); absent when none carried any. */
  data?: Record<string, JsonObject>;
}

/**
 * A failed job with no inbox row behind it (malformed data, names another shard, no such part on
 * this shard): it lives only in BullMQ's failed set, so there is nothing `retry` could re-drive.
 * Jobs enqueued by shardline expire after `keepFailedSeconds`; others stay until removed from the
 * queue (BullMQ `Queue#remove(jobId)`).
 */
export interface DeadJob {
  source: 'queue';
  /**
   * A match the job names that has no inbox row behind it (a job of several parts is listed once
   * per such match), or null when the data names no valid match id.
   */
  matchId: string | null;
  /** The shard whose queue holds the job. */
  shardId: string;
  /** Only an inbox row knows the game. */
  gameId: null;
  /** BullMQ's failedReason, with control and invisible characters escaped. */
  reason: string;
  attempts: number;
  failedAt: Date;
  /** With control and invisible characters escaped: anything with Redis access can name a job. */
  jobId: string;
}

/** A shard that could not be asked, and why. */
export interface UnreachableShard {
  shardId: string;
  reason: string;
}

export interface FailedReport {
  failed: FailedSettlement[];
  unreachable: UnreachableShard[];
}

export interface RetryReport {
  /** Parts put back to pending and re-enqueued, as matchId and shardId. */
  parts: { matchId: string; shardId: string }[];
  /** Dead jobs of the target that have no inbox row: listed, left as they are, never re-driven. */
  notRetryable: DeadJob[];
  unreachable: UnreachableShard[];
}

export interface ReconcileReport {
  /** Pending parts looked at. */
  checked: number;
  /**
   * Stale pending parts enqueued again as jobs of their own: their own job was gone or finished
   * (a batch job that may still hold one is not looked for: a part that runs twice applies once).
   */
  requeued: { matchId: string; shardId: string }[];
  unreachable: UnreachableShard[];
}
