export { kWayMerge } from './k-way-merge.js';
export { Leaderboards } from './leaderboards.js';
export type { LeaderboardEntry, LeaderboardsOptions, PlayerRank, RankOfOptions, TopScoresOptions } from './types.js';
