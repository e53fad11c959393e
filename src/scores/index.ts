export { Leaderboards, compareEntries } from './leaderboards.js';
export { kWayMerge } from './k-way-merge.js';
export type { LeaderboardEntry, LeaderboardsOptions, PlayerRank, RankOfOptions, TopScoresOptions } from './types.js';
