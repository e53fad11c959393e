import type { ReadOptions } from '../db/index.js';
import type { PlayerId } from '../routing/index.js';

/** What every leaderboard read accepts besides its own options. */
export interface BoardReadOptions extends ReadOptions {
  /**
   * Which period of a defined board: its label (`'2026-12-01'`, `'2026-W48'`, `'2026-12'`, a
   * season id, `'all-time'`) or, on a calendar board, a Date (the period holding that instant, UTC).
   * Default: the current period (a season board: its open season, else the last one opened). The
   * plain game id has one period, all-time.
   */
  period?: string | Date;
  /** Leave out players whose status is not 'active' (default: the Leaderboards option, default true). */
  hideInactive?: boolean;
}

export interface TopScoresOptions extends BoardReadOptions {
  /** Only players of this region (only that region's shards are asked). Default: every region. */
  region?: string;
  /** How many entries, 1..1000 (default 10). */
  limit?: number;
}

export interface LeaderboardEntry {
  /** 1-based position under the leaderboard order: score DESC, then player id ASC. */
  rank: number;
  playerId: PlayerId;
  nickname: string;
  region: string;
  score: bigint;
}

export interface RankOfOptions extends BoardReadOptions {
  /** Rank among this region's players only; the player must belong to it. Default: global. */
  region?: string;
}

export interface PlayerRank {
  playerId: PlayerId;
  /** The game (for a defined board, the game it belongs to). */
  gameId: string;
  score: bigint;
  /** Same order as topScores: players ahead have a higher score, or the same score and a smaller id. */
  rank: number;
  /** Null for a global rank. */
  region: string | null;
  /** Defined boards only: the board id and the period read. */
  boardId?: string;
  period?: string;
}

export interface AroundOptions extends BoardReadOptions {
  /** Entries ranked just above the player, 0..100 (default 5). */
  above?: number;
  /** Entries ranked just below the player, 0..100 (default 5). */
  below?: number;
  /** Ranks among this region's players only; the player must belong to it. */
  region?: string;
}

export type TopAmongOptions = BoardReadOptions;

export interface AmongEntry extends LeaderboardEntry {
  /** 1-based position among the players asked for (those with a score). `rank` is the global rank. */
  place: number;
}

export interface LeaderboardsOptions {
  /** Largest `limit` topScores accepts (default 1000). */
  maxLimit?: number;
  /** Default of every read's `hideInactive` (default true): suspended and deleted players are not on boards. */
  hideInactive?: boolean;
}
