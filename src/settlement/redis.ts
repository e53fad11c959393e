import { createRequire } from 'node:module';
import type { RedisOptions as BullRedisOptions } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import { isClusterClient, type RedisClient } from '../redis/connection.js';
import { RedisConfigError, ValidationError } from '../errors/index.js';
import type { Logger } from '../logging/logger.js';
import { connectionOptions, type RedisConnection } from '../redis/connection.js';

/**
 * A connection for BullMQ workers: blocking commands need maxRetriesPerRequest null. Built from the
 * caller's options (or a copy of their client's), so BullMQ owns and closes what it opens. The
 * shared wrapper (src/redis/connection.ts) tells a client from options and refuses a keyPrefix.
 */
export function workerConnectionOptions(c: RedisConnection): BullRedisOptions {
  // ioredis allows `retryStrategy: null`, BullMQ's type does not: leave it out (BullMQ's own default).
  const { retryStrategy, ...rest } = connectionOptions(c);
  return { ...rest, ...(retryStrategy ? { retryStrategy } : {}), maxRetriesPerRequest: null, lazyConnect: false };
}

/** redis://[user:pass@]host[:port][/db] or rediss:// to ioredis options (the CLI's REDIS_URL). */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new ValidationError('REDIS_URL', `expected redis:// or rediss://, got ${u.protocol}`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new ValidationError('REDIS_URL', `database must be a number, got ${u.pathname.slice(1)}`);
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

export interface RedisHealth {
  version: string | null;
  maxmemoryPolicy: string | null;
  aofEnabled: boolean | null;
  /** The RDB `save` schedule; '' when snapshots are off; null when CONFIG is not allowed. */
  rdbSave: string | null;
  /** False when neither AOF nor RDB snapshots are on: a restart loses everything queued. */
  persistent: boolean | null;
}

function infoField(info: string, name: string): string | null {
  const m = new RegExp(`^${name}:(.*)$`, 'm').exec(info);
  return m?.[1]?.trim() ?? null;
}

/**
 * A cluster is judged by its masters, each on its own (every queue lives on one of them): the
 * first that may evict, or keeps nothing across a restart, is the one reported.
 */
export async function inspectRedis(client: RedisClient): Promise<RedisHealth> {
  if (!isClusterClient(client)) return inspectNode(client);
  await client.ping(); // the node list fills in once the cluster is connected
  const all = await Promise.all(client.nodes('master').map((node) => inspectNode(node)));
  const first = all[0];
  if (!first) throw new Error('the Redis Cluster lists no master');
  return all.find((h) => judgeRedis(h).refuse) ?? all.find((h) => judgeRedis(h).warn) ?? first;
}

async function inspectNode(client: Redis): Promise<RedisHealth> {
  const info = await client.info();
  const aof = infoField(info, 'aof_enabled');
  let rdbSave: string | null = null;
  try {
    const r = (await client.config('GET', 'save')) as string[];
    rdbSave = r[1] ?? null;
  } catch {
    // Managed Redis often disables CONFIG: persistence then stays unknown, and we say so.
  }
  const aofEnabled = aof === null ? null : aof === '1';
  return {
    version: infoField(info, 'redis_version'),
    maxmemoryPolicy: infoField(info, 'maxmemory_policy'),
    aofEnabled,
    rdbSave,
    persistent: aofEnabled === true || (rdbSave !== null && rdbSave !== '') ? true : aofEnabled === false && rdbSave === '' ? false : null,
  };
}

/**
 * What a worker makes of a Redis: refuse one that may evict keys (queued jobs would vanish
 * silently); warn when it keeps nothing across a restart, for then only the shard inboxes and the
 * reconciler keep work safe.
 */
export function judgeRedis(health: RedisHealth): { refuse?: RedisConfigError; warn?: string } {
  if (health.maxmemoryPolicy !== null && health.maxmemoryPolicy !== 'noeviction') {
    return { refuse: new RedisConfigError('maxmemory-policy', health.maxmemoryPolicy, '"noeviction" (BullMQ keys must never be evicted)') };
  }
  if (health.persistent === false) {
    return {
      warn: 'Redis has no persistence (no AOF, no RDB snapshots): a restart loses queued jobs; the shard inboxes keep every accepted settlement and the reconciler re-enqueues them',
    };
  }
  if (health.persistent === null) return { warn: 'cannot tell whether Redis persists data (CONFIG not allowed?)' };
  return {};
}

export async function assertRedisSuitable(client: RedisClient, logger: Logger): Promise<RedisHealth> {
  const health = await inspectRedis(client);
  const verdict = judgeRedis(health);
  if (verdict.refuse) throw verdict.refuse;
  if (verdict.warn) logger.warn({ redis: health }, verdict.warn);
  return health;
}

export interface DependencyVersions {
  bullmq: string;
  ioredis: string;
  /** The ioredis version BullMQ's own test suite runs against (its devDependency). */
  ioredisTestedByBullmq: string | null;
}

const require = createRequire(import.meta.url);

export function dependencyVersions(): DependencyVersions {
  const bull = require('bullmq/package.json') as { version: string; devDependencies?: Record<string, string> };
  const io = require('ioredis/package.json') as { version: string };
  return { bullmq: bull.version, ioredis: io.version, ioredisTestedByBullmq: bull.devDependencies?.ioredis ?? null };
}

/** Warns when ioredis is not the version BullMQ tests with; refuses a BullMQ that is not v6. */
export function checkDependencyVersions(logger: Logger): DependencyVersions {
  const v = dependencyVersions();
  if (!v.bullmq.startsWith('6.')) throw new Error(`shardline settlement needs BullMQ 6, found ${v.bullmq}`);
  if (v.ioredisTestedByBullmq !== null && v.ioredisTestedByBullmq.replace(/^[\^~]/, '') !== v.ioredis) {
    logger.warn({ versions: v }, `ioredis ${v.ioredis} is not the version BullMQ ${v.bullmq} is tested with (${v.ioredisTestedByBullmq})`);
  }
  return v;
}
