import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ShardIdentityError,
  ShardMigrator,
  ShardSet,
  ShardUnavailableError,
  expectedVersion,
  migrateShards,
  schemaStatus,
  validateShardMap,
} from '../../src/index.js';
import { readIdentity } from '../../src/db/identity.js';
import { urlFor } from '../support/env.js';
import { createEmptyDatabase, dropDatabases } from '../support/shards.js';

const created: string[] = [];
afterAll(() => dropDatabases(created));

async function emptyDbs(n: number): Promise<string[]> {
  const names = await Promise.all(Array.from({ length: n }, () => createEmptyDatabase()));
  created.push(...names);
  return names;
}

function mapOf(shards: { id: string; url: string; region?: string }[]) {
  const per = 4096 / shards.length;
  return validateShardMap({
    version: 1,
    buckets: 4096,
    regions: [...new Set(shards.map((s) => s.region ?? 'shenzhen'))],
    shards: shards.map((s, i) => ({
      id: s.id,
      region: s.region ?? 'shenzhen',
      connection: s.url,
      buckets: [`${i * per}-${(i + 1) * per - 1}`],
    })),
  });
}

async function tableCount(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'`);
    return r.rows[0].n as number;
  } finally {
    await c.end();
  }
}

describe('migrations across shards', () => {
  it('migrates every shard, rolls one back, reports the drift, and continues on rerun', async () => {
    const [a, b] = await emptyDbs(2);
    const map = mapOf([
      { id: 'm-1', url: urlFor(a!) },
      { id: 'm-2', url: urlFor(b!) },
    ]);
    const first = await migrateShards(map.shards, 'latest');
    expect(first.map((r) => [r.shardId, r.ok, r.version])).toEqual([
      ['m-1', true, expectedVersion()],
      ['m-2', true, expectedVersion()],
    ]);
    expect((await schemaStatus(map.shards)).drift).toBe(false);

    const back = await migrateShards([map.shards[1]!], 'rollback');
    expect(back[0]?.changed).toEqual([expectedVersion()]);
    const drifted = await schemaStatus(map.shards);
    expect(drifted.drift).toBe(true);
    expect(drifted.shards.map((s) => s.version === expectedVersion())).toEqual([true, false]);

    const again = await migrateShards(map.shards, 'latest');
    expect(again.map((r) => r.changed.length > 0)).toEqual([false, true]);
    expect((await schemaStatus(map.shards)).drift).toBe(false);
  });

  it('refuses a map that points two shards at one database, before writing anything', async () => {
    const [a] = await emptyDbs(1);
    const map = mapOf([
      { id: 'x', url: urlFor(a!) },
      { id: 'y', url: urlFor(a!) },
    ]);
    expect(() => new ShardSet(map)).toThrow(ShardIdentityError);
    await expect(migrateShards(map.shards, 'latest')).rejects.toThrow(/points shards "x" and "y" at the same database/);
    expect(await tableCount(urlFor(a!))).toBe(0);
  });

  it("refuses a shard aimed at another shard's database, however the URL is spelled", async () => {
    const [a, b] = await emptyDbs(2);
    const good = mapOf([
      { id: 'g-1', url: urlFor(a!) },
      { id: 'g-2', url: urlFor(b!) },
    ]);
    await migrateShards(good.shards, 'latest');
    // g-2 now points at g-1's database through another host spelling: the URL check cannot see it.
    const alias = urlFor(a!).replace('127.0.0.1', 'localhost');
    const bad = mapOf([
      { id: 'g-1', url: urlFor(a!) },
      { id: 'g-2', url: alias },
    ]);
    const set = new ShardSet(bad);
    try {
      await expect(set.db('g-2')).rejects.toThrow(ShardIdentityError);
      await expect(set.db('g-2')).rejects.toThrow(/that database is shard "g-1"/);
    } finally {
      await set.close();
    }
    const results = await migrateShards([bad.shards[1]!], 'latest');
    expect(results[0]).toMatchObject({ ok: false, errorCode: 'SHARD_IDENTITY_MISMATCH' });
    const c = new pg.Client({ connectionString: urlFor(a!) });
    await c.connect();
    expect((await readIdentity(c))?.shardId).toBe('g-1');
    await c.end();
  });

  it('an unmigrated database is refused for queries with a hint to migrate', async () => {
    const [a] = await emptyDbs(1);
    const set = new ShardSet(mapOf([{ id: 'u-1', url: urlFor(a!) }]));
    try {
      await expect(set.db('u-1')).rejects.toThrow(/shardline migrate latest/);
    } finally {
      await set.close();
    }
  });

  it('reports an unreachable shard without hanging, and still migrates the others', async () => {
    const [a] = await emptyDbs(1);
    const map = mapOf([
      { id: 'ok-1', url: urlFor(a!) },
      { id: 'down-1', url: 'postgres://postgres@127.0.0.1:1/nothing' },
    ]);
    // Never stamped, ok-1 is not stamped as owner of its buckets while down-1, which may own them, cannot be read.
    const refused = await migrateShards(map.shards, 'latest', { connectionTimeoutMs: 1000 });
    expect(refused.find((r) => r.shardId === 'ok-1')).toMatchObject({ ok: false, errorCode: 'SHARD_OWNERSHIP_UNVERIFIED' });
    expect(await tableCount(urlFor(a!))).toBe(0);
    // Once set up (stamped), it migrates whatever the state of the others.
    await new ShardMigrator(map.shards[0]!).latest();
    const results = await migrateShards(map.shards, 'latest', { connectionTimeoutMs: 1000 });
    expect(results.find((r) => r.shardId === 'ok-1')).toMatchObject({ ok: true });
    expect(results.find((r) => r.shardId === 'down-1')).toMatchObject({ ok: false, errorCode: 'SHARD_UNAVAILABLE' });
    const status = await schemaStatus(map.shards, { connectionTimeoutMs: 1000 });
    expect(status.unreachable).toEqual(['down-1']);
    const m = new ShardMigrator(map.shards[1]!, { connectionTimeoutMs: 1000 });
    await expect(m.assertCurrent()).rejects.toBeInstanceOf(ShardUnavailableError);
  });
});
