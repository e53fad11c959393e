import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';
import { ValidationError } from '../errors/index.js';

/**
 * A Redis Cluster for shardline to connect to itself (it owns the client and closes it): the seed
 * nodes and ioredis's cluster options. Every key shardline writes carries a hash tag (one slot per
 * zone, one per shard's queue), so the cluster spreads zones and queues over its masters.
 */
export interface RedisClusterConnection {
  readonly cluster: readonly ClusterNode[];
  readonly clusterOptions?: ClusterOptions;
}

/** A client shardline talks to: one Redis, or an ioredis Cluster. */
export type RedisClient = Redis | Cluster;

/**
 * The one way shardline takes a Redis, for rooms and settlement alike: an ioredis client or
 * Cluster to share (the caller keeps owning it), or options for a client (or cluster) shardline
 * builds, owns and closes.
 */
export type RedisConnection = Redis | Cluster | RedisOptions | RedisClusterConnection;

export interface ResolvedConnection {
  readonly client: RedisClient;
  /** True when shardline built the client and must close it. */
  readonly owned: boolean;
}

/**
 * Duck-typed, not `instanceof`: a client built by another copy of ioredis in node_modules (a
 * hoisting accident, or an app pinned to another minor) is still a client, not options.
 */
export function isRedisClient(connection: RedisConnection): connection is RedisClient {
  const c = connection as Partial<Redis>;
  return typeof c.defineCommand === 'function' && typeof c.duplicate === 'function' && typeof c.evalsha === 'function';
}

/** A Cluster client (ioredis marks its clusters), as opposed to a single Redis. */
export function isClusterClient(client: unknown): client is Cluster {
  return typeof client === 'object' && client !== null && (client as { isCluster?: unknown }).isCluster === true;
}

/** The cluster form of the options, or a Cluster client. */
export function isClusterConnection(connection: RedisConnection): connection is Cluster | RedisClusterConnection {
  if (isRedisClient(connection)) return isClusterClient(connection);
  return Array.isArray((connection as Partial<RedisClusterConnection>).cluster);
}

/**
 * The per-node options behind any form (a shared client's own options; a cluster's `redisOptions`),
 * refusing an ioredis keyPrefix. The caller must not mutate them: for a shared client they are that
 * client's live options.
 */
export function connectionOptions(connection: RedisConnection): RedisOptions {
  if (isClusterConnection(connection)) {
    const options = clusterOptionsOf(connection);
    refuseKeyPrefix(options.keyPrefix);
    refuseKeyPrefix(options.redisOptions?.keyPrefix);
    return options.redisOptions ?? {};
  }
  const options = isRedisClient(connection) ? connection.options : connection;
  refuseKeyPrefix(options.keyPrefix);
  return options;
}

/** The seed nodes and cluster options of a cluster connection (a Cluster client's own). */
export function clusterSpecOf(connection: Cluster | RedisClusterConnection): { nodes: ClusterNode[]; options: ClusterOptions } {
  if (isRedisClient(connection)) {
    // startupNodes is private in ioredis's types; duplicate() uses it the same way.
    const nodes = (connection as unknown as { startupNodes: ClusterNode[] }).startupNodes;
    return { nodes: [...nodes], options: connection.options };
  }
  return { nodes: [...connection.cluster], options: connection.clusterOptions ?? {} };
}

function clusterOptionsOf(connection: Cluster | RedisClusterConnection): ClusterOptions {
  return isRedisClient(connection) ? connection.options : (connection.clusterOptions ?? {});
}

/** The client to use: the caller's own (not owned), or a new one from their options (owned). */
export function resolveConnection(connection: RedisConnection): ResolvedConnection {
  connectionOptions(connection); // refuses a keyPrefix in every form
  if (isRedisClient(connection)) return { client: connection, owned: false };
  if (isClusterConnection(connection)) {
    const { nodes, options } = clusterSpecOf(connection);
    return { client: quiet(new Cluster(nodes, options)), owned: true };
  }
  return { client: quiet(new Redis(connection)), owned: true };
}

/**
 * A client shardline built reports a lost or refused connection through the commands that fail on
 * it; without a listener ioredis would also print "Unhandled error event" on every reconnect
 * attempt. A client the caller shares keeps the caller's own listeners.
 */
function quiet<C extends RedisClient>(client: C): C {
  client.on('error', () => undefined);
  return client;
}

/**
 * A second client with the same options, always owned by whoever asked: for blocking reads that
 * must not stall the shared client's traffic. For a cluster, a second Cluster: it connects only to
 * the nodes it sends commands to (ioredis opens node connections lazily), so a reader of one slot
 * holds one connection, to that slot's master, and follows it through a failover.
 */
export function duplicateConnection(connection: RedisConnection, connectionName: string, overrides: ClusterOptions = {}): RedisClient {
  const options = connectionOptions(connection);
  if (isClusterConnection(connection)) {
    const spec = clusterSpecOf(connection);
    const redisOptions = { ...spec.options.redisOptions, ...overrides.redisOptions, connectionName };
    return quiet(new Cluster(spec.nodes, { ...spec.options, ...overrides, redisOptions }));
  }
  return quiet(isRedisClient(connection) ? connection.duplicate({ connectionName }) : new Redis({ ...options, connectionName }));
}

/**
 * ioredis prefixes only declared KEYS, but the zone scripts build member-set keys inside Lua and
 * BullMQ builds its own keys: with a client-side keyPrefix the two would silently diverge. The
 * `prefix` option of RoomService, SettlementClient and SettlementWorker is the one place for it.
 */
function refuseKeyPrefix(keyPrefix: string | undefined): void {
  if (keyPrefix) {
    throw new ValidationError(
      'connection.keyPrefix',
      'an ioredis keyPrefix is not supported; give shardline a plain name in its `prefix` option instead (it places the hash tags itself)',
    );
  }
}

/** `host:port,host:port,...` (the CLI's `--redis-cluster` and `$SHARDLINE_REDIS_CLUSTER`) as seed nodes. */
export function parseClusterNodes(list: string, field = 'redis-cluster'): { host: string; port: number }[] {
  const nodes = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(s);
      const port = Number(m?.[2]);
      if (!m || port < 1 || port > 65535) throw new ValidationError(field, `"${s}" is not host:port`);
      return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
    });
  if (nodes.length === 0) throw new ValidationError(field, 'names no node (expected host:port,host:port,...)');
  return nodes;
}
