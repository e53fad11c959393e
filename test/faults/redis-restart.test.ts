import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, type SettlementInput } from '../../src/settlement/index.js';
import { uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { killStarted, ownRedis, spawnWorker, type OwnRedis } from './support/processes.js';
import { writeMapFile } from '../support/maps.js';
import { createPlayers } from '../support/players.js';
import { waitFor } from '../support/wait.js';
import { exactlyOnceProblems, faultPrefix, prng, queueCounts, randomMatch, silent } from './support/settlement.js';

/**
 * A redis-server of our own with AOF on, restarted twice while matches keep arriving and a worker
 * process runs: once cleanly (SIGTERM: the AOF is complete) and once by crash (SIGKILL: the last
 * second of AOF may be gone). Matches submitted while Redis is down are accepted too (they are
 * durable in the shard inboxes before the enqueue is tried). None may be lost or doubled.
 */
describe('Redis restarted with AOF during a run', () => {
  let t: TestShards;
  let redis: OwnRedis;
  let players: PlayerId[];
  let client: SettlementClient;
  const prefix = faultPrefix();

  beforeAll(async () => {
    [t, redis] = await Promise.all([createTestShards('several-shards'), ownRedis(['--appendonly', 'yes', '--appendfsync', 'everysec', '--save', ''])]);
    players = [...(await createPlayers(t.shardSet, 10)).values()].flat();
    client = new SettlementClient({
      shards: t.shardSet,
      connection: { ...redis.options(), maxRetriesPerRequest: 2 },
      prefix,
      logger: silent,
      jobs: { backoffMs: 100 },
      // While Redis is down a submit waits this long for the enqueue, then leaves it to the reconciler.
      enqueueTimeoutMs: 500,
    });
  });
  afterAll(async () => {
    await killStarted();
    await client?.close();
    await redis?.destroy();
    await t?.cleanup();
  });

  it('loses no accepted settlement and applies each exactly once', async () => {
    const gameId = uniqueName('aof');
    const rand = prng(0xa0f);
    const w = spawnWorker({
      mapFile: writeMapFile(t.mapJson),
      redisUrl: redis.url,
      prefix,
      graceMs: 5000,
      logLevel: 'info',
      worker: { concurrency: 8, batchSize: 4, lockDurationMs: 2000, stalledIntervalMs: 500, reconcileIntervalMs: 1000, reconcileAfterMs: 3000 },
    });
    await w.waitForEvent('worker ready', (e) => e.evt === 'ready', 90_000);
    expect(w.output(), 'AOF is persistence: no warning').not.toMatch(/no persistence/);

    const accepted: SettlementInput[] = [];
    const refused: unknown[] = [];
    let submitting = true;
    // Four concurrent game servers, each submitting one match after another.
    const submitters = Array.from({ length: 4 }, async () => {
      while (submitting) {
        const m = randomMatch(players, gameId, rand);
        try {
          await client.submitSettlement(m);
          accepted.push(m);
        } catch (err) {
          refused.push(err);
        }
      }
    });
    const acceptedAtLeast = (n: number) => waitFor(`${n} matches accepted`, async () => accepted.length >= n, 60_000, 20);

    await acceptedAtLeast(40);
    await redis.stop('SIGTERM');
    const whileDown = accepted.length;
    await acceptedAtLeast(whileDown + 8); // accepted while Redis is down
    await redis.start();
    await acceptedAtLeast(accepted.length + 40);
    await redis.stop('SIGKILL');
    const whileCrashed = accepted.length;
    await acceptedAtLeast(whileCrashed + 8);
    await redis.start();
    await acceptedAtLeast(accepted.length + 40);
    submitting = false;
    await Promise.all(submitters);

    expect(refused, 'every submission is accepted: Postgres is up, the enqueue is retried by the reconciler').toEqual([]);
    await waitFor(
      'every accepted match applied',
      async () => {
        if (w.child.exitCode !== null) throw new Error(`the worker died:\n${w.output().slice(-3000)}`);
        return (await exactlyOnceProblems(t.shardSet, gameId, accepted)).length === 0;
      },
      90_000,
      250,
    );
    expect(await exactlyOnceProblems(t.shardSet, gameId, accepted)).toEqual([]);
    await waitFor(
      'queues drained',
      async () => {
        const c = await queueCounts(
          redis.options(),
          prefix,
          t.map.shards.map((s) => s.id),
        );
        return c.waiting + c.active + c.delayed + c.prioritized + c.failed === 0;
      },
      30_000,
      250,
    );
    expect((await client.listFailed()).failed).toEqual([]);
    w.kill('SIGTERM');
    expect(await w.done, w.output().slice(-2000)).toEqual({ code: 0, signal: null });
  }, 240_000);
});
