import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, SettlementWorker, jobIdFor, queueNameFor, type SettlementInput } from '../../src/settlement/index.js';
import { startCli } from '../support/cli.js';
import { uniqueName } from '../support/env.js';
import { writeMapFile } from '../support/maps.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { sleep, waitFor } from '../support/wait.js';
import { createPlayers, expectedStats, interleave, makeMatch, silent, statsOf } from '../settlement/helpers.js';
import { startLocalCluster, type LocalCluster } from './local-cluster.js';

let cluster: LocalCluster;
let t: TestShards;
let players: PlayerId[];
const open: { stop(): Promise<void> }[] = [];

beforeAll(async () => {
  [cluster, t] = await Promise.all([startLocalCluster(), createTestShards('several-shards')]);
  players = interleave(await createPlayers(t.shardSet, 12));
}, 120_000);

afterAll(async () => {
  for (const o of open.splice(0).reverse()) await o.stop();
  await t?.cleanup();
  await cluster?.stop();
});

/** A client and a worker on the cluster, the client from seed nodes (shardline builds the Cluster), the worker sharing one. */
function setup(options: { reconcileMs?: number } = {}): { prefix: string; client: SettlementClient; worker: SettlementWorker } {
  const prefix = uniqueName('slcset');
  const client = new SettlementClient({ shards: t.shardSet, connection: { cluster: cluster.nodes }, prefix, logger: silent, enqueueTimeoutMs: 2000 });
  const worker = new SettlementWorker({
    shards: t.shardSet,
    connection: cluster.client(),
    prefix,
    logger: silent,
    concurrency: 16,
    batchSize: 8,
    lingerMs: 5,
    ...(options.reconcileMs ? { reconcileIntervalMs: options.reconcileMs, reconcileAfterMs: options.reconcileMs } : {}),
    // Short locks, so a job whose master died mid-run is picked up again soon.
    lockDurationMs: 5000,
    stalledIntervalMs: 2000,
  });
  open.push({ stop: () => worker.stop(5000) }, { stop: () => client.close() });
  return { prefix, client, worker };
}

function matches(n: number, size: number, gameId: string, offset = 0): SettlementInput[] {
  return Array.from({ length: n }, (_, i) => {
    const ps = Array.from({ length: size }, (_, k) => players[(offset + i + k * 5) % players.length] as PlayerId);
    return makeMatch(ps, { gameId });
  });
}

describe('settlement on a real Redis Cluster (three masters, one replica each)', () => {
  it('puts the queues of the four shards on more than one node, each queue on one slot', async () => {
    const { prefix, client } = setup();
    const m = makeMatch(players.slice(0, 4), { gameId: uniqueName('g') });
    await client.submitSettlement(m); // touches every shard: one job in each shard's queue
    const byShard = new Map<string, number>();
    for (const s of t.map.shards) {
      const base = `${prefix}:${queueNameFor(s.id)}`;
      const node = await cluster.masterOf(`${base}:wait`);
      for (const suffix of ['id', 'meta', 'events', jobIdFor(m.matchId)]) expect(await cluster.masterOf(`${base}:${suffix}`)).toBe(node);
      // The job's hash really sits on that node.
      expect(await cluster.node(node).exists(`${base}:${jobIdFor(m.matchId)}`)).toBe(1);
      byShard.set(s.id, node);
    }
    expect(byShard.size).toBe(4);
    expect(new Set(byShard.values()).size).toBeGreaterThan(1);
  });

  it('settles a round with the worker: every match applied exactly once', async () => {
    const { client, worker } = setup();
    await worker.start();
    const gameId = uniqueName('g');
    const round = matches(40, 4, gameId);
    await Promise.all(round.map((m) => client.submitSettlement(m)));
    for (const m of round) expect((await client.waitFor(m.matchId, { timeoutMs: 60_000 })).state).toBe('applied');
    expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats(round));
  });

  it('the worker CLI works the queues of a cluster named by $SHARDLINE_REDIS_CLUSTER', async () => {
    const prefix = uniqueName('slccli');
    const client = new SettlementClient({ shards: t.shardSet, connection: cluster.client(), prefix, logger: silent });
    open.push({ stop: () => client.close() });
    const seeds = cluster.ports
      .slice(0, 2)
      .map((p) => `127.0.0.1:${p}`)
      .join(',');
    const cli = startCli(['worker', '--map', writeMapFile(t.mapJson), '--prefix', prefix, '--log-level', 'warn'], {
      env: { SHARDLINE_REDIS_CLUSTER: seeds, REDIS_URL: undefined, REDIS_URL_FILE: undefined },
      timeoutMs: 60_000,
    });
    try {
      const gameId = uniqueName('g');
      const round = matches(8, 4, gameId, 3);
      await Promise.all(round.map((m) => client.submitSettlement(m)));
      for (const m of round) expect((await client.waitFor(m.matchId, { timeoutMs: 45_000 })).state).toBe('applied');
      expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats(round));
    } finally {
      cli.child.kill('SIGTERM');
      const r = await cli.done;
      expect(r.code, cli.output()).toBe(0);
    }
  });

  it('a master killed during settlement loses nothing accepted: the inbox and the reconciler re-drive what the queue lost', async () => {
    const { prefix, client, worker } = setup({ reconcileMs: 1000 });
    await worker.start();
    const gameId = uniqueName('g');
    const planned = matches(400, 3, gameId, 7);
    const accepted: SettlementInput[] = [];
    let refused = 0;
    let stop = false;
    let next = 0;
    const submitting = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!stop && next < planned.length) {
          const m = planned[next++] as SettlementInput;
          // A refused submit is retried with the same match, as a game server would: submits are idempotent.
          for (;;) {
            try {
              await client.submitSettlement(m);
              accepted.push(m);
              break;
            } catch {
              refused++;
              await sleep(50);
            }
          }
        }
      }),
    );
    // Kill the master that holds the most shard queues, mid-stream.
    const masters = await Promise.all(t.map.shards.map((s) => cluster.masterOf(`${prefix}:${queueNameFor(s.id)}:wait`)));
    const victim = [...new Set(masters)].sort((a, b) => masters.filter((m) => m === b).length - masters.filter((m) => m === a).length)[0] as number;
    await waitFor('matches accepted before the failover', async () => accepted.length >= 40);
    await cluster.kill(victim);
    await cluster.waitHealthy();
    const moved = t.map.shards.filter((_, i) => masters[i] === victim).map((s) => `${prefix}:${queueNameFor(s.id)}:wait`);
    for (const key of moved) expect(await cluster.masterOf(key)).not.toBe(victim); // its replica serves the queue now
    const afterFailover = accepted.length;
    await waitFor('matches accepted after the failover', async () => accepted.length >= afterFailover + 40, 30_000);
    stop = true;
    await submitting;
    expect(accepted.length).toBeGreaterThan(80);
    await waitFor(
      'every accepted match applied',
      async () => {
        for (const m of accepted) if ((await client.settlementStatus(m.matchId))?.state !== 'applied') return false;
        return true;
      },
      90_000,
      500,
    );
    expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats(accepted));
    // Submits record the parts in the shard inboxes before enqueueing: Redis down only delays them.
    expect(refused).toBe(0);
  }, 240_000);
});
