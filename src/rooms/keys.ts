import { ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';

/**
 * Names and the Redis key layout of rooms and zones. Pure functions: no Redis here.
 *
 * Every key of zone Z carries the hash tag `{<prefix>:zone:<Z>}`, so one Lua script can touch any
 * of them (including a room's member set it only learns inside the script) and the layout works
 * unchanged on Redis Cluster: a zone lives on one slot, its entries are serialised by one owner.
 * The room directory (room id -> zone) is one key per room, in the room's own slot: claimed with
 * SET NX, read with GET, never touched by a script, so no step ever spans two slots.
 */

/** Letters, digits, `_`, `.` and `-`; no braces, colons or spaces, so names cannot break a key or its hash tag. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const DEFAULT_CAPACITY = 400;
/** Above this a "room" is a lobby; member lists and per-room reaping are sized for rooms. */
export const MAX_CAPACITY = 100_000;
const MAX_LEASE_MS = 24 * 60 * 60 * 1000;

export function validateZone(zone: unknown, field = 'zone'): string {
  if (typeof zone !== 'string' || !NAME.test(zone)) {
    throw new ValidationError(field, `${showValue(zone)} is not a zone name (1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)`);
  }
  return zone;
}

export function validateRoomId(roomId: unknown, field = 'roomId'): string {
  if (typeof roomId !== 'string' || !NAME.test(roomId)) {
    throw new ValidationError(field, `${showValue(roomId)} is not a room id (1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)`);
  }
  return roomId;
}

export function validateCapacity(capacity: unknown, field = 'capacity'): number {
  if (typeof capacity !== 'number' || !Number.isInteger(capacity) || capacity < 1 || capacity > MAX_CAPACITY) {
    throw new ValidationError(field, `${showValue(capacity)} is not a capacity (an integer from 1 to ${MAX_CAPACITY})`);
  }
  return capacity;
}

export function validateLeaseMs(ms: unknown, field = 'leaseMs'): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 1 || ms > MAX_LEASE_MS) {
    throw new ValidationError(field, `${showValue(ms)} is not a lease length (an integer number of ms from 1 to ${MAX_LEASE_MS})`);
  }
  return ms;
}

export function validatePositiveInt(value: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new ValidationError(field, `${showValue(value)} is not an integer from 1 to ${max}`);
  }
  return value;
}

/**
 * The keys of one zone, in the order every zone script receives them as KEYS[1..7]; `members`
 * is the prefix of the per-room member sets (`<members><roomId>`), passed as ARGV[1].
 */
export interface ZoneKeys {
  /** hash room -> capacity: the set of rooms of the zone. */
  readonly capacity: string;
  /** hash room -> seated count: the aggregate `listRooms` reads. */
  readonly count: string;
  /** sorted set of rooms with a free seat, scored by count: `autoEnter` takes the top. */
  readonly open: string;
  /** hash player -> room: at most one room per zone. */
  readonly seatOf: string;
  /** sorted set player -> lease expiry (ms, Redis clock): the zone-wide reaping index. */
  readonly leases: string;
  /** counter: one version per published room change. */
  readonly version: string;
  /** stream of room changes, entry id `<version>-0`, trimmed to an approximate length. */
  readonly changes: string;
  /** prefix of per-room sorted sets player -> lease expiry. */
  readonly members: string;
}

function zoneTag(prefix: string, zone: string): string {
  return `{${prefix}:zone:${zone}}`;
}

export function zoneKeys(prefix: string, zone: string): ZoneKeys {
  const t = zoneTag(prefix, zone);
  return {
    capacity: `${t}:cap`,
    count: `${t}:count`,
    open: `${t}:open`,
    seatOf: `${t}:seat`,
    leases: `${t}:leases`,
    version: `${t}:ver`,
    changes: `${t}:changes`,
    members: `${t}:m:`,
  };
}

/** KEYS[1..7] of every zone script, in order. */
export function scriptKeys(k: ZoneKeys): [string, string, string, string, string, string, string] {
  return [k.capacity, k.count, k.open, k.seatOf, k.leases, k.version, k.changes];
}

/**
 * The room's directory entry, a string holding its zone. Room ids are unique across zones so
 * `enter(roomId, ...)` needs no zone; one key per room (its own hash tag) makes the claim of an id
 * atomic on one slot, and spreads the directory over a cluster instead of one hot hash.
 */
export function roomZoneKey(prefix: string, roomId: string): string {
  return `{${prefix}:room:${roomId}}:zone`;
}

/**
 * The directory of shardline 0.1: one hash room id -> zone for every zone, outside any zone's slot.
 * Only read (a room it names is copied to its roomZoneKey on first lookup), so rooms created by an
 * older version keep their zone; nothing writes it any more.
 */
export function legacyDirectoryKey(prefix: string): string {
  return `${prefix}:rooms`;
}
