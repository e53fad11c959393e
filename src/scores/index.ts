// kWayMerge stays internal until it is a documented helper (the app-tables issue).
export { Leaderboards } from './leaderboards.js';
export type { LeaderboardEntry, LeaderboardsOptions, PlayerRank, RankOfOptions, TopScoresOptions } from './types.js';
