export { ShardMigrator, assertSchemaCurrent } from './shard-migrator.js';
export type { AppSchemaInfo, MigrateProgress, ShardMigratorOptions, ShardSchemaStatus } from './shard-migrator.js';
export { migrateShards, schemaStatus } from './run.js';
export type { MigrateAction, MigrateShardsOptions, SchemaStatusReport, ShardMigrateResult } from './run.js';
export { assertAppSchemaCurrent } from './app-schema-version.js';
export { schemaCheck } from './schema-check.js';
export type { SchemaCheckReport, ShardSchemaCheck } from './schema-check.js';
export { LOCAL_TABLE_COMMENT, SELF_CLOSURE_RULES } from './self-closure.js';
export type { SelfClosureRule } from './self-closure.js';
// The migration source and directory are internals (the migrator finds them itself).
export { expectedVersion } from './migration-source.js';
