import { RoomFullError, UnknownRoomError, UnknownZoneError, ZoneFullError } from '../errors/index.js';
import type { PlayerId } from '../routing/index.js';
import type { RoomCount, Seat, ZoneSnapshot } from './types.js';

/**
 * Turns the zone scripts' replies into typed results and errors. Pure: given the same reply, the
 * same answer. Replies start with a status word (see scripts.ts).
 */

type Reply = readonly unknown[];

function str(v: unknown): string {
  return typeof v === 'string' ? v : String(v);
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

function unexpected(script: string, reply: unknown): Error {
  return new Error(`rooms: unexpected reply from the ${script} script: ${JSON.stringify(reply)}`);
}

/** enter / autoEnter: `OK room count cap expiry movedFrom already` or a refusal. */
export function toSeat(zone: string, playerId: PlayerId, reply: unknown): Seat {
  const r = reply as Reply;
  switch (r[0]) {
    case 'OK': {
      const movedFrom = str(r[5]);
      return {
        zone,
        roomId: str(r[1]),
        playerId,
        count: num(r[2]),
        capacity: num(r[3]),
        leaseExpiresAt: num(r[4]),
        alreadySeated: num(r[6]) === 1,
        movedFrom: movedFrom === '' ? null : movedFrom,
      };
    }
    case 'ROOM_FULL':
      throw new RoomFullError(str(r[1]), num(r[3]));
    case 'ZONE_FULL':
      throw new ZoneFullError(zone);
    case 'UNKNOWN_ZONE':
      throw new UnknownZoneError(zone);
    case 'UNKNOWN_ROOM':
      throw new UnknownRoomError(str(r[1]));
    default:
      throw unexpected('enter', reply);
  }
}

/** Statuses every room-addressed script may answer with besides its own. */
export function checkRoom(script: string, reply: unknown): Reply {
  const r = reply as Reply;
  if (!Array.isArray(r)) throw unexpected(script, reply);
  if (r[0] === 'UNKNOWN_ROOM') throw new UnknownRoomError(str(r[1]));
  return r;
}

/** members: `OK [player, expiry, ...]` -> ids sorted ascending. */
export function toMembers(reply: unknown): PlayerId[] {
  const r = checkRoom('members', reply);
  const flat = (r[1] ?? []) as unknown[];
  const ids: PlayerId[] = [];
  for (let i = 0; i < flat.length; i += 2) ids.push(BigInt(str(flat[i])) as PlayerId);
  return ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** list: `version [room, cap, ...] [room, count, ...]`. */
export function toSnapshot(zone: string, reply: unknown): ZoneSnapshot {
  const r = reply as Reply;
  if (!Array.isArray(r) || r.length !== 3) throw unexpected('list', reply);
  const caps = r[1] as unknown[];
  const counts = r[2] as unknown[];
  const countOf = new Map<string, number>();
  for (let i = 0; i + 1 < counts.length; i += 2) countOf.set(str(counts[i]), num(counts[i + 1]));
  const rooms: RoomCount[] = [];
  for (let i = 0; i + 1 < caps.length; i += 2) {
    const roomId = str(caps[i]);
    rooms.push({ roomId, count: countOf.get(roomId) ?? 0, capacity: num(caps[i + 1]) });
  }
  rooms.sort((a, b) => (a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0));
  return { type: 'snapshot', zone, version: num(r[0]), rooms };
}
