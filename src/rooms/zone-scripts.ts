import type { RedisClient } from '../redis/connection.js';
import { READ_ONLY_SCRIPTS, ROOM_SCRIPTS, ZONE_SCRIPT_KEY_COUNT, type RoomScriptName } from './scripts.js';

type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;
export type ZoneScripts = Record<RoomScriptName, ScriptCall>;

/**
 * Loads the zone scripts on a client with `defineCommand` (EVALSHA, falling back to EVAL once
 * after a script flush). Names are versioned so two shardline versions sharing a client never
 * overwrite each other's scripts: bump the version whenever a script's source changes.
 */
export function defineZoneScripts(client: RedisClient): ZoneScripts {
  const out: Partial<ZoneScripts> = {};
  for (const name of Object.keys(ROOM_SCRIPTS) as RoomScriptName[]) {
    const command = `shardlineRooms_${name}_v2`;
    const table = client as unknown as Record<string, ScriptCall | undefined>;
    if (typeof table[command] !== 'function') {
      client.defineCommand(command, { lua: ROOM_SCRIPTS[name], numberOfKeys: ZONE_SCRIPT_KEY_COUNT, readOnly: READ_ONLY_SCRIPTS.has(name) });
    }
    const fn = table[command];
    if (typeof fn !== 'function') throw new Error(`ioredis did not define ${command}`);
    out[name] = fn.bind(client);
  }
  return out as ZoneScripts;
}
