import { PlayerNotFoundError, ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import type { AnyShardSet, ShardSet } from '../db/index.js';
import { asPlainShardSet } from '../db/shard-set.js';
import { parsePlayerId, type PlayerId } from '../routing/index.js';
import type { ShardSpec } from '../shardmap/index.js';
import { onShard } from '../accounts/shard-calls.js';
import { settleAll } from '../db/scatter.js';
import { validateGameId, validateLimit, validateRegionName } from '../accounts/validation.js';
import { kWayMerge } from './k-way-merge.js';
import type { LeaderboardEntry, LeaderboardsOptions, PlayerRank, RankOfOptions, TopScoresOptions } from './types.js';

const DEFAULT_LIMIT = 10;
const DEFAULT_MAX_LIMIT = 1000;

type Scored = Omit<LeaderboardEntry, 'rank'>;

/**
 * The leaderboard order, everywhere: score descending, then player id ascending. The id breaks
 * ties so every shard, the merge and rankOf agree on one total order (and a tie goes to the
 * player who registered first, since ids grow with creation time). It is also the order of the
 * player_stats_leaderboard index, so each shard reads its top-K straight off the index.
 */
export function compareEntries(a: Pick<Scored, 'score' | 'playerId'>, b: Pick<Scored, 'score' | 'playerId'>): number {
  if (a.score !== b.score) return a.score > b.score ? -1 : 1;
  return a.playerId < b.playerId ? -1 : a.playerId > b.playerId ? 1 : 0;
}

/**
 * Exact leaderboards over sharded player_stats. Nothing is precomputed: each call scatters to the
 * shards in scope and gathers, so results are as fresh as the shards. Every shard must answer; a
 * down shard throws ShardUnavailableError rather than return a leaderboard that is silently wrong.
 */
export class Leaderboards {
  private readonly shards: ShardSet;
  private readonly maxLimit: number;

  /** `shards` may be typed with the app's tables (`ShardSet<AppDatabase>`): leaderboards read shardline's only. */
  constructor(shards: AnyShardSet, options: LeaderboardsOptions = {}) {
    this.shards = asPlainShardSet(shards);
    this.maxLimit = validateLimit(options.maxLimit, DEFAULT_MAX_LIMIT, 100_000, 'maxLimit');
  }

  /**
   * The exact top `limit` of a game, global or of one region, merged from per-shard top lists
   * (each an index range scan). A shard can hold at most `limit` of the winners, but usually holds
   * about limit/shards of them, so the first round asks each shard for a share with headroom; a
   * shard whose whole share ranks above the merged limit-th entry may hide more winners, and only
   * those shards are asked again, for a full `limit`. So: one round trip per shard in the common
   * case, two for the shards that hold a disproportionate part of the top.
   */
  async topScores(gameId: string, options: TopScoresOptions = {}): Promise<LeaderboardEntry[]> {
    const game = validateGameId(gameId);
    const limit = validateLimit(options.limit, DEFAULT_LIMIT, this.maxLimit);
    const shardIds = this.scope(options.region).map((s) => s.id);
    const share = shardIds.length === 1 ? limit : Math.min(limit, Math.ceil((limit * 1.5) / shardIds.length) + 4);

    const lists = await settleAll(shardIds, (shardId) => this.shardTop(shardId, game, share));
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
      const full = await settleAll(again, (shardId) => this.shardTop(shardId, game, limit));
      again.forEach((shardId, j) => {
        lists[shardIds.indexOf(shardId)] = full[j] as Scored[];
      });
      top = kWayMerge(lists, compareEntries, limit);
    }
    return top.map((e, i) => ({ rank: i + 1, ...e }));
  }

  /**
   * One shard's first `limit` rows in leaderboard order. The nickname comes from a correlated
   * subquery, not a join: the same rows (the foreign key guarantees the player row), but nothing
   * for the planner to search, and planning is most of this statement's cost at top-K sizes.
   */
  private shardTop(shardId: string, game: string, limit: number): Promise<Scored[]> {
    const region = this.shards.router.shard(shardId).region; // every player of a shard is of its region
    return onShard(this.shards, shardId, [], async (db) => {
      const rows = await db
        .selectFrom('player_stats as s')
        .select(['s.player_id', 's.score'])
        .select((eb) => eb.selectFrom('players as p').select('p.nickname').whereRef('p.player_id', '=', 's.player_id').as('nickname'))
        .where('s.game_id', '=', game)
        .orderBy('s.score', 'desc')
        .orderBy('s.player_id', 'asc')
        .limit(limit)
        .execute();
      return rows.map((r) => ({ playerId: r.player_id, score: r.score, nickname: r.nickname ?? '', region }));
    });
  }

  /**
   * A player's exact rank in a game: 1 + the players ahead of them on every shard in scope (one
   * COUNT per shard, in parallel). Null when the player has no score in that game. Shards are read
   * without a global snapshot, so a settlement landing mid-call may move the answer by
   * the players it touched.
   */
  async rankOf(id: PlayerId | string, gameId: string, options: RankOfOptions = {}): Promise<PlayerRank | null> {
    const pid = parsePlayerId(id);
    const game = validateGameId(gameId);
    const home = this.shards.router.shardFor(pid);
    const region = options.region === undefined ? null : validateRegionName(options.region);
    const scope = this.scope(region ?? undefined);
    if (region !== null && home.region !== region) {
      throw new ValidationError('region', `player ${pid} is in region ${showValue(home.region)}, not ${showValue(region)}`);
    }

    const own = await onShard(this.shards, home.id, [pid], (db) =>
      db
        .selectFrom('players as p')
        .leftJoin('player_stats as s', (join) => join.onRef('s.player_id', '=', 'p.player_id').on('s.game_id', '=', game))
        .select('s.score')
        .where('p.player_id', '=', pid)
        .executeTakeFirst(),
    );
    if (!own) throw new PlayerNotFoundError([String(pid)]);
    if (own.score === null) return null;
    const score = own.score;

    const ahead = await settleAll(
      scope.map((s) => s.id),
      (shardId) =>
        onShard(this.shards, shardId, [], async (db) => {
          const r = await db
            .selectFrom('player_stats')
            .select((eb) => eb.fn.countAll<bigint>().as('n'))
            .where('game_id', '=', game)
            .where((eb) => eb.or([eb('score', '>', score), eb.and([eb('score', '=', score), eb('player_id', '<', pid)])]))
            .executeTakeFirstOrThrow();
          return BigInt(r.n);
        }),
    );
    const rank = Number(ahead.reduce((a, b) => a + b, 0n)) + 1;
    return { playerId: pid, gameId: game, score, rank, region };
  }

  private scope(region: string | undefined): readonly ShardSpec[] {
    if (region === undefined) return this.shards.shards;
    return this.shards.router.region(validateRegionName(region)).shards;
  }
}
