export { Accounts, DEFAULT_MAX_BATCH_SIZE } from './accounts.js';
export type {
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
export { GAME_ID_MAX_LENGTH, NICKNAME_MAX_LENGTH, PLAYER_STATUSES, normalizeNickname } from './validation.js';
