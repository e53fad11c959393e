import { Redis } from 'ioredis';
import { expect } from 'vitest';
import { RoomService, type RoomServiceOptions } from '../../src/index.js';
import { zoneKeys } from '../../src/rooms/keys.js';
import { REDIS_URL, uniqueName } from '../support/env.js';

/** A Redis client for tests; closed by the caller. */
export function redis(): Redis {
  return new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
}

export interface RoomsFixture {
  prefix: string;
  client: Redis;
  service: RoomService;
  /** More services with their own connections, e.g. to stand for other processes. */
  more(n: number, options?: Partial<RoomServiceOptions>): RoomService[];
  cleanup(): Promise<void>;
}

/** A RoomService on a unique key prefix; cleanup deletes every key under it (never FLUSHALL). */
export async function roomsFixture(options: Partial<RoomServiceOptions> = {}): Promise<RoomsFixture> {
  const prefix = uniqueName('slrooms');
  const client = redis();
  const owned: { service: RoomService; client: Redis }[] = [];
  const service = new RoomService({ connection: client, prefix, ...options });
  return {
    prefix,
    client,
    service,
    more(n, extra = {}) {
      return Array.from({ length: n }, () => {
        const c = redis();
        const s = new RoomService({ connection: c, prefix, ...options, ...extra });
        owned.push({ service: s, client: c });
        return s;
      });
    },
    async cleanup() {
      for (const o of owned) {
        await o.service.close();
        o.client.disconnect();
      }
      await service.close();
      await deleteKeys(client, prefix);
      client.disconnect();
    },
  };
}

export async function deleteKeys(client: Redis, prefix: string): Promise<void> {
  for (const pattern of [`{${prefix}:*`, `${prefix}:*`]) {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== '0');
  }
}

export interface ZoneState {
  capacity: Map<string, number>;
  count: Map<string, number>;
  open: Map<string, number>;
  seat: Map<string, string>;
  leases: Map<string, number>;
  members: Map<string, Map<string, number>>;
  version: number;
  lastLogVersion: number | null;
}

function pairs(flat: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

/** Every key of a zone read in one MULTI, so the state is one instant of the truth. */
export async function readZone(client: Redis, prefix: string, zone: string): Promise<ZoneState> {
  const k = zoneKeys(prefix, zone);
  const rooms = await client.hkeys(k.capacity);
  const m = client.multi().hgetall(k.capacity).hgetall(k.count).zrange(k.open, 0, -1, 'WITHSCORES');
  m.hgetall(k.seatOf).zrange(k.leases, 0, -1, 'WITHSCORES').get(k.version).xrevrange(k.changes, '+', '-', 'COUNT', 1);
  for (const r of rooms) m.zrange(k.members + r, 0, -1, 'WITHSCORES');
  const res = (await m.exec())!.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
  const [cap, count, open, seat, leases, ver, last, ...memberSets] = res as [
    Record<string, string>,
    Record<string, string>,
    string[],
    Record<string, string>,
    string[],
    string | null,
    [string, string[]][],
    ...string[][],
  ];
  const members = new Map<string, Map<string, number>>();
  rooms.forEach((r, i) => members.set(r, new Map(pairs(memberSets[i]!).map(([p, s]) => [p, Number(s)]))));
  const lastId = last[0]?.[0];
  return {
    capacity: new Map(Object.entries(cap).map(([r, v]) => [r, Number(v)])),
    count: new Map(Object.entries(count).map(([r, v]) => [r, Number(v)])),
    open: new Map(pairs(open).map(([r, s]) => [r, Number(s)])),
    seat: new Map(Object.entries(seat)),
    leases: new Map(pairs(leases).map(([p, s]) => [p, Number(s)])),
    members,
    version: Number(ver ?? 0),
    lastLogVersion: lastId === undefined ? null : Number(lastId.split('-')[0]),
  };
}

/** The rules every zone script keeps (see src/rooms/scripts.ts); fails the test on any breach. */
export function assertInvariants(s: ZoneState): void {
  const seatedIn = new Map<string, string>();
  for (const [room, cap] of s.capacity) {
    const m = s.members.get(room) ?? new Map<string, number>();
    const count = s.count.get(room) ?? 0;
    expect(count, `count of ${room} equals its member set`).toBe(m.size);
    expect(m.size, `room ${room} within capacity`).toBeLessThanOrEqual(cap);
    if (m.size < cap) expect(s.open.get(room), `open index score of ${room}`).toBe(m.size);
    else expect(s.open.has(room), `full room ${room} not in open index`).toBe(false);
    for (const [p, exp] of m) {
      expect(seatedIn.get(p), `player ${p} seated twice`).toBeUndefined();
      seatedIn.set(p, room);
      expect(s.seat.get(p), `seat of ${p}`).toBe(room);
      expect(s.leases.get(p), `lease of ${p}`).toBe(exp);
    }
  }
  expect(s.seat.size, 'seat hash matches member sets').toBe(seatedIn.size);
  expect(s.leases.size, 'lease index matches member sets').toBe(seatedIn.size);
  for (const room of s.open.keys()) expect(s.capacity.has(room), `open room ${room} exists`).toBe(true);
  expect(s.lastLogVersion ?? 0, 'change log ends at the current version').toBe(s.version);
}

export function sum(values: Iterable<number>): number {
  let t = 0;
  for (const v of values) t += v;
  return t;
}

/** Distinct, valid player ids (as decimal strings) for a test. */
export function playerIds(n: number, base = 1_000_000): string[] {
  return Array.from({ length: n }, (_, i) => String(base + i));
}
