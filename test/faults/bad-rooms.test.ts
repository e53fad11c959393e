import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoomFullError, RoomService, UnknownRoomError, UnknownZoneError, ValidationError, ZoneFullError, type RoomDefinition } from '../../src/index.js';
import { assertInvariants, playerIds, readZone, roomsFixture, type RoomsFixture } from '../rooms/helpers.js';

/** Every key under the fixture's prefix with its serialized value: equal snapshots, nothing changed. */
async function snapshot(client: Redis, prefix: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const pattern of [`{${prefix}:*`, `${prefix}:*`]) {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) out[k] = (await client.dumpBuffer(k))?.toString('hex') ?? '(gone)';
    } while (cursor !== '0');
  }
  return out;
}

describe('bad room operations: a typed error and no trace', () => {
  let f: RoomsFixture;
  beforeAll(async () => {
    f = await roomsFixture();
    await f.service.defineRooms('z-bad', [
      { roomId: 'bad-a', capacity: 3 },
      { roomId: 'bad-b', capacity: 3 },
    ]);
    for (const p of playerIds(2, 7_000_000)) await f.service.enter('bad-a', p);
  });
  afterAll(async () => {
    await f?.cleanup();
  });

  const unchanged = async <T>(what: string, call: () => Promise<T>): Promise<unknown> => {
    const before = await snapshot(f.client, f.prefix);
    const err = await call().then(
      () => null,
      (e: unknown) => e,
    );
    expect(await snapshot(f.client, f.prefix), `${what} left a trace`).toEqual(before);
    return err;
  };

  it('unknown rooms: UnknownRoomError naming the room, for every operation, changing nothing', async () => {
    const [p] = playerIds(1, 7_000_000);
    const ops: [string, () => Promise<unknown>][] = [
      ['enter', () => f.service.enter('no-such-room', p!)],
      ['leave', () => f.service.leave('no-such-room', p!)],
      ['heartbeat', () => f.service.heartbeat('no-such-room', p!)],
      ['members', () => f.service.members('no-such-room')],
      ['zoneOf', () => f.service.zoneOf('no-such-room')],
    ];
    for (const [name, op] of ops) {
      const err = await unchanged(name, op);
      expect(err, name).toBeInstanceOf(UnknownRoomError);
      expect(err).toMatchObject({ code: 'UNKNOWN_ROOM', roomId: 'no-such-room' });
    }
    // A player seated in the zone who tries an unknown room keeps their seat.
    expect(await f.service.roomOf('z-bad', p!)).toBe('bad-a');
    // A zone nobody created is unknown, not full, and still nothing is written.
    const err = await unchanged('autoEnter', () => f.service.autoEnter('z-never-made', p!));
    expect(err).toBeInstanceOf(UnknownZoneError);
    expect(err).not.toBeInstanceOf(ZoneFullError);
    expect(err).toMatchObject({ code: 'UNKNOWN_ZONE', zone: 'z-never-made', known: null });
    expect((err as Error).message).toBe('unknown zone "z-never-made": no room was ever defined in it');
  });

  it('negative, zero and fractional capacities: ValidationError naming the field, no room created', async () => {
    for (const capacity of [-1, -400, 0, 2.5]) {
      const err = await unchanged(`capacity ${capacity}`, () => f.service.createRoom('z-bad', 'cap-room', { capacity }));
      expect(err).toBeInstanceOf(ValidationError);
      expect(err).toMatchObject({ code: 'VALIDATION_FAILED', field: 'capacity' });
    }
    // One bad room in a batch: none of the batch is created.
    const err = await unchanged('defineRooms', () => f.service.defineRooms('z-bad', [{ roomId: 'batch-ok' }, { roomId: 'batch-bad', capacity: -3 }]));
    expect(err).toMatchObject({ code: 'VALIDATION_FAILED', field: 'rooms.1.capacity' });
    await expect(f.service.zoneOf('batch-ok')).rejects.toBeInstanceOf(UnknownRoomError);
    // A batch naming a room of another zone, a room twice, or shrinking a full room: none of it is created.
    await f.service.createRoom('z-other', 'other-room');
    const batches: [RoomDefinition[], string][] = [
      [[{ roomId: 'batch-ok' }, { roomId: 'other-room' }], 'rooms.1.roomId'],
      [[{ roomId: 'batch-ok' }, { roomId: 'batch-ok' }], 'rooms.1.roomId'],
      [[{ roomId: 'batch-ok' }, { roomId: 'bad-a', capacity: 1 }], 'rooms.1.capacity'],
    ];
    for (const [batch, field] of batches) {
      const refused = await unchanged(`defineRooms ${field}`, () => f.service.defineRooms('z-bad', batch));
      expect(refused).toMatchObject({ code: 'VALIDATION_FAILED', field });
      await expect(f.service.zoneOf('batch-ok')).rejects.toBeInstanceOf(UnknownRoomError);
    }
    // Shrinking below the players seated is refused and leaves the room as it was.
    const shrink = await unchanged('shrink', () => f.service.createRoom('z-bad', 'bad-a', { capacity: 1 }));
    expect(shrink).toMatchObject({ code: 'VALIDATION_FAILED', field: 'capacity' });
    expect(() => new RoomService({ connection: f.client, defaultCapacity: -5 })).toThrow(
      expect.objectContaining({ code: 'VALIDATION_FAILED', field: 'defaultCapacity' }),
    );
    assertInvariants(await readZone(f.client, f.prefix, 'z-bad'));
  });

  it('a player entering several rooms of one zone at the same instant ends in exactly one', async () => {
    const zone = 'z-twice';
    const rooms = ['tw-0', 'tw-1', 'tw-2', 'tw-3'];
    await f.service.defineRooms(
      zone,
      rooms.map((roomId) => ({ roomId, capacity: 50 })),
    );
    const services = f.more(3);
    const players = playerIds(20, 8_000_000);
    // Every player into every room, from three connections, all at once.
    const calls = players.flatMap((p) => rooms.flatMap((r) => services.map((s) => s.enter(r, p))));
    const results = await Promise.allSettled(calls);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    const s = await readZone(f.client, f.prefix, zone);
    assertInvariants(s);
    expect(s.seat.size).toBe(players.length);
    for (const p of players) expect(rooms).toContain(await f.service.roomOf(zone, p));

    // One-seat rooms and more players than seats: at most one room each, never above capacity.
    const tight = 'z-tight';
    const small = ['ti-0', 'ti-1', 'ti-2'];
    await f.service.defineRooms(
      tight,
      small.map((roomId) => ({ roomId, capacity: 1 })),
    );
    const crowd = playerIds(6, 9_000_000);
    const tries = await Promise.allSettled(crowd.flatMap((p) => small.flatMap((r) => services.map((svc) => svc.enter(r, p)))));
    for (const r of tries) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(RoomFullError);
    const t = await readZone(f.client, f.prefix, tight);
    assertInvariants(t);
    expect(t.seat.size).toBeLessThanOrEqual(small.length);
    for (const room of small) expect(t.members.get(room)?.size ?? 0).toBeLessThanOrEqual(1);
  });
});
