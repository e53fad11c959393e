import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Accounts } from '../../src/accounts/index.js';
import { ShardSet, type ShardDatabase } from '../../src/db/index.js';
import { measureLag } from '../../src/db/replicas.js';
import { ShardIdentityError } from '../../src/errors/index.js';
import { ShardMigrator } from '../../src/migrate/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import { RoomService } from '../../src/rooms/index.js';
import { SettlementClient, SettlementWorker } from '../../src/settlement/index.js';
import { validateShardMap, type ReplicaSpec, type ShardMap } from '../../src/shardmap/index.js';
import { runCli } from '../support/cli.js';
import { errorOf } from '../support/errors.js';
import { writeMapFile } from '../support/maps.js';
import { createPlayers } from '../support/players.js';
import { sleep, waitFor } from '../support/wait.js';
import { deleteKeys, redisOptions, silent, testPrefix } from '../settlement/helpers.js';
import { standbyAvailable, startPrimaryWithStandby, type PrimaryWithStandby } from './standby.js';

const available = standbyAvailable();
if (!available) console.warn('test/replicas: skipped, no PostgreSQL binaries (initdb, pg_ctl, pg_basebackup) under /usr/lib/postgresql/15/bin');

/** Which server a Kysely instance reads: true for the standby. */
async function onStandby(db: Kysely<ShardDatabase>): Promise<boolean> {
  const r = await sql<{ standby: boolean }>`SELECT pg_is_in_recovery() AS standby`.execute(db);
  return r.rows[0]?.standby === true;
}

describe.skipIf(!available)('read replicas: a real streaming standby', () => {
  let servers: PrimaryWithStandby;
  let map: ShardMap;
  let shards: ShardSet;
  let accounts: Accounts;
  let players: PlayerId[];
  const databases = ['shard_a', 'shard_b'];

  const mapJson = (replicas: Record<string, string[]>) => ({
    version: 1,
    buckets: 4096,
    regions: ['r1'],
    shards: [
      {
        id: 'a',
        region: 'r1',
        connection: servers.primaryUrl('shard_a'),
        buckets: ['0-2047'],
        replicas: (replicas.a ?? []).map((connection) => ({ connection })),
      },
      {
        id: 'b',
        region: 'r1',
        connection: servers.primaryUrl('shard_b'),
        buckets: ['2048-4095'],
        replicas: (replicas.b ?? []).map((connection) => ({ connection })),
      },
    ],
  });

  beforeAll(async () => {
    servers = await startPrimaryWithStandby();
    for (const db of databases) await servers.sql('primary', `CREATE DATABASE ${db}`);
    const plain = validateShardMap(mapJson({}), { file: '<replicas test>' });
    await Promise.all(plain.shards.map((s) => new ShardMigrator(s).latest()));
    await servers.startStandby();
    map = validateShardMap(mapJson({ a: [servers.standbyUrl('shard_a')] }), { file: '<replicas test>' });
    shards = new ShardSet(map, { poolMax: 4, replicaLagCacheMs: 50 });
    accounts = new Accounts(shards);
    players = (await createPlayers(shards, 2)).get('a') ?? [];
  });

  afterAll(async () => {
    await shards?.close();
    await servers?.destroy();
  });

  it('maps the replicas of a shard: their own target, the shard they copy', () => {
    const [replica] = map.shards[0]?.replicas ?? [];
    expect(replica).toMatchObject({ id: 'a', region: 'r1', replica: 0, target: `127.0.0.1:${servers.standbyPort}/shard_a` });
    expect(map.shards[1]?.replicas).toBeUndefined();
  });

  it('reads a caught-up replica when asked, the primary by default; writes and transactions stay on the primary', async () => {
    const pid = players[0] as PlayerId;
    await waitFor(
      'the standby to have the players',
      async () => (await servers.sql('standby', `SELECT 1 FROM players WHERE player_id = ${pid}`, 'shard_a')).length === 1,
    );
    expect(await onStandby(await shards.readDb('a'))).toBe(false);
    // An idle primary: the last replayed transaction grows old, yet the replica is not behind.
    await sleep(700);
    await waitFor('a replica read', async () => onStandby(await shards.readDb('a', { readFrom: 'replica', maxLagMs: 500 })));
    expect(await onStandby(await shards.db('a'))).toBe(false);
    await shards.transaction(pid, async (trx) => expect(await onStandby(trx)).toBe(false));
    // A shard without replicas reads its primary.
    expect(await onStandby(await shards.readDb('b', { readFrom: 'replica' }))).toBe(false);
    const p = await accounts.getPlayer(pid, { readFrom: 'replica', maxLagMs: 1000 });
    expect(p.id).toBe(pid);
    // The ShardSet's defaults apply to every read that does not say.
    const byDefault = new ShardSet(map, { poolMax: 2, readFrom: 'replica', maxLagMs: 5000 });
    try {
      await waitFor('a default replica read', async () => onStandby(await byDefault.readDb('a')));
      expect(await onStandby(await byDefault.readDb('a', { readFrom: 'primary' }))).toBe(false);
      await byDefault.transaction(pid, async (trx) => expect(await onStandby(trx)).toBe(false));
    } finally {
      await byDefault.close();
    }
  });

  it('a server that is not in recovery (a primary, a promoted standby) is never read as a replica', async () => {
    const lag = await measureLag(shards.pool('b'), shards.pool('a'));
    expect(lag).toMatchObject({ reachable: true, standby: false, lagMs: null });
    expect(lag.problem).toMatch(/not a standby/);
  });

  it('a read after a settlement respects maxLagMs: with replay paused, it reads the primary', async () => {
    const prefix = testPrefix();
    const client = new SettlementClient({ shards, connection: redisOptions(), prefix, logger: silent });
    const worker = new SettlementWorker({ shards, connection: redisOptions(), prefix, logger: silent, reconcileIntervalMs: 60_000 });
    await worker.start();
    try {
      const [p1, p2] = players as [PlayerId, PlayerId];
      await servers.sql('standby', 'SELECT pg_wal_replay_pause()');
      await waitFor('replay paused', async () => (await servers.sql<{ paused: boolean }>('standby', 'SELECT pg_is_wal_replay_paused() AS paused'))[0]?.paused);
      // Longer than maxLagMs since the standby's last replayed transaction: it is now further behind than that.
      await sleep(400);
      const matchId = `repl-${prefix}`;
      await client.submitSettlement({
        matchId,
        gameId: 'g',
        endedAt: new Date(),
        results: [
          { playerId: p1, scoreDelta: 7, outcome: 'win' },
          { playerId: p2, scoreDelta: -7, outcome: 'loss' },
        ],
      });
      expect((await client.waitFor(matchId, { timeoutMs: 30_000 })).state).toBe('applied');
      // The standby lacks the result, the primary has it: the read must come from the primary.
      expect(await servers.sql('standby', `SELECT 1 FROM settlement_ledger WHERE match_id = '${matchId}'`, 'shard_a')).toHaveLength(0);
      const stats = await accounts.getStats(p1, 'g', { readFrom: 'replica', maxLagMs: 200 });
      expect(stats.score).toBe(7n);
      const history = await accounts.getMatchHistory(p1, { readFrom: 'replica', maxLagMs: 200 });
      expect(history.items.map((i) => i.matchId)).toEqual([matchId]);
      expect(await onStandby(await shards.readDb('a', { readFrom: 'replica', maxLagMs: 200 }))).toBe(false);
      // A caller that accepts more lag may read the paused replica, and sees the older state.
      const lag = await measureLag(shards.replicas.pool(map.shards[0]?.replicas?.[0] as ReplicaSpec), shards.pool('a'));
      expect(lag.paused).toBe(true);
      expect(lag.bytesBehind).toBeGreaterThan(0);
      expect(await onStandby(await shards.readDb('a', { readFrom: 'replica', maxLagMs: 3_600_000 }))).toBe(true);
      const stale = await accounts.getStats(p1, 'g', { readFrom: 'replica', maxLagMs: 3_600_000 });
      expect(stale.score).toBe(0n);
      // The room view's directory reads follow the same rule.
      const rooms = new RoomService({ connection: redisOptions(), router: shards.router, directory: accounts, prefix });
      try {
        await rooms.defineRooms('r1', [{ roomId: `hall-${prefix}` }]);
        await rooms.enter(`hall-${prefix}`, p1);
        const fresh = await rooms.roomView(`hall-${prefix}`, { gameId: 'g', readFrom: 'replica', maxLagMs: 200 });
        expect(fresh.members.map((m) => m.score)).toEqual([7n]);
        const old = await rooms.roomView(`hall-${prefix}`, { gameId: 'g', readFrom: 'replica', maxLagMs: 3_600_000 });
        expect(old.members.map((m) => m.score)).toEqual([0n]);
      } finally {
        await rooms.close();
      }

      await servers.sql('standby', 'SELECT pg_wal_replay_resume()');
      await waitFor('the replica to serve the settled result', async () => {
        const s = await accounts.getStats(p1, 'g', { readFrom: 'replica', maxLagMs: 200 });
        return s.score === 7n && (await onStandby(await shards.readDb('a', { readFrom: 'replica', maxLagMs: 200 })));
      });
      const scattered = await shards.scatter((db) => onStandby(db), { readFrom: 'replica', maxLagMs: 1000 });
      expect(scattered.results).toEqual([
        { shardId: 'a', value: true },
        { shardId: 'b', value: false },
      ]);
    } finally {
      await servers.sql('standby', 'SELECT pg_wal_replay_resume()').catch(() => undefined);
      await worker.stop(5000);
      await client.close();
      await deleteKeys(prefix);
      await deleteKeys(`{${prefix}`); // the rooms' keys: {<prefix>:zone:<zone>}:...
    }
  });

  it('a stopped replica falls back to the primary with no error, and is read again once it is back', async () => {
    const pid = players[0] as PlayerId;
    await servers.stopStandby();
    try {
      for (let i = 0; i < 5; i++) {
        const p = await accounts.getPlayer(pid, { readFrom: 'replica', maxLagMs: 1000 });
        expect(p.id).toBe(pid);
        expect(await onStandby(await shards.readDb('a', { readFrom: 'replica' }))).toBe(false);
        await sleep(60);
      }
      const status = await shards.replicas.status(map.shards[0] as (typeof map.shards)[0]);
      expect(status[0]).toMatchObject({ replica: 0, reachable: false });
    } finally {
      await servers.restartStandby();
    }
    await waitFor('the replica to be read again', async () => onStandby(await shards.readDb('a', { readFrom: 'replica', maxLagMs: 1000 })), 30_000);
  });

  it("refuses a replica that is another shard's", async () => {
    const wrong = validateShardMap(mapJson({ b: [servers.standbyUrl('shard_a')] }), { file: '<wrong replica>' });
    const other = new ShardSet(wrong, { poolMax: 2 });
    try {
      const err = await errorOf(other.readDb('b', { readFrom: 'replica' }));
      expect(err).toBeInstanceOf(ShardIdentityError);
      expect((err as ShardIdentityError).found).toBe('a');
      expect(String((err as Error).message)).toContain('replica 0 of shard "b"');
      // The primary is still the primary: reads that do not ask for a replica work.
      expect(await onStandby(await other.readDb('b'))).toBe(false);
      const [status] = await other.replicas.status(wrong.shards[1] as (typeof wrong.shards)[0]);
      expect(status?.problem).toContain('the database is shard "a"');
    } finally {
      await other.close();
    }
  });

  it('shards check shows each replica: reachable, its identity, its lag; a wrong or down replica exits 1', async () => {
    const good = await runCli(['shards', 'check', '--map', writeMapFile(mapJson({ a: [servers.standbyUrl('shard_a')] }))]);
    expect(good.stderr).toBe('');
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(new RegExp(`a\\s+0\\s+127\\.0\\.0\\.1:${servers.standbyPort}/shard_a\\s+yes\\s+ok\\s+\\d+ ms`));
    const wrong = await runCli(['shards', 'check', '--map', writeMapFile(mapJson({ b: [servers.standbyUrl('shard_a')] }))]);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toContain('WRONG: database is "a"');
    expect(wrong.stderr).toContain('b replica 0: the database is shard "a"');
  });

  it('refuses a map that points a replica at a shard primary', () => {
    const json = mapJson({ a: [servers.primaryUrl('shard_b')] });
    expect(() => validateShardMap(json, { file: '<bad map>' })).toThrow(/replicas\[0\]\.connection: points at .*shard_b, the database of shard "b"/);
  });
});
