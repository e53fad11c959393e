import pg from 'pg';
import { inject } from 'vitest';
import { ShardMigrator } from '../../src/migrate/index.js';
import { validateShardMap, type ShardMap } from '../../src/shardmap/index.js';
import { RUN_PREFIX, uniqueName, urlFor } from '../support/env.js';
import { cloneTemplate, dropDatabases, withAdmin } from '../support/shards.js';

/** The shard ids of the two-shard map, by index (0: the source, 1: the empty target). */
export const SHARD_IDS = ['sz-1', 'sz-2'] as const;

/**
 * The two-shard map the mover's and the forwarding tests run on: one region, `sz-1` owning every
 * bucket, `sz-2` added empty (`"buckets": []`), at the connection URLs given.
 */
export function twoShardMap(urls: readonly string[], file: string): { map: ShardMap; mapJson: Record<string, unknown> } {
  const mapJson = {
    version: 1,
    buckets: 4096,
    regions: ['shenzhen'],
    shards: [
      { id: SHARD_IDS[0], region: 'shenzhen', connection: urls[0] as string, buckets: ['0-4095'] },
      { id: SHARD_IDS[1], region: 'shenzhen', connection: urls[1] as string, buckets: [] },
    ],
  };
  return { map: validateShardMap(mapJson, { file }), mapJson };
}

export interface TwoShards {
  map: ShardMap;
  mapJson: Record<string, unknown>;
  databases: string[];
  /** Connection URL of each shard (owner role). */
  urls: string[];
  /** One statement as the owner role on shard 0 (sz-1) or 1 (sz-2). */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(db: number, sql: string, params?: unknown[]): Promise<T[]>;
  /** Drops the databases. */
  cleanup(): Promise<void>;
}

/**
 * The two-shard map on the shared server: two databases cloned from the run's template (named
 * after `prefix`) and migrated, so both have their ownership record.
 */
export async function createTwoShards(prefix: string, file: string): Promise<TwoShards> {
  const template = inject('templateDb');
  const base = uniqueName(RUN_PREFIX + prefix);
  const databases = [`${base}_0`, `${base}_1`];
  await withAdmin(async (admin) => {
    for (const db of databases) await cloneTemplate(admin, db, template);
  });
  const urls = databases.map((d) => urlFor(d));
  const { map, mapJson } = twoShardMap(urls, file);
  await Promise.all(map.shards.map((s) => new ShardMigrator(s).latest()));
  return {
    map,
    mapJson,
    databases,
    urls,
    query: <T extends pg.QueryResultRow>(i: number, sql: string, params: unknown[] = []) => queryOnce<T>(urls[i] as string, sql, params),
    cleanup: () => dropDatabases(databases),
  };
}

/** One statement on its own connection. */
export async function queryOnce<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}
