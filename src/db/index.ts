export { ShardSet, refuseSharedDatabases } from './shard-set.js';
export type { ShardSetOptions } from './shard-set.js';
export type { ConnectionOptions } from './connection.js';
export { databaseOf, poolConfig, targetOf } from './connection.js';
export { checkIdentity, readIdentity, stampIdentity } from './identity.js';
export type { ShardIdentity } from './identity.js';
export { isConnectionError, isTransientDbError, sqlState, toShardError } from './pg-errors.js';
export type {
  Outcome,
  PlayerStatsTable,
  PlayerStatus,
  PlayersTable,
  SettlementLedgerTable,
  ShardDatabase,
} from './schema.js';
