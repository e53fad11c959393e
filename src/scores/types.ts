import type { PlayerId } from '../routing/index.js';

export interface TopScoresOptions {
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

export interface RankOfOptions {
  /** Rank among this region's players only; the player must belong to it. Default: global. */
  region?: string;
}

export interface PlayerRank {
  playerId: PlayerId;
  gameId: string;
  score: bigint;
  /** Same order as topScores: players ahead have a higher score, or the same score and a smaller id. */
  rank: number;
  /** Null for a global rank. */
  region: string | null;
}

export interface LeaderboardsOptions {
  /** Largest `limit` topScores accepts (default 1000). */
  maxLimit?: number;
}
