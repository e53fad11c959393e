import { Queue } from 'bullmq';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, SettlementWorker, queueNameFor, type SettlementInput } from '../../src/settlement/index.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { killStarted, spawnCli, type Proc } from './support/processes.js';
import { writeMapFile } from '../support/maps.js';
import { createPlayers } from '../support/players.js';
import { waitFor } from '../support/wait.js';
import { deleteKeysUnder, exactlyOnceProblems, faultPrefix, prng, randomMatch, sharedRedis, silent } from './support/settlement.js';
import { connectionUrlOf } from '../../src/shardmap/connection-url.js';

/**
 * The real `shardline worker` stopped with SIGTERM while it holds jobs. The jobs are kept in
 * flight by a lock on every shard's ledger (SHARE: reads go on, the worker's inserts wait), so
 * what is in flight at the signal is known exactly.
 */
describe('the worker CLI stopped with SIGTERM', () => {
  let t: TestShards;
  let players: PlayerId[];
  let mapFile: string;
  const prefixes: string[] = [];
  const lockers: pg.Client[] = [];

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    players = [...(await createPlayers(t.shardSet, 8)).values()].flat();
    mapFile = writeMapFile(t.mapJson);
  });
  afterEach(async () => {
    await releaseLedgers();
  });
  afterAll(async () => {
    await killStarted();
    for (const p of prefixes) await deleteKeysUnder(sharedRedis(), p);
    await t?.cleanup();
  });

  async function lockLedgers(): Promise<void> {
    for (const s of t.map.shards) {
      const c = new pg.Client({ connectionString: connectionUrlOf(s) });
      c.on('error', () => undefined);
      await c.connect();
      await c.query('BEGIN');
      await c.query('LOCK TABLE settlement_ledger IN SHARE MODE');
      lockers.push(c);
    }
  }
  async function releaseLedgers(): Promise<void> {
    for (const c of lockers.splice(0)) {
      await c.query('COMMIT').catch(() => undefined);
      await c.end().catch(() => undefined);
    }
  }

  async function setup(n: number): Promise<{ prefix: string; client: SettlementClient; matches: SettlementInput[]; gameId: string; queues: Queue[] }> {
    const prefix = faultPrefix();
    prefixes.push(prefix);
    const gameId = uniqueName('term');
    const rand = prng(n);
    const client = new SettlementClient({ shards: t.shardSet, connection: sharedRedis(), prefix, logger: silent });
    const matches = Array.from({ length: n }, () => randomMatch(players, gameId, rand));
    for (const m of matches) await client.submitSettlement(m);
    const queues = t.map.shards.map((s) => new Queue(queueNameFor(s.id), { connection: sharedRedis(), prefix }));
    return { prefix, client, matches, gameId, queues };
  }

  const activeIds = async (queues: Queue[]) =>
    (await Promise.all(queues.map(async (q) => (await q.getJobs(['active'])).map((j) => `${q.name}/${j.id}`)))).flat().sort();
  const completedIds = async (queues: Queue[]) =>
    (await Promise.all(queues.map(async (q) => (await q.getJobs(['completed'])).map((j) => `${q.name}/${j.id}`)))).flat().sort();

  function startWorker(prefix: string, graceMs: number): Proc {
    return spawnCli(['worker', '--map', mapFile, '--prefix', prefix, '--concurrency', '4', '--batch-size', '2', '--grace-ms', String(graceMs)], { REDIS_URL });
  }

  async function finishWithFreshWorker(prefix: string, client: SettlementClient, gameId: string, matches: SettlementInput[], timeoutMs: number): Promise<void> {
    const w = new SettlementWorker({ shards: t.shardSet, connection: sharedRedis(), prefix, logger: silent, stalledIntervalMs: 500 });
    try {
      await w.start();
      await waitFor('the rest applied', async () => (await exactlyOnceProblems(t.shardSet, gameId, matches)).length === 0, timeoutMs, 250);
    } finally {
      await w.stop(5000);
      await client.close();
    }
    expect(await exactlyOnceProblems(t.shardSet, gameId, matches)).toEqual([]);
  }

  it('finishes the jobs in flight, takes no new ones, and exits 0', async () => {
    const { prefix, client, matches, gameId, queues } = await setup(40);
    try {
      await lockLedgers();
      const w = startWorker(prefix, 20_000);
      // Every queue holds all the jobs it can (--concurrency 4), so none is being fetched at the signal.
      const saturated = async () =>
        (
          await Promise.all(
            queues.map(async (q) => {
              const c = await q.getJobCounts('waiting', 'active');
              return (c.active ?? 0) > 0 && c.active === Math.min(4, (c.active ?? 0) + (c.waiting ?? 0));
            }),
          )
        ).every(Boolean);
      await waitFor('jobs in flight on every shard', saturated, 90_000, 100);
      const inFlight = await activeIds(queues);

      w.kill('SIGTERM');
      await waitFor('the worker saw the signal', async () => w.output().includes('stopping: no new jobs'), 30_000, 50);
      await releaseLedgers();
      const ended = await w.done;
      expect(ended, w.output().slice(-2000)).toEqual({ code: 0, signal: null });
      expect(w.output()).not.toContain('grace period over');

      // Exactly the jobs it held were finished; none was left active; everything else still waits.
      expect(await activeIds(queues)).toEqual([]);
      expect(await completedIds(queues)).toEqual(inFlight);
      const waiting = (await Promise.all(queues.map((q) => q.getWaitingCount()))).reduce((a, b) => a + b, 0);
      const parts = (await Promise.all(matches.map((m) => client.settlementStatus(m.matchId)))).flatMap((s) => s?.shards ?? []);
      expect(parts.filter((p) => p.state === 'applied')).toHaveLength(inFlight.length);
      expect(waiting).toBe(parts.length - inFlight.length);

      await finishWithFreshWorker(prefix, client, gameId, matches, 60_000);
    } finally {
      for (const q of queues) await q.close();
    }
  }, 180_000);

  it('with a job still stuck when the grace period ends: exits 0 anyway, and the part is applied once later', async () => {
    const { prefix, client, matches, gameId, queues } = await setup(6);
    try {
      await lockLedgers();
      const w = startWorker(prefix, 1500);
      await waitFor('jobs in flight', async () => (await activeIds(queues)).length > 0, 90_000, 100);
      const stuck = await activeIds(queues);
      w.kill('SIGTERM');
      // The ledgers stay locked: the jobs cannot finish within the grace period. The worker must
      // not wait for them: it has to be gone long before their statement timeout (30 s) would end
      // them. 1.5 s of grace plus a wide margin for a loaded machine.
      const ended = await Promise.race([w.done, new Promise<'still running'>((r) => setTimeout(() => r('still running'), 15_000))]);
      expect(ended, w.output().slice(-2000)).toEqual({ code: 0, signal: null });
      expect(w.output()).toContain('grace period over with jobs in flight');
      // Its transactions died with it: nothing of the stuck parts was applied.
      expect(await completedIds(queues)).toEqual([]);
      const applied = (await Promise.all(matches.map((m) => client.settlementStatus(m.matchId))))
        .flatMap((s) => s?.shards ?? [])
        .filter((p) => p.state === 'applied');
      expect(applied).toEqual([]);
      expect(stuck.length).toBeGreaterThan(0);
      await releaseLedgers();

      // Their locks (30 s, the CLI default) expire and the next worker runs them: exactly once.
      await finishWithFreshWorker(prefix, client, gameId, matches, 90_000);
    } finally {
      for (const q of queues) await q.close();
    }
  }, 180_000);
});
