import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, type SettlementInput } from '../../src/settlement/index.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import type { WorkerFixtureConfig } from './fixtures/worker.js';
import { killStarted, spawnWorker } from './support/processes.js';
import { writeMapFile } from '../support/maps.js';
import { createPlayers } from '../support/players.js';
import { waitFor } from '../support/wait.js';
import { deleteKeysUnder, exactlyOnceProblems, faultPrefix, prng, queueCounts, randomMatch, sharedRedis, silent } from './support/settlement.js';

describe('a settlement worker process killed with SIGKILL while applying', () => {
  let t: TestShards;
  let players: PlayerId[];
  let client: SettlementClient;
  const prefix = faultPrefix();

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    players = [...(await createPlayers(t.shardSet, 12)).values()].flat();
    client = new SettlementClient({ shards: t.shardSet, connection: sharedRedis(), prefix, logger: silent, jobs: { backoffMs: 100 } });
  });
  afterAll(async () => {
    await killStarted();
    await client?.close();
    await deleteKeysUnder(sharedRedis(), prefix);
    await t?.cleanup();
  });

  it('ends with every submitted match applied exactly once on every shard, by ledger and by stats', async () => {
    const gameId = uniqueName('kill');
    const rand = prng(0x5eed01);
    const matches: SettlementInput[] = Array.from({ length: 300 }, () => randomMatch(players, gameId, rand));
    const submit = async (ms: readonly SettlementInput[]) => {
      for (let i = 0; i < ms.length; i += 25) await Promise.all(ms.slice(i, i + 25).map((m) => client.submitSettlement(m)));
    };
    await submit(matches.slice(0, 180));

    const config: WorkerFixtureConfig = {
      mapFile: writeMapFile(t.mapJson),
      redisUrl: REDIS_URL,
      prefix,
      graceMs: 5000,
      logLevel: 'warn',
      worker: {
        concurrency: 8,
        batchSize: 4,
        lingerMs: 10,
        // A killed worker's jobs come back after the 2 s lock instead of the production 30 s.
        lockDurationMs: 2000,
        stalledIntervalMs: 500,
        reconcileIntervalMs: 1000,
        reconcileAfterMs: 5000,
      },
    };
    const shardIds = t.map.shards.map((s) => s.id);
    const kills: { appliedBefore: number; activeAfter: number }[] = [];
    for (let k = 0; k < 3; k++) {
      const w = spawnWorker(config);
      await w.waitForEvent('worker ready', (e) => e.evt === 'ready', 90_000);
      // Matches keep arriving while this worker lives.
      const arriving = submit(matches.slice(180 + k * 40, 220 + k * 40));
      const threshold = 3 + k * 2;
      await w.waitForEvent(`${threshold} committed batches`, () => w.events().filter((e) => e.evt === 'committed').length >= threshold, 60_000);
      w.kill('SIGKILL');
      expect(await w.done).toEqual({ code: null, signal: 'SIGKILL' });
      await arriving;
      const applied = w.events().reduce((n, e) => n + (e.evt === 'committed' ? Number(e.applied) : 0), 0);
      // Jobs still locked by the dead process: it was killed with work in hand.
      kills.push({ appliedBefore: applied, activeAfter: (await queueCounts(sharedRedis(), prefix, shardIds)).active });
    }
    expect(
      kills.some((k) => k.activeAfter > 0),
      JSON.stringify(kills),
    ).toBe(true);
    expect((await exactlyOnceProblems(t.shardSet, gameId, matches)).length, 'work was left for the last worker').toBeGreaterThan(0);

    const last = spawnWorker(config);
    await last.waitForEvent('worker ready', (e) => e.evt === 'ready', 90_000);
    await waitFor('every match applied', async () => (await exactlyOnceProblems(t.shardSet, gameId, matches)).length === 0, 90_000, 250);
    await waitFor(
      'queues drained',
      async () => {
        const c = await queueCounts(sharedRedis(), prefix, shardIds);
        return c.waiting + c.active + c.delayed + c.prioritized === 0;
      },
      30_000,
      250,
    );
    last.kill('SIGTERM');
    expect(await last.done, last.output().slice(-2000)).toEqual({ code: 0, signal: null });

    expect(await exactlyOnceProblems(t.shardSet, gameId, matches)).toEqual([]);
    expect(await queueCounts(sharedRedis(), prefix, shardIds)).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 0, prioritized: 0 });
    expect((await client.listFailed()).failed).toEqual([]);
    const states = await Promise.all(matches.map((m) => client.settlementStatus(m.matchId)));
    expect(states.filter((s) => s?.state !== 'applied').map((s) => s?.matchId)).toEqual([]);
  }, 240_000);
});
