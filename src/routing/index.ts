export { Router } from './router.js';
export { PlayerIdGenerator } from './id-generator.js';
export type { PlayerIdGeneratorOptions } from './id-generator.js';
export {
  ID_EPOCH_MS,
  MAX_PLAYER_ID,
  SEQ_BITS,
  TIME_BITS,
  bucketOf,
  decodePlayerId,
  encodePlayerId,
  formatPlayerId,
  isPlayerId,
  parsePlayerId,
} from './player-id.js';
export type { PlayerId, PlayerIdParts } from './player-id.js';
