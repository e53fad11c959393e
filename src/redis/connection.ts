import { Redis, type RedisOptions } from 'ioredis';
import { ValidationError } from '../errors/index.js';

/**
 * The one way shardline takes a Redis, for rooms and settlement alike: an ioredis client to share
 * (the caller keeps owning it), or options for a client shardline builds, owns and closes.
 */
export type RedisConnection = Redis | RedisOptions;

export interface ResolvedConnection {
  readonly client: Redis;
  /** True when shardline built the client and must close it. */
  readonly owned: boolean;
}

/**
 * Duck-typed, not `instanceof`: a client built by another copy of ioredis in node_modules (a
 * hoisting accident, or an app pinned to another minor) is still a client, not options.
 */
export function isRedisClient(connection: RedisConnection): connection is Redis {
  const c = connection as Partial<Redis>;
  return typeof c.defineCommand === 'function' && typeof c.duplicate === 'function' && typeof c.evalsha === 'function';
}

/**
 * The options behind either form (a shared client's own options), refusing an ioredis keyPrefix.
 * The caller must not mutate them: for a shared client they are that client's live options.
 */
export function connectionOptions(connection: RedisConnection): RedisOptions {
  const options = isRedisClient(connection) ? connection.options : connection;
  refuseKeyPrefix(options.keyPrefix);
  return options;
}

/** The client to use: the caller's own (not owned), or a new one from their options (owned). */
export function resolveConnection(connection: RedisConnection): ResolvedConnection {
  const options = connectionOptions(connection);
  return isRedisClient(connection) ? { client: connection, owned: false } : { client: quiet(new Redis(options)), owned: true };
}

/**
 * A client shardline built reports a lost or refused connection through the commands that fail on
 * it; without a listener ioredis would also print "Unhandled error event" on every reconnect
 * attempt. A client the caller shares keeps the caller's own listeners.
 */
function quiet(client: Redis): Redis {
  client.on('error', () => undefined);
  return client;
}

/**
 * A second client with the same options, always owned by whoever asked: for blocking reads that
 * must not stall the shared client's traffic.
 */
export function duplicateConnection(connection: RedisConnection, connectionName: string): Redis {
  const options = connectionOptions(connection);
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
