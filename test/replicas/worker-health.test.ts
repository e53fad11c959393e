import { spawnSync } from 'node:child_process';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardSet } from '../../src/db/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, SettlementMetrics, WorkerHealth, serveWorkerEndpoints } from '../../src/settlement/index.js';
import { validateShardMap } from '../../src/shardmap/index.js';
import { freePort } from '../../src/demo/free-port.js';
import { startCli } from '../support/cli.js';
import { writeMapFile } from '../support/maps.js';
import { createPlayers } from '../support/players.js';
import { waitFor } from '../support/wait.js';
import { REDIS_URL } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { deleteKeys, redisOptions, silent, testPrefix } from '../settlement/helpers.js';

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** The value of one sample line of a Prometheus text body, or undefined. */
function sample(body: string, name: string, labels: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe('worker health endpoints and backlog gauges', () => {
  let t: TestShards;
  let prefix: string;
  let client: SettlementClient;
  let players: PlayerId[];

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    prefix = testPrefix();
    client = new SettlementClient({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
    players = [...(await createPlayers(t.shardSet, 1)).values()].flat();
  });

  afterAll(async () => {
    await client?.close();
    await t?.cleanup();
    await deleteKeys(prefix);
  });

  it('serves /healthz, /readyz and the per-shard backlog gauges (no worker running: everything waits)', async () => {
    // The worker CLI's registry: Node's default metrics, the worker's own, and the health gauges.
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    new SettlementMetrics(registry);
    const shardIds = t.map.shards.map((s) => s.id);
    const health = new WorkerHealth({ shards: t.shardSet, shardIds, connection: redisOptions(), prefix, registry });
    const server = await serveWorkerEndpoints(registry, 0, health, '127.0.0.1');
    try {
      const [p1, p2] = players as [PlayerId, PlayerId];
      for (let i = 0; i < 3; i++) {
        await client.submitSettlement({
          matchId: `h-${prefix}-${i}`,
          gameId: 'g',
          endedAt: new Date(),
          results: [
            { playerId: p1, scoreDelta: 1, outcome: 'win' },
            { playerId: p2, scoreDelta: -1, outcome: 'loss' },
          ],
        });
      }
      expect(await get(server.port, '/healthz')).toEqual({ status: 200, body: '{"alive":true}\n' });
      const ready = await get(server.port, '/readyz');
      expect(ready.status).toBe(200);
      expect(JSON.parse(ready.body)).toEqual({ ready: true, redis: 'ok', shards: Object.fromEntries(shardIds.map((id) => [id, 'ok'])), problems: [] });
      expect((await get(server.port, '/nope')).status).toBe(404);

      const { status, body } = await get(server.port, '/metrics');
      expect(status).toBe(200);
      const s1 = t.shardSet.router.shardFor(p1).id;
      const s2 = t.shardSet.router.shardFor(p2).id;
      for (const shard of new Set([s1, s2])) {
        expect(sample(body, 'shardline_settlement_queue_jobs', `shard="${shard}",state="waiting"`)).toBe(3);
        expect(sample(body, 'shardline_settlement_inbox_pending', `shard="${shard}"`)).toBe(3);
        expect(sample(body, 'shardline_settlement_inbox_oldest_pending_seconds', `shard="${shard}"`)).toBeGreaterThanOrEqual(0);
      }
      const idle = shardIds.find((id) => id !== s1 && id !== s2) as string;
      expect(sample(body, 'shardline_settlement_queue_jobs', `shard="${idle}",state="failed"`)).toBe(0);
      expect(sample(body, 'shardline_settlement_inbox_pending', `shard="${idle}"`)).toBe(0);

      if (!promtool) {
        console.warn('promtool check metrics: skipped, promtool is not installed (Debian: apt-get install prometheus)');
      } else {
        // The whole page parses (exit 3 is lint only: prom-client's own nodejs_*_total gauges draw it),
        // and shardline's metrics pass the lint too.
        const all = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
        expect([0, 3]).toContain(all.status);
        expect(`${all.stdout}${all.stderr}`).not.toMatch(/shardline_/);
        const ours = body
          .split('\n')
          .filter((l) => /^(# (HELP|TYPE) )?shardline_/.test(l))
          .join('\n');
        const lint = spawnSync('promtool', ['check', 'metrics'], { input: `${ours}\n`, encoding: 'utf8' });
        expect({ status: lint.status, out: `${lint.stdout}${lint.stderr}`.trim() }).toEqual({ status: 0, out: '' });
      }
    } finally {
      await server.close();
      await health.close();
    }
  });

  it('/readyz is 503 naming what is wrong: a shard that does not answer, a Redis that does not', async () => {
    const json = structuredClone(t.mapJson) as { shards: { connection: string }[] };
    const down = `postgres://postgres@127.0.0.1:${await freePort()}/nowhere`;
    (json.shards[1] as { connection: string }).connection = down;
    const map = validateShardMap(json, { file: '<health test>' });
    const shards = new ShardSet(map, { connectionTimeoutMs: 1000 });
    const registry = new Registry();
    const redisPort = await freePort();
    const health = new WorkerHealth({
      shards,
      shardIds: map.shards.map((s) => s.id),
      connection: { host: '127.0.0.1', port: redisPort, maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true },
      prefix,
      registry,
      timeoutMs: 1500,
    });
    const server = await serveWorkerEndpoints(registry, 0, health, '127.0.0.1');
    try {
      const r = await get(server.port, '/readyz');
      expect(r.status).toBe(503);
      const body = JSON.parse(r.body) as { ready: boolean; redis: string; shards: Record<string, string>; problems: { component: string; shardId?: string }[] };
      expect(body.ready).toBe(false);
      expect(body.redis).not.toBe('ok');
      const downId = map.shards[1]?.id as string;
      expect(body.shards[downId]).not.toBe('ok');
      expect(body.shards[map.shards[0]?.id as string]).toBe('ok');
      expect(body.problems.map((p) => p.shardId ?? p.component).sort()).toEqual([downId, 'redis'].sort());
      expect(r.body).not.toContain('postgres://');
      // The process is still alive, and a scrape still answers (without the unreachable shard's samples).
      expect((await get(server.port, '/healthz')).status).toBe(200);
      expect((await get(server.port, '/metrics')).status).toBe(200);
    } finally {
      await server.close();
      await health.close();
      await shards.close();
    }
  });

  it('the worker command serves them on --metrics-port, and stops cleanly on SIGTERM', async () => {
    const map = writeMapFile({ ...t.mapJson, prefix });
    const cli = startCli(['worker', '--map', map, '--metrics-port', '0', '--log-level', 'info'], { env: { REDIS_URL }, timeoutMs: 90_000 });
    try {
      const port = await waitFor(
        'the worker to serve its port',
        async () => {
          const m = /"port":(\d+)[^\n]*health at \/healthz/.exec(cli.stdout());
          return m ? Number(m[1]) : null;
        },
        60_000,
      );
      expect((await get(port, '/healthz')).status).toBe(200);
      const ready = await get(port, '/readyz');
      expect(ready.status).toBe(200);
      expect((JSON.parse(ready.body) as { ready: boolean }).ready).toBe(true);
      const metrics = await get(port, '/metrics');
      expect(metrics.body).toContain('shardline_settlement_inbox_pending{shard=');
      expect(metrics.body).toContain('shardline_settlement_queue_jobs{shard=');
    } finally {
      cli.child.kill('SIGTERM');
    }
    expect((await cli.done).code).toBe(0);
  });
});
