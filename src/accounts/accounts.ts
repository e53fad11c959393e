import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { PlayerNotFoundError, ValidationError } from '../errors/index.js';
import { linkedIdentities } from './identity-store.js';
import type { AnyShardSet, ShardSet } from '../db/index.js';
import { asPlainShardSet } from '../db/shard-set.js';
import { parsePlayerId, type PlayerId } from '../routing/index.js';
import { decodeHistoryCursor, encodeHistoryCursor, type HistoryPosition } from './history-cursor.js';
import { PLAYER_COLUMNS, selectPlayers, toPlayer } from './player-rows.js';
import { settleEach, splitOutages } from '../db/scatter.js';
import { onShard, onShardRead } from './shard-calls.js';
import type { ReadOptions } from '../db/replicas.js';
import { IdentityProtocol } from './identities.js';
import { IdentityRules, validateRequestId, type Identity } from './identity-key.js';
import type {
  AccountsOptions,
  IdentityResolution,
  LinkedIdentity,
  ResolvePendingIdentitiesOptions,
  CreatePlayerInput,
  GetPlayerOptions,
  GetPlayersOptions,
  GetPlayersResult,
  MatchHistoryItem,
  MatchHistoryOptions,
  MatchHistoryPage,
  Player,
  PlayerStats,
  ProfilePatch,
  UnavailableShard,
} from './types.js';
import { normalizeNickname, refuseUnknownFields, validateGameId, validateLimit, validateRegionName, validateStatus } from './validation.js';

export const DEFAULT_MAX_BATCH_SIZE = 1000;
const HISTORY_DEFAULT_LIMIT = 20;
const HISTORY_MAX_LIMIT = 100;
const CREATE_FIELDS: readonly (keyof CreatePlayerInput)[] = ['region', 'nickname', 'status', 'identity', 'requestId'];
export const DEFAULT_IDENTITY_LEASE_MS = 10_000;
const OPTION_FIELDS: readonly (keyof AccountsOptions)[] = ['maxBatchSize', 'identityProviders', 'identityLeaseMs', '__identityStepHook'];
const PATCH_FIELDS: readonly (keyof ProfilePatch)[] = ['nickname', 'status'];

/**
 * Player accounts over the shards. Every call touches only the shards owning the ids involved;
 * a batch read costs one statement per shard touched, sent to all of them at once.
 */
export class Accounts {
  private readonly shards: ShardSet;
  private readonly maxBatchSize: number;
  private readonly identityRules: IdentityRules;
  private readonly identityLeaseMs: number;
  private readonly identities: IdentityProtocol;

  /** `shards` may be typed with the app's tables (`ShardSet<AppDatabase>`): accounts read shardline's only. */
  constructor(shards: AnyShardSet, options: AccountsOptions = {}) {
    this.shards = asPlainShardSet(shards);
    refuseUnknownFields(options, OPTION_FIELDS, 'is not an option of Accounts');
    this.maxBatchSize = validateLimit(options.maxBatchSize, DEFAULT_MAX_BATCH_SIZE, 100_000, 'maxBatchSize');
    this.identityRules = new IdentityRules(options.identityProviders ?? {});
    this.identityLeaseMs = validateLimit(options.identityLeaseMs, DEFAULT_IDENTITY_LEASE_MS, 3_600_000, 'identityLeaseMs');
    const hook = options.__identityStepHook;
    if (hook !== undefined && typeof hook !== 'function') throw new ValidationError('__identityStepHook', 'must be a function');
    this.identities = new IdentityProtocol(this.shards, this.identityLeaseMs, hook);
  }

  /**
   * Creates a player in `region`. The id is minted by the owning shard itself
   * (`shardline_player_id(bucket)`), so processes creating players at once never collide.
   */
  async createPlayer(input: CreatePlayerInput): Promise<Player> {
    if (typeof input !== 'object' || input === null) throw new ValidationError('input', 'must be an object');
    refuseUnknownFields(input, CREATE_FIELDS, 'is not a field of a new player');
    const region = validateRegionName(input.region);
    const nickname = normalizeNickname(input.nickname);
    const status = input.status === undefined ? 'active' : validateStatus(input.status);
    if (input.identity !== undefined) {
      const key = this.identityRules.key(input.identity);
      const requestId = input.requestId === undefined ? randomUUID() : validateRequestId(input.requestId);
      this.shards.router.region(region); // an unknown region is refused before anything is written
      return this.identities.register({ key, requestId, region, nickname, status });
    }
    if (input.requestId !== undefined)
      throw new ValidationError('requestId', 'is only taken with an identity: it makes the registration of that identity idempotent');
    // A shard that no longer owns the bucket refuses the insert (its fence): routing is read again and a bucket picked anew.
    const row = await this.shards.retryOnMove(async () => {
      const { bucket, shard } = (await this.shards.routerReady()).pickBucket(region);
      return onShard(this.shards, shard.id, [], (db) =>
        db
          .insertInto('players')
          .values({ player_id: sql<PlayerId>`shardline_player_id(${bucket})`, region, nickname, status })
          .returning(['player_id', 'region', 'nickname', 'status', 'created_at', 'updated_at'])
          .executeTakeFirstOrThrow(),
      );
    });
    return toPlayer(row);
  }

  /**
   * The player who logs in by `identity`, or null: one primary-key read on the identity's shard
   * (the shard is a pure function of the identity), then the profile from the player's shard.
   */
  async findByIdentity(identity: Identity): Promise<Player | null> {
    const id = await this.playerIdByIdentity(identity);
    if (id === null) return null;
    const shardId = (await this.shards.routerReady()).shardFor(id).id;
    const [player] = await onShard(this.shards, shardId, [id], (db) => selectPlayers(db, [id]));
    return player ?? null;
  }

  /** The id of the player who logs in by `identity`, or null: one primary-key read on one shard. */
  async playerIdByIdentity(identity: Identity): Promise<PlayerId | null> {
    return this.identities.lookup(this.identityRules.key(identity));
  }

  /**
   * Gives the player another login (a guest's device id upgraded to a platform account).
   * IdentityTakenError when another player holds it; linking one the player holds is a no-op.
   * Returns the identity as stored (normalised).
   */
  async linkIdentity(playerId: PlayerId | string, identity: Identity): Promise<Identity> {
    const pid = parsePlayerId(playerId);
    const key = this.identityRules.key(identity);
    await this.identities.link(pid, key);
    return { provider: key.provider, subject: key.subject };
  }

  /** Takes a login away: LastIdentityError for the player's last one, IdentityNotLinkedError for one it does not hold. */
  async unlinkIdentity(playerId: PlayerId | string, identity: Identity): Promise<void> {
    const pid = parsePlayerId(playerId);
    await this.identities.unlink(pid, this.identityRules.key(identity));
  }

  /** The identities the player holds, oldest first, read from the player's own shard. */
  async listIdentities(playerId: PlayerId | string): Promise<LinkedIdentity[]> {
    const pid = parsePlayerId(playerId);
    const shardId = (await this.shards.routerReady()).shardFor(pid).id;
    const rows = await onShard(this.shards, shardId, [pid], (db) => linkedIdentities(db, pid));
    if (rows === null) throw new PlayerNotFoundError([String(pid)]);
    return rows;
  }

  /** The stored form of an identity under this instance's provider rules (ValidationError naming the field otherwise). */
  normalizeIdentity(identity: Identity): Identity {
    return this.identityRules.normalize(identity);
  }

  /**
   * The sweeper: settles identity registrations, links and unlinks left half-way by a process that
   * died, from what the players' shards hold. Lookups and retries settle what they meet anyway;
   * run this now and then so nothing stays reserved (e.g. every minute, from one process).
   */
  async resolvePendingIdentities(options: ResolvePendingIdentitiesOptions = {}): Promise<IdentityResolution> {
    refuseUnknownFields(options, ['olderThanMs', 'limit'], 'is not an option of resolvePendingIdentities');
    const olderThanMs = validateLimit(options.olderThanMs, this.identityLeaseMs, 86_400_000 * 365, 'olderThanMs', 0);
    const limit = validateLimit(options.limit, 1000, 100_000);
    return this.identities.resolvePending(olderThanMs, limit);
  }

  /** One player; PlayerNotFoundError when no such player exists. */
  async getPlayer(id: PlayerId | string, options: GetPlayerOptions = {}): Promise<Player> {
    const pid = parsePlayerId(id);
    const gameId = options.gameId === undefined ? undefined : validateGameId(options.gameId);
    const shardId = (await this.shards.routerReady()).shardFor(pid).id;
    const [player] = await onShardRead(this.shards, shardId, [pid], readOf(options), (db) => selectPlayers(db, [pid], gameId));
    if (!player) throw new PlayerNotFoundError([String(pid)]);
    return player;
  }

  /**
   * Many players in one statement per shard, all shards at once. Results follow the input order;
   * ids nobody holds are listed in `missing`. A shard that cannot be reached throws
   * ShardUnavailableError naming it and its ids, unless `partial` is set: then its ids are listed
   * under `unavailable` and the rest is returned.
   */
  async getPlayers(ids: readonly (PlayerId | string)[], options: GetPlayersOptions = {}): Promise<GetPlayersResult> {
    if (!Array.isArray(ids)) throw new ValidationError('ids', 'must be an array of player ids');
    if (ids.length > this.maxBatchSize) {
      throw new ValidationError('ids', `at most ${this.maxBatchSize} ids per call, got ${ids.length}`);
    }
    const gameId = options.gameId === undefined ? undefined : validateGameId(options.gameId);
    const unique = [...new Set(ids.map((id) => parsePlayerId(id)))];
    const router = await this.shards.routerReady();
    const groups = router.groupByShard(unique);
    // Shard order, not first-appearance order, so the error thrown for several down shards is stable.
    const shardIds = this.shards.shards.map((s) => s.id).filter((id) => groups.has(id));
    const read = readOf(options);
    const outcomes = await settleEach(shardIds, (shardId) => {
      const group = groups.get(shardId) ?? [];
      return onShardRead(this.shards, shardId, group, read, (db) => selectPlayers(db, group, gameId));
    });

    // Not an outage (a bug, a schema or identity problem) always throws; a down shard unless partial.
    const split = splitOutages(outcomes, options.partial === true);
    const found = new Map<PlayerId, Player>();
    for (const r of split.results) for (const p of r.value) found.set(p.id, p);
    const unavailable: UnavailableShard[] = split.unavailable.map((u) => ({ ...u, playerIds: groups.get(u.shardId) ?? [] }));
    const lost = new Set(unavailable.flatMap((u) => u.playerIds));

    const players: Player[] = [];
    const missing: PlayerId[] = [];
    for (const id of unique) {
      const p = found.get(id);
      if (p) players.push(p);
      else if (!lost.has(id)) missing.push(id);
    }
    return { players, missing, unavailable };
  }

  /** Changes nickname and/or status; returns the updated player. The id and region never change. */
  async updateProfile(id: PlayerId | string, patch: ProfilePatch): Promise<Player> {
    const pid = parsePlayerId(id);
    if (typeof patch !== 'object' || patch === null) throw new ValidationError('patch', 'must be an object');
    refuseUnknownFields(patch, PATCH_FIELDS, 'cannot be changed by updateProfile');
    const nickname = patch.nickname === undefined ? undefined : normalizeNickname(patch.nickname);
    const status = patch.status === undefined ? undefined : validateStatus(patch.status);
    if (nickname === undefined && status === undefined) return this.getPlayer(pid, { readFrom: 'primary' }); // after a write: never a replica

    const row = await this.shards.retryOnMove(async () => {
      const shardId = (await this.shards.routerReady()).shardFor(pid).id;
      return onShard(this.shards, shardId, [pid], (db) =>
        db
          .updateTable('players as p')
          .set({
            ...(nickname !== undefined ? { nickname } : {}),
            ...(status !== undefined ? { status } : {}),
            updated_at: sql<Date>`now()`,
          })
          .where('p.player_id', '=', pid)
          .returning(PLAYER_COLUMNS)
          .executeTakeFirst(),
      );
    });
    if (!row) throw new PlayerNotFoundError([String(pid)]);
    return toPlayer(row);
  }

  /** A player's totals in one game: zeros when the player never played it. `options`: where the read goes (replicas). */
  async getStats(id: PlayerId | string, gameId: string, options: ReadOptions = {}): Promise<PlayerStats> {
    const game = validateGameId(gameId);
    const player = await this.getPlayer(id, { ...readOf(options), gameId: game });
    return player.stats as PlayerStats;
  }

  /**
   * A player's settled matches, newest first, a page at a time. Pages are keyset-paginated on
   * (ended_at, match_id), so matches settled while paging never shift or repeat items.
   */
  async getMatchHistory(id: PlayerId | string, options: MatchHistoryOptions = {}): Promise<MatchHistoryPage> {
    const pid = parsePlayerId(id);
    const gameId = options.gameId === undefined ? undefined : validateGameId(options.gameId);
    const limit = validateLimit(options.limit, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT);
    const before = options.before === undefined ? undefined : decodeHistoryCursor(options.before);
    const shardId = (await this.shards.routerReady()).shardFor(pid).id;

    // One statement both proves the player exists and reads the page (a LATERAL subquery walking
    // the settlement_ledger_history index), so an unknown id is an error, not an empty history.
    const rows = await onShardRead(this.shards, shardId, [pid], readOf(options), (db) =>
      db
        .selectFrom('players as p')
        .leftJoinLateral(
          (eb) =>
            eb
              .selectFrom('settlement_ledger as l')
              .select(['l.match_id', 'l.game_id', 'l.score_delta', 'l.outcome', 'l.ended_at', 'l.applied_at', 'l.data'])
              .select(sql<string>`to_char(l.ended_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')`.as('ended_key'))
              .whereRef('l.player_id', '=', 'p.player_id')
              .$if(gameId !== undefined, (qb) => qb.where('l.game_id', '=', gameId as string))
              .$if(before !== undefined, (qb) => qb.where(afterPosition(before as HistoryPosition)))
              .orderBy('l.ended_at', 'desc')
              .orderBy('l.match_id', 'desc')
              .limit(limit + 1)
              .as('h'),
          (join) => join.onTrue(),
        )
        .select(['h.match_id', 'h.game_id', 'h.score_delta', 'h.outcome', 'h.ended_at', 'h.applied_at', 'h.ended_key', 'h.data'])
        .where('p.player_id', '=', pid)
        .orderBy('h.ended_at', 'desc')
        .orderBy('h.match_id', 'desc')
        .execute(),
    );
    if (rows.length === 0) throw new PlayerNotFoundError([String(pid)]);

    const items: MatchHistoryItem[] = [];
    let last: HistoryPosition | undefined;
    for (const r of rows.slice(0, limit)) {
      if (r.match_id === null || r.ended_key === null) continue; // the player has no matches (LEFT JOIN row)
      items.push({
        matchId: r.match_id,
        gameId: r.game_id as string,
        scoreDelta: r.score_delta as number,
        outcome: r.outcome as MatchHistoryItem['outcome'],
        endedAt: r.ended_at as Date,
        appliedAt: r.applied_at as Date,
        data: r.data ?? null,
      });
      last = { endedAt: r.ended_key, matchId: r.match_id };
    }
    const nextCursor = rows.length > limit && last ? encodeHistoryCursor(last) : null;
    return { items, nextCursor };
  }
}

/** Only the read options of a call's options (`readFrom`, `maxLagMs`), checked by the ShardSet. */
function readOf(options: ReadOptions): ReadOptions {
  if (typeof options !== 'object' || options === null) return {};
  const { readFrom, maxLagMs } = options;
  return { ...(readFrom === undefined ? {} : { readFrom }), ...(maxLagMs === undefined ? {} : { maxLagMs }) };
}

/** Rows strictly after `pos` in (ended_at DESC, match_id DESC) order: a row comparison the index serves. */
function afterPosition(pos: HistoryPosition) {
  return sql<boolean>`(l.ended_at, l.match_id) < (${pos.endedAt}::timestamp AT TIME ZONE 'UTC', ${pos.matchId}::text)`;
}
