import { Redis, type RedisOptions } from 'ioredis';
import { ValidationError } from '../errors/index.js';
import { ROOM_SCRIPTS, ZONE_SCRIPT_KEY_COUNT, type RoomScriptName } from './scripts.js';

/** An ioredis client to share, or options to build one (then owned and closed by shardline). */
export type RedisConnection = Redis | RedisOptions;

export interface ResolvedConnection {
  readonly client: Redis;
  /** True when shardline built the client and must close it. */
  readonly owned: boolean;
}

/** Duck-typed, so a client from another copy of ioredis in node_modules is still recognised. */
export function isRedisClient(connection: RedisConnection): connection is Redis {
  const c = connection as Partial<Redis>;
  return typeof c.defineCommand === 'function' && typeof c.duplicate === 'function' && typeof c.evalsha === 'function';
}

export function resolveConnection(connection: RedisConnection): ResolvedConnection {
  const shared = isRedisClient(connection);
  refuseKeyPrefix(shared ? connection.options.keyPrefix : connection.keyPrefix);
  return { client: shared ? connection : new Redis(connection), owned: !shared };
}

/** A second client with the same options, for blocking reads that must not stall shared traffic. */
export function duplicateConnection(connection: RedisConnection, connectionName: string): Redis {
  return isRedisClient(connection)
    ? connection.duplicate({ connectionName })
    : new Redis({ ...connection, connectionName });
}

/**
 * ioredis prefixes only declared KEYS, but the zone scripts build member-set keys inside Lua:
 * with a client-side keyPrefix the two would silently diverge. Use the `prefix` option instead.
 */
function refuseKeyPrefix(keyPrefix: string | undefined): void {
  if (keyPrefix) {
    throw new ValidationError('connection.keyPrefix', 'not supported by rooms; use the RoomService `prefix` option');
  }
}

type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;
export type ZoneScripts = Record<RoomScriptName, ScriptCall>;

/**
 * Loads the zone scripts on a client with `defineCommand` (EVALSHA, falling back to EVAL once
 * after a script flush). Names are versioned so two shardline versions sharing a client never
 * overwrite each other's scripts.
 */
export function defineZoneScripts(client: Redis): ZoneScripts {
  const out: Partial<ZoneScripts> = {};
  for (const name of Object.keys(ROOM_SCRIPTS) as RoomScriptName[]) {
    const command = `shardlineRooms_${name}_v1`;
    const table = client as unknown as Record<string, ScriptCall | undefined>;
    if (typeof table[command] !== 'function') {
      client.defineCommand(command, { lua: ROOM_SCRIPTS[name], numberOfKeys: ZONE_SCRIPT_KEY_COUNT });
    }
    const fn = table[command];
    if (typeof fn !== 'function') throw new Error(`ioredis did not define ${command}`);
    out[name] = fn.bind(client);
  }
  return out as ZoneScripts;
}
