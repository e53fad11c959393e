import { sql } from 'kysely';
import { PlayerNotFoundError, ValidationError } from '../errors/index.js';
import type { AnyShardSet, ShardSet } from '../db/index.js';
import { asPlainShardSet } from '../db/shard-set.js';
import { parsePlayerId, type PlayerId } from '../routing/index.js';
import { decodeHistoryCursor, encodeHistoryCursor, type HistoryPosition } from './history-cursor.js';
import { PLAYER_COLUMNS, selectPlayers, toPlayer } from './player-rows.js';
import { settleEach, splitOutages } from '../db/scatter.js';
import { onShard } from './shard-calls.js';
import type {
  AccountsOptions,
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
const CREATE_FIELDS: readonly (keyof CreatePlayerInput)[] = ['region', 'nickname', 'status'];
const PATCH_FIELDS: readonly (keyof ProfilePatch)[] = ['nickname', 'status'];

/**
 * Player accounts over the shards. Every call touches only the shards owning the ids involved;
 * a batch read costs one statement per shard touched, sent to all of them at once.
 */
export class Accounts {
  private readonly shards: ShardSet;
  private readonly maxBatchSize: number;

  /** `shards` may be typed with the app's tables (`ShardSet<AppDatabase>`): accounts read shardline's only. */
  constructor(shards: AnyShardSet, options: AccountsOptions = {}) {
    this.shards = asPlainShardSet(shards);
    this.maxBatchSize = validateLimit(options.maxBatchSize, DEFAULT_MAX_BATCH_SIZE, 100_000, 'maxBatchSize');
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
    const { bucket, shard } = this.shards.router.pickBucket(region);
    const row = await onShard(this.shards, shard.id, [], (db) =>
      db
        .insertInto('players')
        .values({ player_id: sql<PlayerId>`shardline_player_id(${bucket})`, region, nickname, status })
        .returning(['player_id', 'region', 'nickname', 'status', 'created_at', 'updated_at'])
        .executeTakeFirstOrThrow(),
    );
    return toPlayer(row);
  }

  /** One player; PlayerNotFoundError when no such player exists. */
  async getPlayer(id: PlayerId | string, options: GetPlayerOptions = {}): Promise<Player> {
    const pid = parsePlayerId(id);
    const gameId = options.gameId === undefined ? undefined : validateGameId(options.gameId);
    const shardId = this.shards.router.shardFor(pid).id;
    const [player] = await onShard(this.shards, shardId, [pid], (db) => selectPlayers(db, [pid], gameId));
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
    const groups = this.shards.router.groupByShard(unique);
    // Shard order, not first-appearance order, so the error thrown for several down shards is stable.
    const shardIds = this.shards.shards.map((s) => s.id).filter((id) => groups.has(id));
    const outcomes = await settleEach(shardIds, (shardId) => {
      const group = groups.get(shardId) ?? [];
      return onShard(this.shards, shardId, group, (db) => selectPlayers(db, group, gameId));
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
    if (nickname === undefined && status === undefined) return this.getPlayer(pid);

    const shardId = this.shards.router.shardFor(pid).id;
    const row = await onShard(this.shards, shardId, [pid], (db) =>
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
    if (!row) throw new PlayerNotFoundError([String(pid)]);
    return toPlayer(row);
  }

  /** A player's totals in one game: zeros when the player never played it. */
  async getStats(id: PlayerId | string, gameId: string): Promise<PlayerStats> {
    const game = validateGameId(gameId);
    const player = await this.getPlayer(id, { gameId: game });
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
    const shardId = this.shards.router.shardFor(pid).id;

    // One statement both proves the player exists and reads the page (a LATERAL subquery walking
    // the settlement_ledger_history index), so an unknown id is an error, not an empty history.
    const rows = await onShard(this.shards, shardId, [pid], (db) =>
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

/** Rows strictly after `pos` in (ended_at DESC, match_id DESC) order: a row comparison the index serves. */
function afterPosition(pos: HistoryPosition) {
  return sql<boolean>`(l.ended_at, l.match_id) < (${pos.endedAt}::timestamp AT TIME ZONE 'UTC', ${pos.matchId}::text)`;
}
