import type { SettlementStatus } from '../settlement/types.js';
import { showValue } from './show-value.js';

/**
 * Every error shardline throws on purpose is a ShardlineError with a stable `code`
 * (safe to switch on across versions) and, where one exists, the lower-level `cause`.
 */
export class ShardlineError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A shard map file is missing, unreadable, or breaks a rule; `issues` lists every fault found. */
export class ShardMapError extends ShardlineError {
  readonly file: string;
  readonly issues: readonly string[];
  constructor(file: string, issues: readonly string[], options?: { cause?: unknown }) {
    super('SHARD_MAP_INVALID', `invalid shard map ${file}:\n  - ${issues.join('\n  - ')}`, options);
    this.file = file;
    this.issues = issues;
  }
}

export class InvalidPlayerIdError extends ShardlineError {
  readonly value: string;
  constructor(value: unknown, reason: string) {
    // A bigint is a well-typed id out of range: show it as the decimal id, not as a JS literal.
    const shown = typeof value === 'bigint' ? String(value) : showValue(value);
    super('INVALID_PLAYER_ID', `invalid player id ${shown}: ${reason}`);
    this.value = shown;
  }
}

export class UnknownRegionError extends ShardlineError {
  readonly region: string;
  constructor(region: string, known: readonly string[]) {
    super('UNKNOWN_REGION', `unknown region ${showValue(region)} (known: ${known.join(', ')})`);
    this.region = region;
  }
}

export class UnknownShardError extends ShardlineError {
  readonly shardId: string;
  constructor(shardId: string, known: readonly string[]) {
    super('UNKNOWN_SHARD', `unknown shard ${showValue(shardId)} (known: ${known.join(', ')})`);
    this.shardId = shardId;
  }
}

const PLAIN_FIELD = /^[!-~]{1,100}$/;

/** Input that breaks a rule; `field` is a dotted path into the input, e.g. `results.2.scoreDelta`. */
export class ValidationError extends ShardlineError {
  readonly field: string;
  constructor(field: string, reason: string) {
    // The field can be a caller's own key (an unknown patch field): quote it unless it is plainly a path.
    super('VALIDATION_FAILED', `${PLAIN_FIELD.test(field) ? field : showValue(field)}: ${reason}`);
    this.field = field;
  }
}

// ---- shards and schema ----------------------------------------------------------------------

/** A shard could not be reached or answered with a connection-level failure. */
export class ShardUnavailableError extends ShardlineError {
  readonly shardId: string;
  /** host:port/database, never the password. */
  readonly target: string;
  /** True when retrying later may succeed (refused, timed out, shutting down). */
  readonly transient: boolean;
  /** Player ids the failed operation was about, when it was a batch. */
  readonly playerIds: readonly string[];
  private readonly reason: string;
  private readonly hint: string | undefined;
  constructor(
    shardId: string,
    target: string,
    reason: string,
    options: { cause?: unknown; transient?: boolean; hint?: string; playerIds?: readonly string[] } = {},
  ) {
    const hint = options.hint ? ` (hint: ${options.hint})` : '';
    super('SHARD_UNAVAILABLE', `shard ${showValue(shardId)} at ${target} is unavailable: ${reason}${hint}`, { cause: options.cause });
    this.shardId = shardId;
    this.target = target;
    this.transient = options.transient ?? true;
    this.playerIds = options.playerIds ?? [];
    this.reason = reason;
    this.hint = options.hint;
  }

  /** The same failure, naming the player ids of the operation it interrupted. */
  forPlayers(playerIds: readonly string[]): ShardUnavailableError {
    return new ShardUnavailableError(this.shardId, this.target, this.reason, {
      cause: this.cause,
      transient: this.transient,
      playerIds,
      ...(this.hint ? { hint: this.hint } : {}),
    });
  }
}

/** The database reached is not the shard the map says it is. Nothing was written. */
export class ShardIdentityError extends ShardlineError {
  readonly shardId: string;
  readonly found: string | null;
  constructor(shardId: string, target: string, found: string | null, detail?: string) {
    super(
      'SHARD_IDENTITY_MISMATCH',
      `shard ${showValue(shardId)} expected at ${target}, but ${found === null ? 'that database has no shard identity' : `that database is shard ${showValue(found)}`}` +
        (detail ? `: ${detail}` : ''),
    );
    this.shardId = shardId;
    this.found = found;
  }
}

/** One shard whose stamped buckets (what it owns) are not the buckets the map gives it. */
export interface ShardOwnershipFault {
  readonly shardId: string;
  /** The buckets its identity stamp owns, e.g. "1024-2047" ("none" for an empty shard). */
  readonly owned: string;
  /** The buckets the map gives it. */
  readonly mapped: string;
  /** Buckets the map gives it that it does not own, with the stamped shard that owns them when known. */
  readonly gained: readonly { readonly buckets: string; readonly heldBy: string | null }[];
  /** Buckets it owns that the map takes away, with the shard the map gives them to. */
  readonly lost: readonly { readonly buckets: string; readonly givenTo: string | null }[];
}

/**
 * The map does not give shards the buckets they own (their ownership records, at the map's epoch):
 * queries by it would look for players on shards that do not hold them, and report them missing.
 * Refused before any query or write; the fix is to restore the map, or to move the buckets.
 */
export class ShardOwnershipError extends ShardlineError {
  /** The first shard at fault (the only one, from a per-shard check). */
  readonly shardId: string;
  readonly faults: readonly ShardOwnershipFault[];
  constructor(faults: readonly ShardOwnershipFault[]) {
    const lines = faults.map((f) => ShardOwnershipError.describe(f));
    const owned = faults.map((f) => `${showValue(f.shardId)}: ${f.owned}`).join(', ');
    super(
      'SHARD_OWNERSHIP_MISMATCH',
      `the shard map does not give the shards the buckets they own, so players would go missing:\n  - ${lines.join('\n  - ')}\n` +
        `restore the map so that each shard has exactly the buckets it owns (${owned}), or move buckets with "shardline buckets move"; nothing was written`,
    );
    this.shardId = faults[0]?.shardId ?? '';
    this.faults = faults;
  }

  /** One fault in words: what the shard owns, what the map gives it, and who else is involved. */
  static describe(f: ShardOwnershipFault): string {
    const parts = [
      ...f.lost.map((l) => `the map takes away ${l.buckets}${l.givenTo === null ? '' : ` (giving them to ${showValue(l.givenTo)})`}`),
      ...f.gained.map((g) => `the map gives it ${g.buckets}, ${g.heldBy === null ? 'which it does not own' : `which shard ${showValue(g.heldBy)} owns`}`),
    ];
    return `shard ${showValue(f.shardId)} owns buckets ${f.owned} (its ownership record), the map gives it ${f.mapped}: ${parts.join('; ')}`;
  }
}

/**
 * A shard never stamped was not stamped as the owner of its map buckets, because another shard
 * of the map could not be read and may own them: stamping it would give those buckets two owners.
 */
export class ShardOwnershipUnverifiedError extends ShardlineError {
  readonly shardId: string;
  readonly buckets: string;
  /** The shards whose stamps could not be read, with why. */
  readonly unknown: readonly { readonly shardId: string; readonly reason: string }[];
  constructor(shardId: string, buckets: string, unknown: readonly { readonly shardId: string; readonly reason: string }[]) {
    const names = unknown.map((u) => `${showValue(u.shardId)} (${u.reason})`).join(', ');
    super(
      'SHARD_OWNERSHIP_UNVERIFIED',
      `shard ${showValue(shardId)} was not set up as the owner of buckets ${buckets}: the stamp of ${names} could not be read, and may own them; ` +
        'rerun when every shard of the map is reachable (nothing was created or written on this shard)',
    );
    this.shardId = shardId;
    this.buckets = buckets;
    this.unknown = unknown;
  }
}

/** The shard's schema is not the one this code was built for (not migrated, behind, or ahead). */
export class SchemaVersionError extends ShardlineError {
  readonly shardId: string;
  readonly applied: string | null;
  readonly expected: string | null;
  constructor(shardId: string, applied: string | null, expected: string | null, hint: string) {
    super('SCHEMA_VERSION_MISMATCH', `shard ${showValue(shardId)} is at schema ${applied ?? '(none)'}, code expects ${expected ?? '(none)'}: ${hint}`);
    this.shardId = shardId;
    this.applied = applied;
    this.expected = expected;
  }
}

/**
 * A statement of the app's own code on a shard (`ShardSet.transaction`, `ShardSet.scatter`) failed
 * in the database: a constraint, a serialization failure, a deadlock, a timeout. `transient` is
 * shardline's retry classification (retrying the whole transaction may succeed); `sqlState` is
 * Postgres' code (e.g. `23505`, `40001`); `cause` is the driver's error. A transaction that ends
 * with this error was rolled back.
 */
export class ShardQueryError extends ShardlineError {
  readonly shardId: string;
  readonly transient: boolean;
  readonly sqlState: string | undefined;
  /** Player ids the failed operation was about (the transaction's player), else empty. */
  readonly playerIds: readonly string[];
  constructor(shardId: string, reason: string, options: { cause?: unknown; transient: boolean; sqlState?: string; playerIds?: readonly string[] }) {
    const state = options.sqlState ? ` [SQLSTATE ${options.sqlState}]` : '';
    const retry = options.transient ? 'transient: retrying may succeed' : 'not transient: retrying will fail the same way';
    super('SHARD_QUERY_FAILED', `query on shard ${showValue(shardId)} failed: ${reason}${state} (${retry})`, { cause: options.cause });
    this.shardId = shardId;
    this.transient = options.transient;
    this.sqlState = options.sqlState;
    this.playerIds = options.playerIds ?? [];
  }
}

/** A migration failed on a shard; the shard stays at the last migration that committed. */
export class MigrationError extends ShardlineError {
  readonly shardId: string;
  constructor(shardId: string, message: string, options?: { cause?: unknown }) {
    super('MIGRATION_FAILED', `shard ${showValue(shardId)}: ${message}`, options);
    this.shardId = shardId;
  }
}

/**
 * The app's own schema on a shard (its migrations folder, `appMigrations`) is not the folder's:
 * not migrated, behind, or ahead of it. Raised by ShardSet and the worker, like SchemaVersionError
 * for shardline's own schema.
 */
export class AppSchemaVersionError extends ShardlineError {
  readonly shardId: string;
  readonly applied: string | null;
  readonly expected: string | null;
  constructor(shardId: string, applied: string | null, expected: string | null, hint: string) {
    super(
      'APP_SCHEMA_VERSION_MISMATCH',
      `shard ${showValue(shardId)} is at app schema ${applied ?? '(none)'}, the app migrations folder is at ${expected ?? '(none)'}: ${hint}`,
    );
    this.shardId = shardId;
    this.applied = applied;
    this.expected = expected;
  }
}

/** One rule of self-closure that a table of the app breaks (docs/app-tables.md lists the rules). */
export interface SelfClosureFault {
  /** The table, schema-qualified when it is not in the shard's own schema. */
  readonly table: string;
  readonly column?: string;
  readonly constraint?: string;
  /** The rule's stable name, e.g. "primary-key" (SELF_CLOSURE_RULES). */
  readonly rule: string;
  readonly message: string;
}

/**
 * Tables of the app would no longer keep the shard a self-closed record set. Raised inside an app
 * migration's transaction (so that migration is rolled back on that shard) or before one runs.
 */
export class SelfClosureError extends ShardlineError {
  readonly shardId: string;
  /** The app migration refused, when a migration was. */
  readonly migration: string | null;
  readonly faults: readonly SelfClosureFault[];
  constructor(shardId: string, migration: string | null, faults: readonly SelfClosureFault[]) {
    const what = migration === null ? 'the app tables' : `app migration ${migration}`;
    super(
      'SELF_CLOSURE_VIOLATION',
      `shard ${showValue(shardId)}: ${what} would break the self-closed record set, so ${migration === null ? 'no app migration was applied' : 'it was rolled back'}:\n  - ` +
        faults.map((f) => `[${f.rule}] ${f.message}`).join('\n  - '),
    );
    this.shardId = shardId;
    this.migration = migration;
    this.faults = faults;
  }
}

// ---- accounts ---------------------------------------------------------------------------------

export class PlayerNotFoundError extends ShardlineError {
  readonly playerIds: readonly string[];
  constructor(playerIds: readonly string[]) {
    super('PLAYER_NOT_FOUND', `player${playerIds.length > 1 ? 's' : ''} not found: ${playerIds.join(', ')}`);
    this.playerIds = playerIds;
  }
}

/**
 * The login identity belongs to another player, or another registration of it won (docs/identities.md).
 * Nothing of this call was kept. The subject is not in the message: it may be an email or a device id.
 */
export class IdentityTakenError extends ShardlineError {
  readonly provider: string;
  constructor(provider: string) {
    super('IDENTITY_TAKEN', `this ${showValue(provider)} identity is already linked to another player`);
    this.provider = provider;
  }
}

/** `unlinkIdentity` of a player's only identity: a player must keep one to log in by. Nothing changed. */
export class LastIdentityError extends ShardlineError {
  readonly playerId: string;
  readonly provider: string;
  constructor(playerId: string, provider: string) {
    super('LAST_IDENTITY', `player ${playerId}: the ${showValue(provider)} identity is the player's last one, and cannot be unlinked`);
    this.playerId = playerId;
    this.provider = provider;
  }
}

/** `unlinkIdentity` of an identity the player does not hold. Nothing changed. */
export class IdentityNotLinkedError extends ShardlineError {
  readonly playerId: string;
  readonly provider: string;
  constructor(playerId: string, provider: string) {
    super('IDENTITY_NOT_LINKED', `player ${playerId} holds no such ${showValue(provider)} identity`);
    this.playerId = playerId;
    this.provider = provider;
  }
}

// ---- settlement -------------------------------------------------------------------------------

/** The match id was settled before with different content. The first submission stands. */
export class SettlementConflictError extends ShardlineError {
  readonly matchId: string;
  constructor(matchId: string, detail: string) {
    super('SETTLEMENT_CONFLICT', `match ${showValue(matchId)} was already submitted with different content: ${detail}`);
    this.matchId = matchId;
  }
}

/**
 * `SettlementClient.waitFor` gave up: within `timeoutMs` the match did not reach a final status
 * (every part applied or failed). `lastStatus` is the last one read: null when no shard knew the
 * match, else it says which parts are still pending or could not be asked (`unknown`).
 */
export class SettlementTimeoutError extends ShardlineError {
  readonly matchId: string;
  readonly timeoutMs: number;
  readonly lastStatus: SettlementStatus | null;
  constructor(matchId: string, timeoutMs: number, lastStatus: SettlementStatus | null) {
    const open = lastStatus?.shards.filter((s) => s.state === 'pending' || s.state === 'unknown') ?? [];
    const detail = lastStatus === null ? 'no shard knows the match' : `still ${open.map((s) => `${s.state} on ${showValue(s.shardId)}`).join(', ')}`;
    super('SETTLEMENT_TIMEOUT', `match ${showValue(matchId)} was not settled within ${timeoutMs} ms: ${detail}`);
    this.matchId = matchId;
    this.timeoutMs = timeoutMs;
    this.lastStatus = lastStatus;
  }
}

/**
 * A game's settlement effect threw (not a transient database error): the parts it was given are
 * not applied, and a part that fails alone becomes a dead letter with this message as the reason.
 */
export class SettlementEffectError extends ShardlineError {
  readonly gameId: string;
  readonly matchIds: readonly string[];
  constructor(gameId: string, matchIds: readonly string[], cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super('SETTLEMENT_EFFECT_FAILED', `effect of game ${showValue(gameId)} failed: ${why}`, { cause });
    this.gameId = gameId;
    this.matchIds = matchIds;
  }
}

/** `--effects MODULE` (or loadEffectsModule) found no module there, or it exports no valid `effects`. */
export class EffectsModuleError extends ShardlineError {
  readonly module: string;
  constructor(module: string, reason: string, options?: { cause?: unknown }) {
    super('EFFECTS_MODULE_INVALID', `effects module ${showValue(module)}: ${reason}`, options);
    this.module = module;
  }
}

// ---- rooms and zones --------------------------------------------------------------------------

export class RoomFullError extends ShardlineError {
  readonly roomId: string;
  readonly capacity: number;
  constructor(roomId: string, capacity: number) {
    super('ROOM_FULL', `room ${showValue(roomId)} is full (${capacity} seats)`);
    this.roomId = roomId;
    this.capacity = capacity;
  }
}

export class ZoneFullError extends ShardlineError {
  readonly zone: string;
  constructor(zone: string) {
    super('ZONE_FULL', `every room of zone ${showValue(zone)} is full`);
    this.zone = zone;
  }
}

/**
 * A zone that does not exist: no room was ever defined in it (`autoEnter`), or, for a service with
 * a router, it is not a region of the shard map (`createRoom`, `defineRooms`; then `known` lists them).
 */
export class UnknownZoneError extends ShardlineError {
  readonly zone: string;
  /** The zones the shard map knows, when the zone was refused against the map; else null. */
  readonly known: readonly string[] | null;
  constructor(zone: string, known: readonly string[] | null = null) {
    const reason = known === null ? 'no room was ever defined in it' : `the shard map has no region of that name (its zones: ${known.join(', ')})`;
    super('UNKNOWN_ZONE', `unknown zone ${showValue(zone)}: ${reason}`);
    this.zone = zone;
    this.known = known;
  }
}

/** A `sit()` at a table whose seats are all taken; the table is unchanged. */
export class TableFullError extends ShardlineError {
  readonly tableId: string;
  readonly seats: number;
  constructor(tableId: string, seats: number) {
    super('TABLE_FULL', `table ${showValue(tableId)} is full (${seats} seats)`);
    this.tableId = tableId;
    this.seats = seats;
  }
}

export class UnknownRoomError extends ShardlineError {
  readonly roomId: string;
  constructor(roomId: string) {
    super('UNKNOWN_ROOM', `unknown room ${showValue(roomId)}`);
    this.roomId = roomId;
  }
}

// ---- queues -----------------------------------------------------------------------------------

/** Redis is configured in a way that can lose queued work (e.g. an evicting maxmemory-policy). */
export class RedisConfigError extends ShardlineError {
  readonly setting: string;
  readonly found: string;
  constructor(setting: string, found: string, expected: string) {
    super('REDIS_CONFIG', `Redis ${setting} is ${showValue(found)}, expected ${expected}`);
    this.setting = setting;
    this.found = found;
  }
}

/**
 * Redis could not be used: unreachable, or it refused the connection (e.g. a wrong password).
 * `target` is host:port, never the password; `hint` says where the URL was configured.
 */
export class RedisUnavailableError extends ShardlineError {
  readonly target: string;
  /** `problem` continues "Redis at host:port ...", e.g. "is unreachable: connection refused". */
  constructor(target: string, problem: string, hint: string, options?: { cause?: unknown }) {
    super('REDIS_UNAVAILABLE', `Redis at ${target} ${problem} (hint: ${hint})`, options);
    this.target = target;
  }
}

// ---- bucket moves (src/reshard) ---------------------------------------------------------------

/** A bucket move was refused before anything was created or changed: `reasons` lists every failed pre-check. */
export class MoveRefusedError extends ShardlineError {
  readonly range: string;
  readonly reasons: readonly string[];
  constructor(range: string, reasons: readonly string[]) {
    super('MOVE_REFUSED', `bucket move of ${range} refused: ${reasons.join('; ')}`);
    this.range = range;
    this.reasons = reasons;
  }
}

/** No move with this id on any shard of the map. */
export class MoveNotFoundError extends ShardlineError {
  readonly moveId: string;
  constructor(moveId: string) {
    super('MOVE_NOT_FOUND', `no bucket move ${showValue(moveId)} on any shard of the map (see "shardline buckets moves")`);
    this.moveId = moveId;
  }
}

/** Another mover holds a shard of this move (or another move is active there): retry when it is done. */
export class MoveBusyError extends ShardlineError {
  readonly shardId: string;
  readonly otherMove: string | null;
  readonly transient = true;
  constructor(shardId: string, otherMove: string | null, detail: string) {
    super('MOVE_BUSY', `shard ${showValue(shardId)} is busy with ${otherMove === null ? 'another mover' : `move ${otherMove}`}: ${detail}`);
    this.shardId = shardId;
    this.otherMove = otherMove;
  }
}

/** One (table, bucket) whose rows differ between the two sides of a move. */
export interface MoveMismatch {
  readonly table: string;
  readonly bucket: number;
  readonly source: { readonly count: string; readonly sum: string };
  readonly target: { readonly count: string; readonly sum: string };
}

/**
 * Exact verification failed: the target's copy of a range differs from the source's (counts or
 * row checksums). The move did not commit; the source serves the range again.
 */
export class MoveVerifyError extends ShardlineError {
  readonly moveId: string | null;
  readonly mismatches: readonly MoveMismatch[];
  constructor(moveId: string | null, mismatches: readonly MoveMismatch[]) {
    const shown = mismatches
      .slice(0, 5)
      .map((m) => `${m.table} bucket ${m.bucket}: ${m.source.count} rows / sum ${m.source.sum} vs ${m.target.count} / ${m.target.sum}`);
    super(
      'MOVE_VERIFY_FAILED',
      `${moveId === null ? 'verification' : `move ${moveId}`}: ${mismatches.length} (table, bucket) pairs differ: ${shown.join('; ')}${mismatches.length > 5 ? '; …' : ''}`,
    );
    this.moveId = moveId;
    this.mismatches = mismatches;
  }
}

/**
 * A cut-over limit was exceeded (`--max-lag` before the fence, `--max-freeze` during it): the move
 * did not commit and the source serves the range again; retrying (`--resume`) may succeed.
 */
export class MoveBudgetError extends ShardlineError {
  readonly moveId: string;
  readonly limit: 'lag' | 'freeze';
  readonly transient = true;
  constructor(moveId: string, limit: 'lag' | 'freeze', detail: string) {
    super('MOVE_OVER_BUDGET', `move ${moveId}: ${detail}; the source serves the range again, resume to retry`);
    this.moveId = moveId;
    this.limit = limit;
  }
}

/** A step of a move failed; the move stays resumable (`--resume`) or abortable (`--abort`) from its recorded state. */
export class MoveFailedError extends ShardlineError {
  readonly moveId: string;
  readonly state: string;
  constructor(moveId: string, state: string, message: string, options?: { cause?: unknown }) {
    super('MOVE_FAILED', `move ${moveId} (${state}): ${message}`, options);
    this.moveId = moveId;
    this.state = state;
  }
}

/**
 * A shard refused a write, inside the database, to a bucket it does not own (its fence, migration
 * 0009): routing was stale, or the bucket moved since. `movedTo` names the shard it moved to, at
 * `epoch`, when this shard's ownership record knows. The library refreshes routing and retries once
 * on the owner; what reaches the caller after that retry failed again.
 */
export class BucketMovedError extends ShardlineError {
  readonly shardId: string;
  readonly bucket: number;
  readonly movedTo: string | null;
  readonly epoch: number | null;
  /** Player ids the refused operation was about, else empty. */
  readonly playerIds: readonly string[];
  constructor(shardId: string, bucket: number, movedTo: string | null, epoch: number | null, options: { cause?: unknown; playerIds?: readonly string[] } = {}) {
    const where = movedTo === null ? 'it does not own it' : `it moved to shard ${showValue(movedTo)} at epoch ${epoch ?? '?'}`;
    super('BUCKET_MOVED', `shard ${showValue(shardId)} refused a write to bucket ${bucket}: ${where} (refresh routing and retry on the owner)`, {
      cause: options.cause,
    });
    this.shardId = shardId;
    this.bucket = bucket;
    this.movedTo = movedTo;
    this.epoch = epoch;
    this.playerIds = options.playerIds ?? [];
  }
}

/**
 * A shard refused a write to a bucket in the middle of its cut-over to another shard (frozen for
 * a moment while the move verifies and commits). Retryable: the library backs off and retries for
 * up to about ten seconds before this reaches the caller.
 */
export class BucketMovingError extends ShardlineError {
  readonly shardId: string;
  readonly bucket: number;
  readonly transient = true;
  readonly playerIds: readonly string[];
  constructor(shardId: string, bucket: number, options: { cause?: unknown; playerIds?: readonly string[] } = {}) {
    super('BUCKET_MOVING', `shard ${showValue(shardId)} refused a write to bucket ${bucket}: the bucket is being moved to another shard; retry shortly`, {
      cause: options.cause,
    });
    this.shardId = shardId;
    this.bucket = bucket;
    this.playerIds = options.playerIds ?? [];
  }
}

/**
 * The shard map claims buckets for a shard at an epoch above what the shards' ownership records
 * give those buckets: a map from a move that never committed, or edited by hand. Refused before any
 * query; write the current map with `shardline buckets move … --write-map FILE` or `shardline map write`.
 */
export class MapAheadOfOwnershipError extends ShardlineError {
  readonly mapEpoch: number;
  /** Each claim refused: the buckets, whom the map gives them to, and who owns them at which epoch. */
  readonly claims: readonly { readonly buckets: string; readonly mapShard: string; readonly owner: string; readonly liveEpoch: number }[];
  constructor(
    mapEpoch: number,
    claims: readonly { readonly buckets: string; readonly mapShard: string; readonly owner: string; readonly liveEpoch: number }[],
  ) {
    const shown = claims.map(
      (c) => `buckets ${c.buckets}: the map gives them to ${showValue(c.mapShard)}, shard ${showValue(c.owner)} owns them at epoch ${c.liveEpoch}`,
    );
    super(
      'MAP_AHEAD_OF_OWNERSHIP',
      `the shard map (epoch ${mapEpoch}) claims buckets above their live epoch: ${shown.join('; ')}; ` +
        'write the current map with "shardline buckets move … --write-map FILE" or "shardline map write"; nothing was written',
    );
    this.mapEpoch = mapEpoch;
    this.claims = claims;
  }
}

/** `migrate` refused a shard with a bucket move in progress (incoming or frozen ranges): a schema change would break its copy. */
export class ShardInMoveError extends ShardlineError {
  readonly shardId: string;
  readonly moves: readonly string[];
  constructor(shardId: string, moves: readonly string[], ranges: string) {
    super(
      'SHARD_IN_MOVE',
      `shard ${showValue(shardId)} is in a bucket move (${ranges}; move ${moves.map((m) => showValue(m)).join(', ')}): ` +
        'finish it or abort it ("shardline buckets move --resume ID" / "--abort ID") before migrating; nothing was migrated',
    );
    this.shardId = shardId;
    this.moves = moves;
  }
}

/** A board id names no defined board (leaderboards v2, docs/leaderboards.md), or not one of the kind asked for. */
export class UnknownBoardError extends ShardlineError {
  readonly boardId: string;
  constructor(boardId: string, reason = 'is not defined') {
    super('BOARD_NOT_FOUND', `board ${showValue(boardId)} ${reason}`);
    this.boardId = boardId;
  }
}

/** `defineBoard` with a definition that differs from the one the board already has: definitions never change. */
export class BoardConflictError extends ShardlineError {
  readonly boardId: string;
  /** The shard whose stored definition differs (the first shard of the map decides). */
  readonly shardId: string;
  readonly existing: { readonly operator: string; readonly period: string; readonly weekStart: string };
  readonly requested: { readonly operator: string; readonly period: string; readonly weekStart: string };
  constructor(
    boardId: string,
    shardId: string,
    existing: { operator: string; period: string; weekStart: string },
    requested: { operator: string; period: string; weekStart: string },
  ) {
    const show = (d: { operator: string; period: string; weekStart: string }) =>
      `${d.operator}/${d.period}${d.period === 'weekly' ? ` (week start ${d.weekStart})` : ''}`;
    super('BOARD_CONFLICT', `board ${showValue(boardId)} is already defined as ${show(existing)} on shard ${showValue(shardId)}, not ${show(requested)}`);
    this.boardId = boardId;
    this.shardId = shardId;
    this.existing = existing;
    this.requested = requested;
  }
}

/** A season cannot be opened or closed as asked: another season is open, it is closed already, or it does not exist. */
export class SeasonStateError extends ShardlineError {
  readonly boardId: string;
  readonly seasonId: string;
  readonly reason: 'other-season-open' | 'closed' | 'not-found';
  constructor(boardId: string, seasonId: string, reason: 'other-season-open' | 'closed' | 'not-found', detail: string) {
    super('SEASON_STATE', `season ${showValue(seasonId)} of board ${showValue(boardId)}: ${detail}`);
    this.boardId = boardId;
    this.seasonId = seasonId;
    this.reason = reason;
  }
}
