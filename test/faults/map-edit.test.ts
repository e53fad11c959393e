import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Accounts,
  PlayerNotFoundError,
  ShardOwnershipError,
  ShardSet,
  migrateShards,
  validateShardMap,
  type PlayerId,
  type ShardMap,
} from '../../src/index.js';
import { readIdentity, type ShardIdentity } from '../../src/db/identity.js';
import { bucketOf } from '../../src/routing/player-id.js';
import { runCli, type CliResult } from '../support/cli.js';
import { RUN_PREFIX, REDIS_URL, uniqueName, urlFor } from '../support/env.js';
import { errorOf } from '../support/errors.js';
import { writeMapFile } from '../support/maps.js';
import { createPlayers } from '../support/players.js';
import { createTestShards, dropDatabases, withAdmin, type TestShards } from '../support/shards.js';
import { faultPrefix, keysUnder, rowsOfMatch, sharedRedis } from './support/settlement.js';

type ShardJson = { id: string; region: string; connection: string; buckets: string[] };
type MapJson = { regions: string[]; shards: ShardJson[] };

async function databaseExists(name: string): Promise<boolean> {
  return withAdmin(async (admin) => ((await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount ?? 0) > 0);
}

async function stampOf(t: TestShards, shardId: string): Promise<ShardIdentity | null> {
  return readIdentity(t.shardSet.pool(shardId));
}

/** The fault that names sz-2, what it owns, what the map takes from it and whom it gives it to. */
const SZ2_FAULT =
  /shard "sz-2" owns buckets 1024-2047 \(its ownership record\), the map gives it 1024-1535: the map takes away 1536-2047 \(giving them to "sz-3"\)/;
const noStack = (r: CliResult) => expect(r.stdout + r.stderr, 'no stack trace').not.toMatch(/\n\s+at /);

/**
 * The issue's scenario: the map gives buckets 1536-2047 of sz-2 to a new shard sz-3. Every
 * entry point must refuse it before anything is created or written, naming the buckets, the
 * shard that owns them and what to do, rather than report sz-2's players there as missing.
 */
describe('a map edit that would hide players', () => {
  let t: TestShards;
  let onSz2: PlayerId[];
  let edited: MapJson;
  let editedFile: string;
  let editedMap: ShardMap;
  const sz3Db = uniqueName(RUN_PREFIX + 'sz3');
  const env = { REDIS_URL };

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    onSz2 = (await createPlayers(t.shardSet, 24)).get('sz-2') as PlayerId[];
    edited = structuredClone(t.mapJson) as unknown as MapJson;
    const sz2 = edited.shards.find((s) => s.id === 'sz-2') as ShardJson;
    sz2.buckets = ['1024-1535'];
    edited.shards.splice(2, 0, { id: 'sz-3', region: 'shenzhen', connection: urlFor(sz3Db), buckets: ['1536-2047'] });
    editedFile = writeMapFile(edited);
    editedMap = validateShardMap(edited);
  });
  afterAll(async () => {
    await t?.cleanup();
    await dropDatabases([sz3Db]);
  });

  it('has players of sz-2 on both sides of the edit (the ones it would hide)', () => {
    expect(onSz2.length).toBe(24);
    expect(onSz2.some((id) => bucketOf(id) >= 1536)).toBe(true);
    expect(onSz2.some((id) => bucketOf(id) < 1536)).toBe(true);
  });

  it('ShardSet refuses sz-2 before its first query: getPlayer and getPlayers, never "not found"', async () => {
    const shards = new ShardSet(editedMap, { poolMax: 2 });
    const accounts = new Accounts(shards);
    try {
      const low = onSz2.find((id) => bucketOf(id) < 1536) as PlayerId;
      const high = onSz2.find((id) => bucketOf(id) >= 1536) as PlayerId;
      const err = await errorOf(accounts.getPlayer(low));
      expect(err).toBeInstanceOf(ShardOwnershipError);
      const e = err as ShardOwnershipError;
      expect(e.code).toBe('SHARD_OWNERSHIP_MISMATCH');
      expect(e.shardId).toBe('sz-2');
      expect(e.faults).toEqual([{ shardId: 'sz-2', owned: '1024-2047', mapped: '1024-1535', gained: [], lost: [{ buckets: '1536-2047', givenTo: 'sz-3' }] }]);
      expect(e.message).toMatch(SZ2_FAULT);
      expect(e.message).toMatch(/restore the map so that each shard has exactly the buckets it owns \("sz-2": 1024-2047\), or move buckets/);
      // Routed to sz-3 by the edit: refused (sz-3 is not set up), not PlayerNotFoundError.
      expect(await errorOf(accounts.getPlayer(high))).not.toBeInstanceOf(PlayerNotFoundError);
      for (const partial of [false, true]) {
        expect(await errorOf(accounts.getPlayers(onSz2, { partial }))).toBeInstanceOf(ShardOwnershipError);
      }
      await expect(shards.verifyAll()).rejects.toBeInstanceOf(ShardOwnershipError);
    } finally {
      await shards.close();
    }
    // Nothing happened to sz-2: its stamp and its players are as they were.
    expect((await stampOf(t, 'sz-2'))?.buckets).toBe('1024-2047');
    expect((await new Accounts(t.shardSet).getPlayers(onSz2)).players.length).toBe(24);
  });

  it('migrate latest refuses the whole command: nothing created, no stamp changed (also with --shard)', async () => {
    const before = await stampOf(t, 'sz-2');
    for (const args of [[], ['--shard', 'sz-3'], ['--shard', 'sz-1']]) {
      const r = await runCli(['migrate', 'latest', '--map', editedFile, '--create-databases', ...args], { env });
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(r.stderr).toMatch(/error \[SHARD_OWNERSHIP_MISMATCH\]/);
      expect(r.stderr).toMatch(SZ2_FAULT);
      expect(r.stderr).toMatch(/restore the map/);
      noStack(r);
    }
    expect(await databaseExists(sz3Db)).toBe(false);
    expect(await stampOf(t, 'sz-2')).toEqual(before);
    const rollback = await runCli(['migrate', 'rollback', '--map', editedFile, '--shard', 'sc-1'], { env });
    expect(rollback.code).toBe(1);
    expect(rollback.stderr).toMatch(/error \[SHARD_OWNERSHIP_MISMATCH\]/);
  });

  it('ShardSet refuses the shards the edit left alone too, before its first query on any of them', async () => {
    const countOn = async (shardId: string) => Number((await t.shardSet.pool(shardId).query<{ n: string }>('SELECT count(*) AS n FROM players')).rows[0]?.n);
    const before = await countOn('sc-1');
    const shards = new ShardSet(editedMap, { poolMax: 2 });
    try {
      const err = await errorOf(new Accounts(shards).createPlayer({ region: 'sichuan', nickname: 'through-a-bad-map' }));
      expect(err).toBeInstanceOf(ShardOwnershipError);
      expect((err as ShardOwnershipError).shardId).toBe('sz-2');
    } finally {
      await shards.close();
    }
    expect(await countOn('sc-1')).toBe(before);
  });

  it('shards check and migrate status report the fault on sz-2 and exit 1', async () => {
    const check = await runCli(['shards', 'check', '--map', editedFile], { env });
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/sz-2\s+shenzhen\s+\S+\s+yes\s+BUCKETS DIFFER/);
    expect(check.stdout).toMatch(/sz-1\s+shenzhen\s+\S+\s+yes\s+ok/);
    expect(check.stderr).toMatch(new RegExp(`sz-2: identity: ${SZ2_FAULT.source}; restore the map \\(give it 1024-2047\\)`));
    expect(check.stderr).toMatch(/bucket ownership faults: sz-2;/);
    const status = await runCli(['migrate', 'status', '--map', editedFile], { env });
    expect(status.code).toBe(1);
    expect(status.stdout).toMatch(/sz-2\s+shenzhen\s+\S+\s+\d+\s+\(none\)\s+BUCKETS DIFFER/); // (none): the app version
    expect(status.stderr).toMatch(SZ2_FAULT);
    for (const r of [check, status]) noStack(r);
    expect(await databaseExists(sz3Db)).toBe(false);
  });

  it('worker, settle and settlements refuse it, with nothing in Redis or on any shard', async () => {
    const low = onSz2.find((id) => bucketOf(id) < 1536) as PlayerId;
    const high = onSz2.find((id) => bucketOf(id) >= 1536) as PlayerId;
    const prefix = faultPrefix();
    const match = (players: PlayerId[]) => ({
      matchId: uniqueName('mapedit'),
      gameId: 'chess',
      endedAt: '2025-03-01T12:00:00Z',
      results: players.map((id, i) => ({ playerId: id.toString(), scoreDelta: i + 1, outcome: 'win' })),
    });
    const matches = [match([low, onSz2.find((id) => id !== low && bucketOf(id) < 1536) as PlayerId]), match([low, high])];
    const files = matches.map((m, i) => {
      const file = path.join(path.dirname(editedFile), `match-${i}.json`);
      writeFileSync(file, JSON.stringify(m));
      return file;
    });
    const q = ['--map', editedFile, '--prefix', prefix];
    const runs: [string, Promise<CliResult>][] = [
      ['worker', runCli(['worker', ...q, '--grace-ms', '1000'], { env, timeoutMs: 60_000 })],
      ['settle', runCli(['settle', '--file', files[0]!, ...q], { env })],
      ['settle (player routed to sz-3)', runCli(['settle', '--file', files[1]!, ...q], { env })],
      ['settlements status', runCli(['settlements', 'status', matches[0]!.matchId, ...q], { env })],
      ['settlements failed', runCli(['settlements', 'failed', ...q], { env })],
      ['settlements retry', runCli(['settlements', 'retry', '--all', ...q], { env })],
      ['settlements reconcile', runCli(['settlements', 'reconcile', ...q], { env })],
    ];
    for (const [name, p] of runs) {
      const r = await p;
      expect({ name, code: r.code }, r.stdout + r.stderr).toEqual({ name, code: 1 });
      if (name !== 'settle (player routed to sz-3)') expect(r.stderr, name).toMatch(/SHARD_OWNERSHIP_MISMATCH/);
      expect(r.stdout + r.stderr, name).toMatch(SZ2_FAULT);
      noStack(r);
    }
    expect(await keysUnder(sharedRedis(), prefix)).toEqual([]);
    for (const m of matches) expect(await rowsOfMatch(t.shardSet, m.matchId)).toBe(0);
    expect(await databaseExists(sz3Db)).toBe(false);
  }, 120_000);
});

/** The other half of the rule: a shard may join the map owning nothing, ahead of any move. */
describe('a new shard with "buckets": []', () => {
  let t: TestShards;
  let withEmpty: MapJson;
  let file: string;
  const emptyDb = uniqueName(RUN_PREFIX + 'sz9');
  const env = { REDIS_URL };

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    withEmpty = structuredClone(t.mapJson) as unknown as MapJson;
    withEmpty.shards.push({ id: 'sz-9', region: 'shenzhen', connection: urlFor(emptyDb), buckets: [] });
    file = writeMapFile(withEmpty);
  });
  afterAll(async () => {
    await t?.cleanup();
    await dropDatabases([emptyDb]);
  });

  it('before it is set up, a ShardSet over the map still serves the others, and verifyAll lets it be', async () => {
    const shards = new ShardSet(validateShardMap(withEmpty), { poolMax: 2 });
    try {
      await shards.verifyAll();
      const made = await new Accounts(shards).createPlayer({ region: 'shenzhen', nickname: 'early' });
      expect(['sz-1', 'sz-2']).toContain(shards.router.shardFor(made.id).id);
    } finally {
      await shards.close();
    }
  });

  it('is migrated (stamped owning nothing), passes shards check, and serves through ShardSet', async () => {
    const up = await runCli(['migrate', 'latest', '--map', file, '--create-databases'], { env });
    expect(up.code, up.stdout + up.stderr).toBe(0);
    expect(up.stdout).toMatch(/sz-9\s+shenzhen\s+\d{4}_\w+\s+database created; applied 0001_/);
    expect(up.stdout).toMatch(/sz-2\s+shenzhen\s+\d{4}_\w+\s+up to date/);
    const check = await runCli(['shards', 'check', '--map', file], { env });
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toMatch(/sz-9\s+shenzhen\s+\S+\s+yes\s+ok/);
    const status = await runCli(['migrate', 'status', '--map', file], { env });
    expect(status.code, status.stdout + status.stderr).toBe(0);

    const shards = new ShardSet(validateShardMap(withEmpty), { poolMax: 2 });
    try {
      expect((await readIdentity(shards.pool('sz-9')))?.buckets).toBe('');
      await shards.verifyAll();
      const accounts = new Accounts(shards);
      const made = await Promise.all(Array.from({ length: 12 }, (_, i) => accounts.createPlayer({ region: 'shenzhen', nickname: `e${i}` })));
      expect(new Set(made.map((p) => shards.router.shardFor(p.id).id))).toEqual(new Set(['sz-1', 'sz-2']));
      const got = await accounts.getPlayers(made.map((p) => p.id));
      expect(got.players.length).toBe(12);
      expect(got.missing).toEqual([]);
    } finally {
      await shards.close();
    }
    // The stamps of the shards already there are untouched by the migrate that added sz-9.
    expect((await readIdentity(t.shardSet.pool('sz-2')))?.buckets).toBe('1024-2047');
  });

  it('is stamped while another shard is down; a new shard that would own buckets is not, nor its database created', async () => {
    const fresh = [uniqueName(RUN_PREFIX + 'new'), uniqueName(RUN_PREFIX + 'new')];
    try {
      const map = validateShardMap({
        version: 1,
        buckets: 4096,
        regions: ['shenzhen'],
        shards: [
          { id: 'n-1', region: 'shenzhen', connection: urlFor(fresh[0]!), buckets: ['0-2047'] },
          { id: 'n-down', region: 'shenzhen', connection: 'postgres://postgres@127.0.0.1:1/nothing', buckets: ['2048-4095'] },
          { id: 'n-empty', region: 'shenzhen', connection: urlFor(fresh[1]!), buckets: [] },
        ],
      });
      const results = await migrateShards(map.shards, 'latest', { createDatabases: true, connectionTimeoutMs: 1000 });
      const by = new Map(results.map((r) => [r.shardId, r]));
      expect(by.get('n-1')).toMatchObject({ ok: false, errorCode: 'SHARD_OWNERSHIP_UNVERIFIED', createdDatabase: false });
      expect(by.get('n-1')?.error).toMatch(/shard "n-1" was not set up as the owner of buckets 0-2047: the stamp of "n-down" \(.*\) could not be read/);
      expect(by.get('n-empty')).toMatchObject({ ok: true, createdDatabase: true });
      expect(by.get('n-down')).toMatchObject({ ok: false, errorCode: 'SHARD_UNAVAILABLE' });
      expect(await databaseExists(fresh[0]!)).toBe(false);
    } finally {
      await dropDatabases(fresh);
    }
  });
});
