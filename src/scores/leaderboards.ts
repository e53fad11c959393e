import { createHash } from 'node:crypto';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { PlayerNotFoundError, UnknownBoardError, ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import type { AnyShardSet, ReadOptions, ShardDatabase, ShardSet } from '../db/index.js';
import { asPlainShardSet } from '../db/shard-set.js';
import { parsePlayerId, type PlayerId } from '../routing/index.js';
import type { ShardSpec } from '../shardmap/index.js';
import { settleAll } from '../db/scatter.js';
import { validateGameId, validateLimit, validateRegionName } from '../accounts/validation.js';
import { kWayMerge } from './k-way-merge.js';
import { BoardRegistry, type BoardDefinition, type BoardListing, type DefineBoardInput, type SeasonInfo } from './boards.js';
import { ALL_TIME, NAME, calendarPeriodOf, validatePeriodLabel } from './periods.js';
import { complement, ownedRanges } from './shard-scope.js';
import { bucketFilter } from '../db/owned-filter.js';
import type {
  AmongEntry,
  AroundOptions,
  BoardReadOptions,
  LeaderboardEntry,
  LeaderboardsOptions,
  PlayerRank,
  RankOfOptions,
  TopAmongOptions,
  TopScoresOptions,
} from './types.js';

const DEFAULT_LIMIT = 10;
const DEFAULT_MAX_LIMIT = 1000;
const MAX_AROUND = 100;
const MAX_AMONG = 1000;
/** How long "this id names no defined board" is believed before asking again. */
const NO_BOARD_TTL_MS = 1000;

type Scored = Omit<LeaderboardEntry, 'rank'>;

/**
 * The leaderboard order, everywhere: score descending, then player id ascending. The id breaks
 * ties so every shard, the merge and rankOf agree on one total order (and a tie goes to the
 * player who registered first, since ids grow with creation time). It is also the order of the
 * leaderboard_scores_order index, so each shard reads its top-K straight off the index.
 */
export function compareEntries(a: Pick<Scored, 'score' | 'playerId'>, b: Pick<Scored, 'score' | 'playerId'>): number {
  if (a.score !== b.score) return a.score > b.score ? -1 : 1;
  return a.playerId < b.playerId ? -1 : a.playerId > b.playerId ? 1 : 0;
}

/** One period of one board, as stored in leaderboard_scores. `period` null: a season board before its first season. */
interface Target {
  boardId: string;
  gameId: string;
  period: string | null;
  board: BoardDefinition | null;
  hide: boolean;
  read: ReadOptions;
}

interface OwnScore {
  score: bigint;
  region: string;
  nickname: string;
}

/**
 * Exact leaderboards over sharded scores. A board is the plain game id (the all-time sum of the
 * game's score deltas, as player_stats holds it) or a defined board `<game>:<name>` with an
 * operator and a period (docs/leaderboards.md). Reads scatter to the shards in scope and gather, so
 * results are as fresh as the shards (or the replicas read, with `readFrom`). Every shard must
 * answer; a down shard throws ShardUnavailableError rather than return a leaderboard that is
 * silently wrong. Each shard counts only the buckets it serves, so a player in a bucket move is
 * counted once.
 */
export class Leaderboards {
  private readonly shards: ShardSet;
  private readonly maxLimit: number;
  private readonly hideInactive: boolean;
  private readonly registry: BoardRegistry;
  private readonly boards = new Map<string, BoardDefinition>();
  private readonly noBoard = new Map<string, number>();

  /** `shards` may be typed with the app's tables (`ShardSet<AppDatabase>`): leaderboards read shardline's only. */
  constructor(shards: AnyShardSet, options: LeaderboardsOptions = {}) {
    this.shards = asPlainShardSet(shards);
    this.maxLimit = validateLimit(options.maxLimit, DEFAULT_MAX_LIMIT, 100_000, 'maxLimit');
    if (options.hideInactive !== undefined && typeof options.hideInactive !== 'boolean') {
      throw new ValidationError('hideInactive', `must be a boolean, got ${showValue(options.hideInactive)}`);
    }
    this.hideInactive = options.hideInactive ?? true;
    this.registry = new BoardRegistry(this.shards);
  }

  // ---- definitions ------------------------------------------------------------------------

  /**
   * Defines a board on every shard: idempotent (the same definition again is a no-op), a different
   * definition of an existing board is refused with BoardConflictError. Results applied from then
   * on move it; results applied before do not (a board starts empty).
   */
  defineBoard(input: DefineBoardInput): Promise<BoardDefinition> {
    return this.registry.define(input);
  }

  /** Every defined board (of one game), with its seasons. The plain game ids are not listed. */
  listBoards(options: { gameId?: string } = {}): Promise<BoardListing[]> {
    return this.registry.list(options.gameId);
  }

  /** Opens a season of a season board on every shard (at `at`, default now); see BoardRegistry.openSeason. */
  openSeason(boardId: string, seasonId: string, options: { at?: Date } = {}): Promise<SeasonInfo> {
    return this.registry.openSeason(boardId, seasonId, options.at);
  }

  /** Closes a season on every shard (at `at`, default now): its scores are final from then on. */
  closeSeason(boardId: string, seasonId: string, options: { at?: Date } = {}): Promise<SeasonInfo> {
    return this.registry.closeSeason(boardId, seasonId, options.at);
  }

  // ---- reads ------------------------------------------------------------------------------

  /**
   * The exact top `limit` of a board period, global or of one region, merged from per-shard top
   * lists (each an index range scan). A shard can hold at most `limit` of the winners, but usually
   * holds about limit/shards of them, so the first round asks each shard for a share with headroom;
   * a shard whose whole share ranks above the merged limit-th entry may hide more winners, and only
   * those shards are asked again, for a full `limit`. So: one round trip per shard in the common
   * case, two for the shards that hold a disproportionate part of the top.
   */
  async topScores(board: string, options: TopScoresOptions = {}): Promise<LeaderboardEntry[]> {
    const t = await this.target(board, options);
    const limit = validateLimit(options.limit, DEFAULT_LIMIT, this.maxLimit);
    const shardIds = this.scope(options.region).map((s) => s.id);
    if (t.period === null) return [];
    const share = shardIds.length === 1 ? limit : Math.min(limit, Math.ceil((limit * 1.5) / shardIds.length) + 4);

    const lists = await settleAll(shardIds, (shardId) => this.shardTop(shardId, t, share));
    let top = kWayMerge(lists, compareEntries, limit);
    const kth = top.length === limit ? top[limit - 1] : undefined;
    const again = shardIds.filter((_, i) => {
      const list = lists[i] as Scored[];
      const last = list.at(-1);
      // Everything this shard did not send ranks below `last`; only if `last` beats the
      // limit-th entry (or there is no such entry yet) can the unsent rows matter.
      return share < limit && list.length === share && last !== undefined && (kth === undefined || compareEntries(last, kth) < 0);
    });
    if (again.length > 0) {
      const full = await settleAll(again, (shardId) => this.shardTop(shardId, t, limit));
      again.forEach((shardId, j) => {
        lists[shardIds.indexOf(shardId)] = full[j] as Scored[];
      });
      top = kWayMerge(lists, compareEntries, limit);
    }
    return top.map((e, i) => ({ rank: i + 1, ...e }));
  }

  /**
   * A player's exact rank on a board period: 1 + the players ahead of them on every shard in
   * scope. Each shard answers from its per-range counts: the rows of every higher score range
   * (a sum over at most a few thousand count rows) plus one small count inside the player's own
   * range, in one statement. Null when the player has no score there (or is hidden). Shards are
   * read without a global snapshot, so a settlement landing mid-call may move the answer by the
   * players it touched.
   */
  async rankOf(id: PlayerId | string, board: string, options: RankOfOptions = {}): Promise<PlayerRank | null> {
    const pid = parsePlayerId(id);
    const t = await this.target(board, options);
    const { region, scope } = this.playerScope(pid, options.region);
    const own = await this.ownScore(pid, t);
    if (own === null) return null;
    const ahead = await this.aheadOf(scope, t, [{ score: own.score, playerId: pid }]);
    return this.rankResult(pid, t, own.score, (ahead[0] ?? 0) + 1, region);
  }

  /**
   * The exact neighbourhood of a player on a board period: up to `above` entries ranked just ahead
   * of them, the player, and up to `below` just behind, in rank order, with their ranks (global, or
   * within `region`). Null when the player has no score there (or is hidden). At the top of a board
   * there are fewer entries above, at the bottom fewer below.
   */
  async around(id: PlayerId | string, board: string, options: AroundOptions = {}): Promise<LeaderboardEntry[] | null> {
    const pid = parsePlayerId(id);
    const t = await this.target(board, options);
    const above = validateLimit(options.above, 5, MAX_AROUND, 'above', 0);
    const below = validateLimit(options.below, 5, MAX_AROUND, 'below', 0);
    const { scope } = this.playerScope(pid, options.region);
    const own = await this.ownScore(pid, t);
    if (own === null) return null;
    const me = { score: own.score, playerId: pid };
    const shardIds = scope.map((s) => s.id);
    const lists = await settleAll(shardIds, (shardId) => this.shardAround(shardId, t, me, above, below));
    const rank = lists.reduce((sum, l) => sum + l.ahead, 0) + 1;
    const reverse = (a: Scored, b: Scored) => compareEntries(b, a);
    const before = kWayMerge(
      lists.map((l) => l.above),
      reverse,
      above,
    ).reverse();
    const after = kWayMerge(
      lists.map((l) => l.below),
      compareEntries,
      below,
    );
    const self: Scored = { playerId: pid, nickname: own.nickname, region: own.region, score: own.score };
    return [...before, self, ...after].map((e, i) => ({ rank: rank - before.length + i, ...e }));
  }

  /**
   * The given players that have a score on a board period (friends, a guild), in board order, each
   * with its `place` in that list and its global `rank`. The scores: one statement per shard
   * holding one of the players; the ranks: one statement per shard of the map, for all of them at
   * once. Unknown ids and players without a score (or hidden) are left out. At most 1000 ids.
   */
  async topAmong(board: string, playerIds: readonly (PlayerId | string)[], options: TopAmongOptions = {}): Promise<AmongEntry[]> {
    if (!Array.isArray(playerIds)) throw new ValidationError('playerIds', `must be an array of player ids, got ${showValue(playerIds)}`);
    if (playerIds.length > MAX_AMONG) throw new ValidationError('playerIds', `at most ${MAX_AMONG} ids, got ${playerIds.length}`);
    const ids = [...new Set(playerIds.map((p) => parsePlayerId(p)))];
    const t = await this.target(board, options);
    if (t.period === null || ids.length === 0) return [];
    const byShard = new Map<string, PlayerId[]>();
    for (const pid of ids) {
      const shardId = this.shards.router.shardFor(pid).id;
      byShard.set(shardId, [...(byShard.get(shardId) ?? []), pid]);
    }
    const found = (await settleAll([...byShard.keys()], (shardId) => this.shardScores(shardId, t, byShard.get(shardId)!))).flat();
    found.sort(compareEntries);
    if (found.length === 0) return [];
    const ahead = await this.aheadOf(this.shards.shards, t, found);
    return found.map((e, i) => ({ place: i + 1, rank: (ahead[i] ?? 0) + 1, ...e }));
  }

  // ---- board periods ----------------------------------------------------------------------

  private async target(board: unknown, options: BoardReadOptions): Promise<Target> {
    if (typeof options !== 'object' || options === null) throw new ValidationError('options', `must be an object, got ${showValue(options)}`);
    const id = validateGameId(board, 'gameId');
    const hide = options.hideInactive ?? this.hideInactive;
    if (typeof hide !== 'boolean') throw new ValidationError('hideInactive', `must be a boolean, got ${showValue(hide)}`);
    const read: ReadOptions = {};
    if (options.readFrom !== undefined) read.readFrom = options.readFrom;
    if (options.maxLagMs !== undefined) read.maxLagMs = options.maxLagMs;
    const def = await this.definition(id);
    if (def === null) {
      // The plain game id: one period, all time.
      if (options.period !== undefined && options.period !== ALL_TIME) {
        if (id.includes(':')) throw new UnknownBoardError(id);
        throw new ValidationError('period', `the plain game id ${showValue(id)} is its all-time board; define a board for other periods`);
      }
      return { boardId: id, gameId: id, period: '', board: null, hide, read };
    }
    return { boardId: id, gameId: def.gameId, period: await this.periodOf(def, options.period), board: def, hide, read };
  }

  private async definition(id: string): Promise<BoardDefinition | null> {
    const at = id.lastIndexOf(':');
    if (at <= 0 || !NAME.test(id.slice(at + 1))) return null; // cannot name a defined board: a plain game id
    const known = this.boards.get(id);
    if (known) return known;
    const missed = this.noBoard.get(id);
    if (missed !== undefined && Date.now() - missed < NO_BOARD_TTL_MS) return null;
    const def = await this.registry.get(id);
    // Definitions never change once made, so one read is good for the life of this object.
    if (def) this.boards.set(id, def);
    else this.noBoard.set(id, Date.now());
    return def;
  }

  private async periodOf(def: BoardDefinition, period: string | Date | undefined): Promise<string | null> {
    if (def.period === 'season') {
      if (period instanceof Date) throw new ValidationError('period', `a season board's period is a season id, not a date`);
      if (period !== undefined) return validatePeriodLabel('season', period);
      return (await this.registry.currentSeason(def.boardId))?.seasonId ?? null;
    }
    if (period === undefined) return calendarPeriodOf(def.period, new Date(), def.weekStart);
    if (period instanceof Date) return calendarPeriodOf(def.period, period, def.weekStart);
    return validatePeriodLabel(def.period, period);
  }

  // ---- per-shard statements ---------------------------------------------------------------

  private key(t: Target, alias = 'x'): RawBuilder<boolean> {
    const hide = t.hide ? sql` AND ${sql.ref(`${alias}.active`)}` : sql``;
    return sql<boolean>`${sql.ref(`${alias}.board_id`)} = ${t.boardId} AND ${sql.ref(`${alias}.period`)} = ${t.period ?? ''}${hide}`;
  }

  private read<T>(shardId: string, t: Target, fn: (db: Kysely<ShardDatabase>) => Promise<T>, playerIds: readonly PlayerId[] = []): Promise<T> {
    return this.shards.withReadShard(shardId, fn, t.read, playerIds.map(String));
  }

  /**
   * The rows of one read statement on a shard. On the primary it runs as a named statement, so
   * each connection parses and plans it once instead of on every call (planning was most of these
   * statements' cost); its name is a hash of its text, which holds no values but the bucket bounds
   * and row limits, so a connection prepares a handful. A replica read runs it unnamed: the
   * replica's own pool is picked per call, and its reads are not the hot path.
   */
  private rows<R>(shardId: string, t: Target, statement: RawBuilder<R>, playerIds: readonly PlayerId[] = []): Promise<R[]> {
    return this.read(
      shardId,
      t,
      async (db) => {
        const compiled = statement.compile(db);
        // withReadShard hands over the primary's own Kysely (checked by then) unless it picked a replica.
        if (db !== this.shards.rawDb(shardId)) return (await db.executeQuery(compiled)).rows;
        const r = await this.shards
          .pool(shardId)
          .query<R & object>({ name: statementName(compiled.sql), text: compiled.sql, values: [...compiled.parameters] });
        return r.rows;
      },
      playerIds,
    );
  }

  /**
   * One shard's first `limit` rows in board order. The nickname comes from a correlated subquery,
   * not a join: the same rows (the foreign key guarantees the player row), but nothing for the
   * planner to search. The limit is written into the text (one of a few values a call uses), so
   * the statement's generic plan is the custom one: an index scan that stops after `limit` rows
   * (with `LIMIT $n` a generic plan assumes a tenth of the table and would sort it).
   */
  private async shardTop(shardId: string, t: Target, limit: number): Promise<Scored[]> {
    const region = this.shards.router.shard(shardId).region; // every player of a shard is of its region
    const rows = await this.rows(
      shardId,
      t,
      sql<{ player_id: PlayerId; score: bigint; nickname: string | null }>`
        SELECT x.player_id, x.score, (SELECT p.nickname FROM players p WHERE p.player_id = x.player_id) AS nickname
        FROM leaderboard_scores x
        WHERE ${this.key(t)} AND ${bucketFilter('x.player_id', ownedRanges(this.shards, shardId))}
        ORDER BY x.score DESC, x.player_id ASC LIMIT ${limitText(limit)}`,
    );
    return rows.map((row) => ({ playerId: row.player_id, score: BigInt(row.score), nickname: row.nickname ?? '', region }));
  }

  /** The rows just ahead of `me` (nearest first) and just behind it, on one shard, in one statement. */
  private async shardAround(shardId: string, t: Target, me: { score: bigint; playerId: PlayerId }, above: number, below: number) {
    const region = this.shards.router.shard(shardId).region;
    const owned = bucketFilter('x.player_id', ownedRanges(this.shards, shardId));
    const s = me.score.toString();
    // Limits in the text, as in shardTop, so the prepared statement's generic plan reads the index.
    const rows = await this.rows(
      shardId,
      t,
      sql<{ side: 'r' | 'a' | 'b'; player_id: PlayerId; score: bigint; nickname: string | null }>`
        (SELECT 'r' AS side, NULL::bigint AS player_id, c.ahead::bigint AS score, NULL AS nickname FROM (${this.aheadSql(shardId, t, [me])}) c)
        UNION ALL
        (SELECT 'a', x.player_id, x.score, (SELECT p.nickname FROM players p WHERE p.player_id = x.player_id)
         FROM leaderboard_scores x
         WHERE ${this.key(t)} AND ${owned} AND x.score >= ${s}::bigint AND (x.score > ${s}::bigint OR x.player_id < ${me.playerId})
         ORDER BY x.score ASC, x.player_id DESC LIMIT ${limitText(above)})
        UNION ALL
        (SELECT 'b', x.player_id, x.score, (SELECT p.nickname FROM players p WHERE p.player_id = x.player_id)
         FROM leaderboard_scores x
         WHERE ${this.key(t)} AND ${owned} AND x.score <= ${s}::bigint AND (x.score < ${s}::bigint OR x.player_id > ${me.playerId})
         ORDER BY x.score DESC, x.player_id ASC LIMIT ${limitText(below)})`,
    );
    const of = (side: 'a' | 'b') =>
      rows.filter((x) => x.side === side).map((x) => ({ playerId: x.player_id, score: BigInt(x.score), nickname: x.nickname ?? '', region }));
    return { ahead: Number(rows.find((x) => x.side === 'r')?.score ?? 0), above: of('a'), below: of('b') };
  }

  /** The scores (and nicknames) of some players of one shard. */
  private async shardScores(shardId: string, t: Target, ids: readonly PlayerId[]): Promise<Scored[]> {
    const region = this.shards.router.shard(shardId).region;
    const rows = await this.rows(
      shardId,
      t,
      sql<{ player_id: PlayerId; score: bigint; nickname: string }>`
        SELECT x.player_id, x.score, p.nickname FROM leaderboard_scores x JOIN players p ON p.player_id = x.player_id
        WHERE x.player_id = ANY(${ids.map(String)}::bigint[]) AND ${this.key(t)}
          AND ${bucketFilter('x.player_id', ownedRanges(this.shards, shardId))}`,
      ids,
    );
    return rows.map((row) => ({ playerId: row.player_id, score: BigInt(row.score), nickname: row.nickname, region }));
  }

  /** The player's own score on the board period: null when they have none (or are hidden). */
  private async ownScore(pid: PlayerId, t: Target): Promise<OwnScore | null> {
    const home = this.shards.router.shardFor(pid);
    const [row] = await this.rows(
      home.id,
      t,
      sql<{ score: bigint | null; active: boolean | null; nickname: string }>`
        SELECT x.score, x.active, p.nickname FROM players p
        LEFT JOIN leaderboard_scores x ON x.player_id = p.player_id AND x.board_id = ${t.boardId} AND x.period = ${t.period ?? ''}
        WHERE p.player_id = ${pid}`,
      [pid],
    );
    if (!row) throw new PlayerNotFoundError([String(pid)]);
    if (t.period === null || row.score === null || (t.hide && row.active !== true)) return null;
    return { score: BigInt(row.score), region: home.region, nickname: row.nickname };
  }

  /**
   * How many rows rank ahead of each (score, player) on the shards in `scope`: one statement per
   * shard, for all the players at once (aheadSql).
   */
  private async aheadOf(scope: readonly ShardSpec[], t: Target, players: readonly { score: bigint; playerId: PlayerId }[]): Promise<number[]> {
    if (t.period === null || players.length === 0) return players.map(() => 0);
    const perShard = await settleAll(
      scope.map((s) => s.id),
      async (shardId) => {
        const out = players.map(() => 0);
        for (const row of await this.rows(shardId, t, this.aheadSql(shardId, t, players))) out[Number(row.ord) - 1] = Number(row.ahead);
        return out;
      },
    );
    return players.map((_, i) => perShard.reduce((sum, list) => sum + (list[i] ?? 0), 0));
  }

  /**
   * One shard's count of the rows ahead of each (score, player), as (ord, ahead) rows: the counts
   * of every higher score range (and their pending deltas), minus the rows of those ranges in
   * buckets the shard does not serve (only during a bucket move are there any), plus the owned
   * rows ahead inside the player's own range. The ranges are computed here (scoreRange), not by
   * the SQL functions: those are not inlined where they nest, and ran as SQL function calls in
   * every subquery, about half of the statement's execution. The players are a materialized CTE,
   * so the planner estimates the subqueries alike with and without their values: the prepared
   * statement then keeps its generic plan instead of being planned again on every call (with the
   * values folded in, each custom plan looked cheaper than the generic one, and won).
   */
  private aheadSql(shardId: string, t: Target, players: readonly { score: bigint; playerId: PlayerId }[]): RawBuilder<{ ord: string; ahead: string }> {
    const owned = ownedRanges(this.shards, shardId);
    const foreign = complement(owned);
    const hideCount = t.hide ? sql` AND active` : sql``;
    const notServed =
      foreign.length === 0
        ? sql`0`
        : sql`(SELECT count(*) FROM leaderboard_scores x WHERE ${this.key(t)} AND ${bucketFilter('x.player_id', foreign)} AND x.score > q.hi)`;
    const ranges = players.map((p) => scoreRange(p.score));
    const text = (xs: readonly (bigint | PlayerId)[]) => xs.map(String);
    const [one] = players;
    const q =
      one && players.length === 1
        ? sql`SELECT ${String(one.score)}::bigint AS s, ${String(one.playerId)}::bigint AS pid, ${String(ranges[0])}::bigint AS r,
                     ${String(scoreRangeHi(scoreRange(one.score)))}::bigint AS hi, 1::bigint AS ord`
        : sql`SELECT * FROM unnest(${text(players.map((p) => p.score))}::bigint[], ${text(players.map((p) => p.playerId))}::bigint[],
                                   ${text(ranges)}::bigint[], ${text(ranges.map(scoreRangeHi))}::bigint[]) WITH ORDINALITY AS u(s, pid, r, hi, ord)`;
    return sql<{ ord: string; ahead: string }>`
      WITH q AS MATERIALIZED (${q})
      SELECT q.ord,
        coalesce((SELECT sum(n) FROM leaderboard_counts
                  WHERE board_id = ${t.boardId} AND period = ${t.period ?? ''} AND range > q.r${hideCount}), 0)
        + coalesce((SELECT sum(n) FROM leaderboard_count_deltas
                    WHERE board_id = ${t.boardId} AND period = ${t.period ?? ''} AND range > q.r${hideCount}), 0)
        - ${notServed}
        + (SELECT count(*) FROM leaderboard_scores x
           WHERE ${this.key(t)} AND ${bucketFilter('x.player_id', owned)}
             AND x.score >= q.s AND x.score <= q.hi AND (x.score > q.s OR x.player_id < q.pid)) AS ahead
      FROM q`;
  }

  private rankResult(pid: PlayerId, t: Target, score: bigint, rank: number, region: string | null): PlayerRank {
    const out: PlayerRank = { playerId: pid, gameId: t.gameId, score, rank, region };
    if (t.board) {
      out.boardId = t.boardId;
      out.period = t.period ?? '';
    }
    return out;
  }

  private playerScope(pid: PlayerId, regionOption: string | undefined): { region: string | null; scope: readonly ShardSpec[] } {
    const home = this.shards.router.shardFor(pid);
    const region = regionOption === undefined ? null : validateRegionName(regionOption);
    const scope = this.scope(region ?? undefined);
    if (region !== null && home.region !== region) {
      throw new ValidationError('region', `player ${pid} is in region ${showValue(home.region)}, not ${showValue(region)}`);
    }
    return { region, scope };
  }

  private scope(region: string | undefined): readonly ShardSpec[] {
    if (region === undefined) return this.shards.shards;
    return this.shards.router.region(validateRegionName(region)).shards;
  }
}

const statementNames = new Map<string, string>();

/** The name of the prepared statement of `text`: a hash, so a name never stands for two texts. */
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `shardline_lb_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    if (statementNames.size >= 1000) statementNames.clear(); // bucket moves make new texts; keep the cache bounded
    statementNames.set(text, name);
  }
  return name;
}

/** Bits of a non-negative bigint (0 for 0), as shardline_bit_length. */
function bitLength(v: bigint): bigint {
  return v === 0n ? 0n : BigInt(v.toString(2).length);
}

/**
 * The count range of a score, exactly as the SQL function shardline_score_range (migration 0012)
 * that the counts are kept by: the score itself below 128 in magnitude, else its top 7 bits.
 * @internal exported for the test that checks it against the SQL function.
 */
export function scoreRange(s: bigint): bigint {
  if (s > -128n && s < 128n) return s;
  const a = s < 0n ? -s : s;
  const shift = bitLength(a) - 7n;
  return (s < 0n ? -1n : 1n) * ((a >> shift) << shift);
}

/** The highest score of a count range, exactly as shardline_score_range_hi. @internal */
export function scoreRangeHi(r: bigint): bigint {
  return r < 128n ? r : r + (1n << (bitLength(r) - 7n)) - 1n;
}

/** A row limit written into a statement's text (see shardTop): only ever one that validateLimit passed. */
function limitText(n: number) {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`row limit ${n} is not a whole number`);
  // sql-text: a non-negative integer, checked on the line above, so only digits reach the text
  return sql.lit(n);
}
