export { Accounts, DEFAULT_IDENTITY_LEASE_MS, DEFAULT_MAX_BATCH_SIZE } from './accounts.js';
export { CASE_INSENSITIVE_PROVIDERS, IDENTITY_PROVIDER_PATTERN, IDENTITY_SUBJECT_MAX_LENGTH, foldCase } from './identity-key.js';
export type { Identity, IdentityProviderOptions } from './identity-key.js';
export type {
  AccountsOptions,
  CreatePlayerInput,
  GetPlayerOptions,
  GetPlayersOptions,
  GetPlayersResult,
  IdentityResolution,
  LinkedIdentity,
  ResolvePendingIdentitiesOptions,
  MatchHistoryItem,
  MatchHistoryOptions,
  MatchHistoryPage,
  Player,
  PlayerStats,
  ProfilePatch,
  UnavailableShard,
} from './types.js';
export { GAME_ID_MAX_LENGTH, NICKNAME_MAX_LENGTH, PLAYER_STATUSES, normalizeNickname } from './validation.js';
