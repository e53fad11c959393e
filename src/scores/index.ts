export { kWayMerge } from './k-way-merge.js';
export { Leaderboards } from './leaderboards.js';
export { BOARD_OPERATORS, BOARD_PERIODS, WEEKDAYS, calendarPeriodOf } from './periods.js';
export type { BoardOperator, BoardPeriod, Weekday } from './periods.js';
export type { BoardDefinition, BoardListing, DefineBoardInput, SeasonInfo } from './boards.js';
export type {
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
