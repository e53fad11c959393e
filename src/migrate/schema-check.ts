import { targetOf } from '../db/connection.js';
import type { SelfClosureFault } from '../errors/index.js';
import type { ShardSpec } from '../shardmap/index.js';
import { mapLimit } from './run.js';
import { ShardMigrator, type ShardMigratorOptions } from './shard-migrator.js';

export interface ShardSchemaCheck {
  shardId: string;
  region: string;
  target: string;
  reachable: boolean;
  /** The self-closure faults of the app's tables on this shard as they stand (docs/app-tables.md). */
  faults: SelfClosureFault[];
  error?: string;
}

export interface SchemaCheckReport {
  shards: ShardSchemaCheck[];
  /** Shards with at least one fault. */
  faulty: string[];
  unreachable: string[];
}

/**
 * The self-closure rules that app migrations are held to, run over what every shard holds now:
 * for tables altered by hand, or made before the app's migrations went through shardline.
 * Read-only; a shard that cannot be reached is reported, never skipped silently.
 */
export async function schemaCheck(shards: readonly ShardSpec[], options: ShardMigratorOptions & { concurrency?: number } = {}): Promise<SchemaCheckReport> {
  const checks = await mapLimit(shards, options.concurrency ?? 8, async (shard): Promise<ShardSchemaCheck> => {
    const base = { shardId: shard.id, region: shard.region, target: targetOf(shard) };
    try {
      const faults = await new ShardMigrator(shard, options).selfClosureFaults();
      return { ...base, reachable: true, faults };
    } catch (err) {
      return { ...base, reachable: false, faults: [], error: err instanceof Error ? err.message : String(err) };
    }
  });
  return {
    shards: checks,
    faulty: checks.filter((c) => c.faults.length > 0).map((c) => c.shardId),
    unreachable: checks.filter((c) => !c.reachable).map((c) => c.shardId),
  };
}
