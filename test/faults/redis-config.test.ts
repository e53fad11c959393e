import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestShards, type TestShards } from '../support/shards.js';
import { killStarted, ownRedis, spawnCli, type OwnRedis, type Proc } from './support/processes.js';
import { writeMapFile } from '../support/maps.js';
import { waitFor } from '../support/wait.js';
import { faultPrefix } from './support/settlement.js';

/** The real `shardline worker` against Redis servers configured in ways that can lose queued work. */
describe('the worker CLI judges its Redis at start', () => {
  let t: TestShards;
  let mapFile: string;
  const servers: OwnRedis[] = [];

  beforeAll(async () => {
    t = await createTestShards('one-shard');
    mapFile = writeMapFile(t.mapJson);
  });
  afterAll(async () => {
    await killStarted();
    for (const s of servers) await s.destroy();
    await t?.cleanup();
  });

  async function server(args: string[]): Promise<OwnRedis> {
    const s = await ownRedis(args);
    servers.push(s);
    return s;
  }

  function worker(redis: OwnRedis): Proc {
    return spawnCli(['worker', '--map', mapFile, '--prefix', faultPrefix(), '--grace-ms', '2000', '--concurrency', '4', '--batch-size', '2'], {
      REDIS_URL: redis.url,
    });
  }

  async function dbsize(redis: OwnRedis): Promise<number> {
    const r = new Redis(redis.options());
    try {
      return await r.dbsize();
    } finally {
      r.disconnect();
    }
  }

  /** pino lines of level warn (40) or above. */
  const warnings = (p: Proc) =>
    p
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .filter((l) => l.level >= 40);

  it('warns and names the risk when Redis keeps nothing, refuses an evicting Redis, and is quiet with AOF', async () => {
    const [volatile, evicting, aof] = await Promise.all([
      server(['--save', '', '--appendonly', 'no']),
      server(['--save', '', '--appendonly', 'yes', '--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru']),
      server(['--save', '', '--appendonly', 'yes']),
    ]);
    const procs = [worker(volatile), worker(evicting), worker(aof)] as const;
    const [onVolatile, onEvicting, onAof] = procs;

    // Refused before it touches the queues: exit 1, a typed error naming the setting, nothing written.
    const refused = await onEvicting.done;
    expect(refused.code, onEvicting.output()).toBe(1);
    expect(onEvicting.output()).toContain('error [REDIS_CONFIG]: Redis maxmemory-policy is "allkeys-lru", expected "noeviction"');
    expect(await dbsize(evicting)).toBe(0);

    for (const p of [onVolatile, onAof])
      await waitFor('worker started', async () => p.output().includes('settlement worker started') || p.child.exitCode !== null, 90_000, 100);
    const risk = warnings(onVolatile).find((l) => /no persistence/.test(l.msg));
    expect(risk?.msg, onVolatile.output()).toMatch(/Redis has no persistence.*a restart loses queued jobs.*shard inboxes keep every accepted settlement/);
    expect(warnings(onAof).filter((l) => /persist/.test(l.msg))).toEqual([]);

    for (const p of [onVolatile, onAof]) p.kill('SIGTERM');
    for (const p of [onVolatile, onAof]) expect(await p.done, p.output().slice(-2000)).toEqual({ code: 0, signal: null });
  }, 150_000);
});
