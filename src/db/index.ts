export { ShardSet } from './shard-set.js';
export { bucketFilter } from './owned-filter.js';
export { combineRouting, parseOwnershipRecord, type LiveRouting, type OwnershipRecord, type RoutingOverride } from './live-routing.js';
export type { AnyShardSet, AppTables, NoAppTables, ScatterOptions, ShardSetOptions, ShardTables } from './shard-set.js';
export type { ScatterResult } from './scatter.js';
export type { ReadFrom, ReadOptions, ReplicaReadOptions } from './replicas.js';
export type { IsolationLevel, TransactionOptions } from './transaction.js';
export type { ConnectionOptions } from './connection.js';
// Pool configuration (it holds the resolved URL), identity stamps and pg error mapping are
// internals: tests import them from their own modules.
export { bucketRefusalOf, isBucketMoved, isBucketRefusal, isConnectionError, isTransientDbError, toBucketError } from './pg-errors.js';
export type { BucketRefusal } from './pg-errors.js';
export type { Outcome, PlayerStatsTable, PlayerStatus, PlayersTable, SettlementLedgerTable, ShardDatabase } from './schema.js';
