import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { RedisConfigError, ValidationError } from '../../src/errors/index.js';
import { Router, encodePlayerId } from '../../src/routing/index.js';
import { GroupCommit } from '../../src/settlement/group-commit.js';
import { legacyQueueOf, queueNameFor, resolvePrefix } from '../../src/settlement/keys.js';
import { dependencyVersions, inspectRedis, judgeRedis } from '../../src/settlement/redis.js';
import { normalizeMatch } from '../../src/settlement/validate.js';
import { DEFAULT_SETTLEMENT_LIMITS as DEFAULT_LIMITS, homeShardOf, jobIdFor, redisOptionsFromUrl } from '../../src/settlement/index.js';
import { validateShardMap } from '../../src/shardmap/index.js';
import { ShardSet } from '../../src/db/index.js';
import type { Logger } from '../../src/logging/index.js';
import { resolveWorkerOptions } from '../../src/settlement/worker-options.js';
import { SettlementClient } from '../../src/settlement/client.js';
import { redisOptions } from './helpers.js';

const map = validateShardMap({
  version: 1,
  buckets: 4096,
  regions: ['a', 'b'],
  shards: [
    { id: 'a-1', region: 'a', connection: 'postgres://u@h/a1', buckets: ['0-2047'] },
    { id: 'b-1', region: 'b', connection: 'postgres://u@h/b1', buckets: ['2048-4095'] },
  ],
});
const router = new Router(map);
const id = (bucket: number, seq: number) => encodePlayerId({ time: 1000, bucket, seq });
const base = {
  matchId: 'm-1',
  gameId: 'chess',
  endedAt: '2025-03-01T12:00:00Z',
  results: [
    { playerId: id(5, 1).toString(), scoreDelta: 10, outcome: 'win' as const },
    { playerId: id(3000, 2), scoreDelta: -10, outcome: 'loss' as const },
  ],
};

describe('settlement input and keys', () => {
  it('hashes the content, not its spelling: result order, id form and time zone do not matter', () => {
    const a = normalizeMatch(base, router, DEFAULT_LIMITS);
    const b = normalizeMatch(
      {
        ...base,
        endedAt: '2025-03-01T20:00:00.000+08:00',
        results: [
          { ...base.results[1]!, playerId: id(3000, 2).toString() },
          { ...base.results[0]!, playerId: id(5, 1) },
        ],
      },
      router,
      DEFAULT_LIMITS,
    );
    expect(b.contentHash).toBe(a.contentHash);
    expect(normalizeMatch({ ...base, gameId: 'go' }, router, DEFAULT_LIMITS).contentHash).not.toBe(a.contentHash);
    expect(normalizeMatch({ ...base, endedAt: '2025-03-01T12:00:00.001Z' }, router, DEFAULT_LIMITS).contentHash).not.toBe(a.contentHash);
    expect(a.results.map((r) => r.index)).toEqual([0, 1]);
  });

  it('enforces the configured bounds', () => {
    const limits = { ...DEFAULT_LIMITS, minScoreDelta: -5, maxScoreDelta: 5 };
    expect(() => normalizeMatch(base, router, limits)).toThrow(ValidationError);
    expect(() => normalizeMatch(base, router, limits)).toThrow(/results\.0\.scoreDelta/);
  });

  it('makes BullMQ-safe, distinct job ids from any match id', () => {
    const ids = ['12345', 'a:b', 'a:b:c', 'a%3Ab', 'room-7/match-3', 'x'];
    const jobIds = ids.map(jobIdFor);
    expect(new Set(jobIds).size).toBe(ids.length);
    for (const j of jobIds) {
      expect(j).not.toContain(':');
      expect(`${parseInt(j, 10)}`).not.toBe(j);
    }
  });

  it('picks the home shard from the match id alone', () => {
    expect(homeShardOf(map, 'm-1').id).toBe(homeShardOf(map, 'm-1').id);
    const homes = new Set(Array.from({ length: 64 }, (_, i) => homeShardOf(map, `match-${i}`).id));
    expect(homes).toEqual(new Set(['a-1', 'b-1']));
  });

  it('takes a plain prefix (option, else the map, else shardline) and refuses braces', () => {
    expect(resolvePrefix(undefined, map)).toBe('shardline');
    expect(resolvePrefix(undefined, { ...map, prefix: 'mygame' })).toBe('mygame');
    expect(resolvePrefix('prod.eu-1', { ...map, prefix: 'mygame' })).toBe('prod.eu-1');
    expect(() => resolvePrefix('{shardline}', map)).toThrow(/places the Redis Cluster hash tags itself/);
    for (const bad of ['', 'prod{sl}', 'a b', 'a:b', '-x', 'x'.repeat(65)]) expect(() => resolvePrefix(bad, map)).toThrow(ValidationError);
  });

  it('gives each shard queue its own hash tag, so every key of one queue is in one slot and the queues spread', () => {
    // What BullMQ builds: `${prefix}:${queueName}:${suffix}`, job hashes `${prefix}:${queueName}:${jobId}`.
    const keysOf = (shardId: string) => ['wait', 'active', 'meta', 'events', jobIdFor('m:1')].map((k) => `shardline:${queueNameFor(shardId)}:${k}`);
    const tagOf = (key: string) => /\{([^}]+)\}/.exec(key)?.[1];
    for (const shardId of ['a-1', 'b-1']) expect(new Set(keysOf(shardId).map(tagOf))).toEqual(new Set([`settle-${shardId}`]));
    expect(queueNameFor('a-1')).not.toContain(':'); // BullMQ refuses ':' in queue names
    expect(legacyQueueOf('shardline', 'a-1')).toEqual({ prefix: '{shardline}', name: 'settle-a-1' });
  });

  it('reads REDIS_URL', () => {
    expect(redisOptionsFromUrl('redis://:s3cret@cache:6380/2')).toEqual({ host: 'cache', port: 6380, db: 2, password: 's3cret' });
    expect(redisOptionsFromUrl('rediss://cache')).toMatchObject({ tls: {} });
    expect(() => redisOptionsFromUrl('http://cache')).toThrow(ValidationError);
  });
});

describe('Redis and dependency checks', () => {
  it('runs BullMQ 6 with the ioredis version BullMQ tests with', () => {
    const v = dependencyVersions();
    expect(v.bullmq).toMatch(/^6\./);
    expect(v.ioredisTestedByBullmq?.replace(/^[\^~]/, '')).toBe(v.ioredis);
  });

  it('refuses an evicting maxmemory-policy and warns when nothing persists', async () => {
    expect(judgeRedis({ version: '7', maxmemoryPolicy: 'allkeys-lru', aofEnabled: true, rdbSave: '', persistent: true }).refuse).toBeInstanceOf(
      RedisConfigError,
    );
    expect(judgeRedis({ version: '7', maxmemoryPolicy: 'noeviction', aofEnabled: false, rdbSave: '', persistent: false }).warn).toMatch(/no persistence/);
    expect(judgeRedis({ version: '7', maxmemoryPolicy: 'noeviction', aofEnabled: true, rdbSave: '', persistent: true })).toEqual({});
    const r = new Redis(redisOptions());
    try {
      const health = await inspectRedis(r);
      expect(health.version).toMatch(/^\d+\./);
      expect(health.maxmemoryPolicy).toBe('noeviction'); // what the test Redis must run with
    } finally {
      r.disconnect();
    }
  });
});

describe('GroupCommit', () => {
  it('combines waiting items into units of at most maxBatch, with limited units in flight', async () => {
    const batches: string[][] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const b = new GroupCommit<string, number>(
      async (keys) => {
        batches.push(keys);
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        await new Promise((r) => setTimeout(r, 10));
        inFlight--;
        return keys.map(Number);
      },
      { maxBatch: 4, lingerMs: 5, maxInFlight: 2 },
    );
    const results = await Promise.all(Array.from({ length: 23 }, (_, i) => b.submit(String(i))));
    expect(results).toEqual(Array.from({ length: 23 }, (_, i) => i));
    expect(Math.max(...batches.map((x) => x.length))).toBe(4);
    expect(batches.flat().sort()).toEqual(Array.from({ length: 23 }, (_, i) => String(i)).sort());
    expect(maxInFlight).toBe(2);
    await b.drain();
  });

  it('rejects every waiter of a failed unit unless told to isolate, and serves a lone item after the linger', async () => {
    let calls = 0;
    const b = new GroupCommit<string, number>(
      async () => {
        calls++;
        throw new Error('boom');
      },
      { maxBatch: 8, lingerMs: 1, maxInFlight: 1 },
    );
    await expect(Promise.all([b.submit('a'), b.submit('b')])).rejects.toThrow('boom');
    expect(calls).toBe(1);
    const ok = new GroupCommit<string, string>(async (keys) => keys.map((k) => k.toUpperCase()), { maxBatch: 8, lingerMs: 1, maxInFlight: 1 });
    expect(await ok.submit('x')).toBe('X');
  });

  it('isolates a bad item so its neighbours still commit, one unit at a time', async () => {
    const units: string[][] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const b = new GroupCommit<string, string>(
      async (items) => {
        units.push(items);
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        await new Promise((r) => setTimeout(r, 2));
        inFlight--;
        if (items.includes('bad')) throw new Error(`bad item among ${items.length}`);
        return items.map((i) => i.toUpperCase());
      },
      { maxBatch: 8, lingerMs: 5, maxInFlight: 1, isolate: (err) => err instanceof Error && err.message.startsWith('bad') },
    );
    const got = await Promise.allSettled(['a', 'bad', 'c'].map((i) => b.submit(i)));
    expect(got.map((g) => (g.status === 'fulfilled' ? g.value : (g.reason as Error).message))).toEqual(['A', 'bad item among 1', 'C']);
    expect(units).toEqual([['a', 'bad', 'c'], ['a'], ['bad'], ['c']]);
    expect(maxInFlight).toBe(1);
  });

  it('never puts two items of one key in one unit', async () => {
    const units: string[][] = [];
    const b = new GroupCommit<string, string>(
      async (items) => {
        units.push(items);
        return items;
      },
      { maxBatch: 8, lingerMs: 5, maxInFlight: 1, keyOf: (i) => i },
    );
    await Promise.all(['m1', 'm2', 'm1'].map((i) => b.submit(i)));
    expect(units).toEqual([['m1', 'm2'], ['m1']]);
  });
});

describe('worker options', () => {
  it('are resolved once: defaults applied, the batch capped by the concurrency, bad values refused by name', async () => {
    const shards = new ShardSet(map);
    try {
      const lines: string[] = [];
      // Any logger of this shape fits, pino or not; debug may be left out.
      const logger: Logger = {
        info: (_f, m) => void lines.push(`info ${m}`),
        warn: (_f, m) => void lines.push(`warn ${m}`),
        error: (_f, m) => void lines.push(`error ${m}`),
      };
      const o = resolveWorkerOptions({ shards, connection: redisOptions(), logger, concurrency: 8, batchSize: 100, shardIds: ['b-1'] });
      expect(o).toMatchObject({
        prefix: 'shardline',
        concurrency: 8,
        batchSize: 8,
        lingerMs: 2,
        maxInFlightBatches: 2,
        reconcileAfterMs: 60_000,
        checkRedis: true,
        shardIds: ['b-1'],
        logger,
      });
      expect(resolveWorkerOptions({ shards, connection: redisOptions(), logger, prefix: 'eu' }).prefix).toBe('eu');
      for (const [field, bad] of [
        ['concurrency', 0],
        ['batchSize', 1.5],
        ['lingerMs', -1],
        ['reconcileIntervalMs', 0],
        ['lockDurationMs', Number.NaN],
      ] as const) {
        expect(() => resolveWorkerOptions({ shards, connection: redisOptions(), logger, [field]: bad })).toThrow(new RegExp(`^${field}: `));
      }
      expect(() => resolveWorkerOptions({ shards, connection: redisOptions(), logger, prefix: '{x}' })).toThrow(ValidationError);
      expect(() => resolveWorkerOptions({ shards, connection: redisOptions(), logger, shardIds: ['nope'] })).toThrow(/unknown shard/);
      // One connection wrapper for rooms and settlement: an ioredis keyPrefix is refused, given as options or as a client.
      expect(() => new SettlementClient({ shards, connection: { ...redisOptions(), keyPrefix: 'x:' }, logger })).toThrow(/connection\.keyPrefix/);
      expect(() => resolveWorkerOptions({ shards, connection: { ...redisOptions(), keyPrefix: 'x:' }, logger })).toThrow(/connection\.keyPrefix/);
      const prefixed = new Redis({ ...redisOptions(), keyPrefix: 'x:', lazyConnect: true });
      try {
        expect(() => new SettlementClient({ shards, connection: prefixed, logger })).toThrow(/connection\.keyPrefix/);
      } finally {
        prefixed.disconnect();
      }
    } finally {
      await shards.close();
    }
  });
});
