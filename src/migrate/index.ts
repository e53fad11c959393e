export { ShardMigrator, assertSchemaCurrent } from './shard-migrator.js';
export type { MigrateProgress, ShardMigratorOptions, ShardSchemaStatus } from './shard-migrator.js';
export { mapLimit, migrateShards, schemaStatus } from './run.js';
export type { MigrateAction, MigrateShardsOptions, SchemaStatusReport, ShardMigrateResult } from './run.js';
export { EsmMigrationSource, MIGRATIONS_DIR, expectedVersion, migrationNames } from './migration-source.js';
