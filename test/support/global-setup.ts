import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { ShardMigrator } from '../../src/migrate/index.js';
import { validateShardMap } from '../../src/shardmap/index.js';
import { PG_ADMIN_URL, RUN_PREFIX, urlFor } from './env.js';

declare module 'vitest' {
  export interface ProvidedContext {
    templateDb: string;
  }
}

/**
 * Migrates one template database per test run; every test file clones shards from it
 * (CREATE DATABASE ... TEMPLATE) instead of re-running migrations.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const template = `${RUN_PREFIX}tpl`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(template)}`);
  const map = validateShardMap({
    version: 1,
    buckets: 4096,
    regions: ['template'],
    shards: [{ id: 'template', region: 'template', connection: urlFor(template), buckets: ['0-4095'] }],
  });
  await new ShardMigrator(map.shards[0]!).applyPending();
  project.provide('templateDb', template);

  return async () => {
    // Drop the template and anything a crashed test file of this run left behind; other runs' are not ours.
    const rows = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, [RUN_PREFIX]);
    for (const { datname } of rows.rows) {
      await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(datname)} WITH (FORCE)`).catch(() => undefined);
    }
    await admin.end();
  };
}
