export { ShardSet } from './shard-set.js';
export type { ShardSetOptions } from './shard-set.js';
export type { ConnectionOptions } from './connection.js';
// Pool configuration (it holds the resolved URL), identity stamps and pg error mapping are
// internals: tests import them from their own modules.
export { isConnectionError, isTransientDbError } from './pg-errors.js';
export type { Outcome, PlayerStatsTable, PlayerStatus, PlayersTable, SettlementLedgerTable, ShardDatabase } from './schema.js';
