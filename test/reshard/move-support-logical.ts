import pg from 'pg';
import { ShardMigrator } from '../../src/migrate/index.js';
import { startEmbeddedPg, type EmbeddedPg } from '../support/embedded-pg.js';
import type { MoveShards } from './move-support.js';
import { queryOnce, twoShardMap } from './two-shards.js';

/**
 * Two private PostgreSQL servers with wal_level=logical (the shared one on 5432 has replica), one
 * shard each: `sz-1` owning every bucket, `sz-2` empty. Same shape as createMoveShards, so the
 * seeding helpers apply (the map of two-shards.ts); `servers` are stopped by destroy() in cleanup().
 */
export async function createLogicalShards(): Promise<MoveShards & { servers: EmbeddedPg[] }> {
  const config = {
    wal_level: 'logical',
    max_replication_slots: 10,
    max_wal_senders: 10,
    max_logical_replication_workers: 6,
    wal_retrieve_retry_interval: '200ms',
  };
  const servers = await Promise.all([startEmbeddedPg({ name: 'mv-src', config }), startEmbeddedPg({ name: 'mv-dst', config })]);
  for (const srv of servers) await srv.admin((c) => c.query(`CREATE DATABASE shard`));
  const urls = servers.map((srv) => srv.urlFor('shard'));
  const { map, mapJson } = twoShardMap(urls, '<logical move test>');
  for (const s of map.shards) await new ShardMigrator(s).latest();
  return {
    map,
    mapJson,
    databases: urls,
    urls,
    servers,
    admin: (i) => new pg.Client({ connectionString: urls[i] }),
    query: <T extends pg.QueryResultRow>(i: number, sql: string, params: unknown[] = []) => queryOnce<T>(urls[i] as string, sql, params),
    async cleanup() {
      await Promise.all(servers.map((srv) => srv.destroy()));
    },
  };
}
