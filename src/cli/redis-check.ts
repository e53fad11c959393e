import { Cluster, Redis, type ClusterOptions } from 'ioredis';
import { RedisUnavailableError } from '../errors/index.js';
import { redisOptionsFromUrl } from '../settlement/index.js';

/** How long a command waits for Redis before saying where it looked: ioredis alone retries for ~14 s. */
export const REDIS_CHECK_TIMEOUT_MS = 2000;

/**
 * Connects once and PINGs, with no retries, so a command that needs Redis fails fast with the
 * host:port it tried and the variables that configure it, instead of a driver's retry-limit message.
 * `source` names where the URL came from (REDIS_URL, REDIS_URL_FILE, or the default).
 */
export async function assertRedisReachable(url: string, source: string, timeoutMs = REDIS_CHECK_TIMEOUT_MS): Promise<void> {
  const options = redisOptionsFromUrl(url);
  const target = `${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`;
  const hint = `${source === 'default' ? 'no REDIS_URL is set, so the local default was used; ' : `from ${source}; `}set REDIS_URL (or REDIS_URL_FILE) to a reachable redis:// or rediss:// URL`;
  const client = new Redis({
    ...options,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    connectionName: 'shardline-cli-check',
  });
  // ioredis rejects connect() with a bare "Connection is closed."; the first 'error' event says why.
  let first: unknown;
  client.on('error', (err: unknown) => (first ??= err));
  const deadline = new Promise<never>((_, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs + 500);
    timer.unref();
  });
  try {
    await Promise.race([client.connect().then(() => client.ping()), deadline]);
  } catch (err) {
    const why = first ?? err;
    throw new RedisUnavailableError(target, reasonOf(why, timeoutMs), hint, { cause: why });
  } finally {
    client.disconnect();
  }
}

/**
 * assertRedisReachable for a Redis Cluster ($SHARDLINE_REDIS_CLUSTER): the seeds answer and the
 * cluster serves its slots (a PING through ioredis's Cluster, which first reads the slot map).
 */
export async function assertClusterReachable(
  spec: { cluster: { host: string; port: number }[]; clusterOptions: ClusterOptions },
  timeoutMs = REDIS_CHECK_TIMEOUT_MS,
): Promise<void> {
  const target = spec.cluster.map((n) => `${n.host}:${n.port}`).join(',');
  const client = new Cluster(spec.cluster, {
    ...spec.clusterOptions,
    lazyConnect: true,
    clusterRetryStrategy: () => null,
    redisOptions: { ...spec.clusterOptions.redisOptions, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, connectionName: 'shardline-cli-check' },
  });
  let first: unknown;
  client.on('error', (err: unknown) => (first ??= err));
  const deadline = new Promise<never>((_, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs + 500);
    timer.unref();
  });
  try {
    await Promise.race([client.connect().then(() => client.ping()), deadline]);
  } catch (err) {
    const why = first ?? err;
    throw new RedisUnavailableError(target, reasonOf(why, timeoutMs), 'from SHARDLINE_REDIS_CLUSTER; set it to reachable host:port seeds of the cluster', {
      cause: why,
    });
  } finally {
    client.disconnect();
  }
}

/** What went wrong, as the rest of "Redis at host:port ...". */
function reasonOf(err: unknown, timeoutMs: number): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'ECONNREFUSED') return 'is unreachable: connection refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'is unreachable: host not found';
  if (code === 'ETIMEDOUT' || /timed? ?out|no answer/i.test(message)) return `is unreachable: no answer within ${timeoutMs} ms`;
  // Authentication and the like: the server answered. Driver messages hold no credentials (and
  // the CLI masks every secret it knows on output in any case).
  return `refused the connection: ${message}`;
}
