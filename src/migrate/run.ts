import { refuseSharedDatabases } from '../db/shard-set.js';
import { targetOf } from '../db/connection.js';
import { sharedDatabaseProblems } from '../db/identity.js';
import type { ShardSpec } from '../shardmap/index.js';
import { expectedVersion } from './migration-source.js';
import { ShardMigrator, type ShardMigratorOptions, type ShardSchemaStatus } from './shard-migrator.js';

export type MigrateAction = 'latest' | 'rollback';

export interface ShardMigrateResult {
  shardId: string;
  region: string;
  target: string;
  ok: boolean;
  /** Migrations applied (latest) or undone (rollback) by this run. */
  changed: string[];
  /** Schema version after the run, as read back from the shard. */
  version: string | null;
  createdDatabase: boolean;
  error?: string;
  errorCode?: string;
}

export interface MigrateShardsOptions extends ShardMigratorOptions {
  /** Shards migrated at once (default 4). */
  concurrency?: number;
  /** Create missing databases first (local development). */
  createDatabases?: boolean;
  /** A shard's turn has come (it was waiting for a slot of `concurrency`). */
  onShardStart?: (shardId: string) => void;
  /** A shard has finished, successfully or not, while others may still run. */
  onShardDone?: (result: ShardMigrateResult) => void;
}

/**
 * Runs one action on many shards, up to `concurrency` at a time. A failing shard never stops the
 * others: each result says what happened there, and a rerun continues from where each shard stands.
 */
export async function migrateShards(
  shards: readonly ShardSpec[],
  action: MigrateAction,
  options: MigrateShardsOptions = {},
): Promise<ShardMigrateResult[]> {
  refuseSharedDatabases({ shards });
  return mapLimit(shards, options.concurrency ?? 4, async (shard) => {
    options.onShardStart?.(shard.id);
    const result = await migrateOne(shard, action, options);
    options.onShardDone?.(result);
    return result;
  });
}

async function migrateOne(shard: ShardSpec, action: MigrateAction, options: MigrateShardsOptions): Promise<ShardMigrateResult> {
  const m = new ShardMigrator(shard, options);
  const base = { shardId: shard.id, region: shard.region, target: targetOf(shard) };
  let createdDatabase = false;
  try {
    if (options.createDatabases) createdDatabase = await m.createDatabase();
    const changed = action === 'latest' ? await m.latest() : await m.rollback();
    const st = await m.status();
    return { ...base, ok: true, changed, version: st.version, createdDatabase };
  } catch (err) {
    const st = await m.status();
    const e = err as Error & { code?: string };
    return { ...base, ok: false, changed: [], version: st.version, createdDatabase, error: e.message, ...(e.code ? { errorCode: e.code } : {}) };
  }
}

export interface SchemaStatusReport {
  expected: string | null;
  shards: ShardSchemaStatus[];
  /** Shards not at the same version as the others, or not at the version the code expects. */
  drift: boolean;
  unreachable: string[];
  /**
   * Shards that may not serve as themselves: a missing or foreign stamp, or a database the map
   * also gives another shard (each status says which, in `identityProblem`).
   */
  identityProblems: string[];
}

export async function schemaStatus(shards: readonly ShardSpec[], options: MigrateShardsOptions = {}): Promise<SchemaStatusReport> {
  const expected = expectedVersion(options.migrationsDir);
  // Reported, not thrown as migrateShards does: a status command must show every shard's fault.
  const shared = sharedDatabaseProblems(shards);
  const statuses = (await mapLimit(shards, options.concurrency ?? 8, (s) => new ShardMigrator(s, options).status())).map((s) => {
    const problems = [shared.get(s.shardId), s.identityProblem].filter((p): p is string => p !== undefined);
    return problems.length ? { ...s, identityProblem: problems.join('; ') } : s;
  });
  const reachable = statuses.filter((s) => s.reachable);
  const versions = new Set(reachable.map((s) => s.version));
  return {
    expected,
    shards: statuses,
    drift: versions.size > 1 || reachable.some((s) => s.version !== expected),
    unreachable: statuses.filter((s) => !s.reachable).map((s) => s.shardId),
    identityProblems: statuses.filter((s) => s.identityProblem !== undefined).map((s) => s.shardId),
  };
}

export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  });
  await Promise.all(workers);
  return out;
}
