export { ShardMigrator, assertSchemaCurrent } from './shard-migrator.js';
export type { MigrateProgress, ShardMigratorOptions, ShardSchemaStatus } from './shard-migrator.js';
export { migrateShards, schemaStatus } from './run.js';
export type { MigrateAction, MigrateShardsOptions, SchemaStatusReport, ShardMigrateResult } from './run.js';
// The migration source and directory are internals (the migrator finds them itself).
export { expectedVersion } from './migration-source.js';
