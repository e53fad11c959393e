import pg from 'pg';
import { inject } from 'vitest';
import { ShardSet, type ShardSetOptions } from '../../src/db/index.js';
import { ShardMigrator } from '../../src/migrate/index.js';
import { validateShardMap, type ShardMap } from '../../src/shardmap/index.js';
import { PG_ADMIN_URL, RUN_PREFIX, uniqueName, urlFor } from './env.js';

export type Layout = 'one-shard' | 'several-shards';

/** Behavioural suites run over both layouts: the logic must not care how many shards there are. */
export const LAYOUTS: readonly Layout[] = ['one-shard', 'several-shards'];

export interface TestShards {
  map: ShardMap;
  shardSet: ShardSet;
  /** Raw map JSON (with the generated database URLs), e.g. to write to a file for the CLI. */
  mapJson: Record<string, unknown>;
  databases: string[];
  /** Closes the ShardSet and drops every database created. */
  cleanup(): Promise<void>;
}

function layoutJson(layout: Layout, dbs: (i: number) => string): Record<string, unknown> {
  if (layout === 'one-shard') {
    return {
      version: 1,
      buckets: 4096,
      regions: ['shenzhen'],
      shards: [{ id: 'sz-1', region: 'shenzhen', connection: urlFor(dbs(0)), buckets: ['0-4095'] }],
    };
  }
  return {
    version: 1,
    buckets: 4096,
    regions: ['shenzhen', 'sichuan', 'north-america'],
    shards: [
      { id: 'sz-1', region: 'shenzhen', connection: urlFor(dbs(0)), buckets: ['0-1023'] },
      { id: 'sz-2', region: 'shenzhen', connection: urlFor(dbs(1)), buckets: ['1024-2047'] },
      { id: 'sc-1', region: 'sichuan', connection: urlFor(dbs(2)), buckets: ['2048-3071'] },
      { id: 'na-1', region: 'north-america', connection: urlFor(dbs(3)), buckets: ['3072-4095'] },
    ],
  };
}

/** Clones the run's template database into fresh shard databases and stamps their identities. */
export async function createTestShards(layout: Layout = 'several-shards', options: ShardSetOptions = {}): Promise<TestShards> {
  const template = inject('templateDb');
  const count = layout === 'one-shard' ? 1 : 4;
  const base = uniqueName(RUN_PREFIX + 'shard');
  const databases = Array.from({ length: count }, (_, i) => `${base}_${i}`);
  await withAdmin(async (admin) => {
    for (const db of databases) await cloneTemplate(admin, db, template);
  });
  const mapJson = layoutJson(layout, (i) => databases[i]!);
  const map = validateShardMap(mapJson, { file: `<test ${layout}>` });
  await Promise.all(map.shards.map((s) => new ShardMigrator(s).latest()));
  const shardSet = new ShardSet(map, { poolMax: 5, ...options });
  return {
    map,
    shardSet,
    mapJson,
    databases,
    async cleanup() {
      await shardSet.close();
      await dropDatabases(databases);
    },
  };
}

/** An empty database (no schema) for tests of the migrator itself. */
export async function createEmptyDatabase(): Promise<string> {
  const name = uniqueName(RUN_PREFIX + 'empty');
  await withAdmin((admin) => admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`));
  return name;
}

export async function dropDatabases(names: readonly string[]): Promise<void> {
  await withAdmin(async (admin) => {
    for (const db of names) await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(db)} WITH (FORCE)`);
  });
}

export async function withAdmin<T>(fn: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}

/** A new database cloned from the run's template, waiting out another file's clone of it. */
export async function cloneTemplate(admin: pg.Client, db: string, template: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(db)} TEMPLATE ${pg.escapeIdentifier(template)}`);
      return;
    } catch (err) {
      // 55006: another file is cloning the template at this instant; wait and try again.
      if ((err as { code?: string }).code !== '55006' || attempt > 50) throw err;
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
    }
  }
}
