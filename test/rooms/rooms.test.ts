import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RoomFullError,
  RoomService,
  Router,
  UnknownRoomError,
  UnknownZoneError,
  ValidationError,
  ZoneFullError,
  loadShardMap,
  parsePlayerId,
} from '../../src/index.js';
import { zoneKeys } from '../../src/rooms/keys.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { assertInvariants, deleteKeys, playerIds, readZone, redis, roomsFixture, sum, type RoomsFixture } from './helpers.js';

let f: RoomsFixture;
beforeAll(async () => {
  f = await roomsFixture();
});
afterAll(async () => {
  await f.cleanup();
});

async function check(zone: string): Promise<void> {
  assertInvariants(await readZone(f.client, f.prefix, zone));
}

describe('rooms: create and validate', () => {
  it('creates rooms with the default or a given capacity, idempotently', async () => {
    expect(await f.service.createRoom('z-create', 'r1')).toEqual({ zone: 'z-create', roomId: 'r1', count: 0, capacity: 400 });
    expect(await f.service.createRoom('z-create', 'r2', { capacity: 3 })).toMatchObject({ capacity: 3 });
    expect(await f.service.createRoom('z-create', 'r2', { capacity: 3 })).toMatchObject({ capacity: 3 });
    const infos = await f.service.defineRooms('z-create', [{ roomId: 'r3' }, { roomId: 'r4', capacity: 10 }]);
    expect(infos.map((i) => i.capacity)).toEqual([400, 10]);
    expect(await f.service.zoneOf('r4')).toBe('z-create');
    await check('z-create');
  });

  it.each([0, -1, 1.5, Number.NaN, 100_001, '10'])('refuses capacity %j with ValidationError', async (capacity) => {
    await expect(f.service.createRoom('z-create', 'bad-cap', { capacity: capacity as number })).rejects.toBeInstanceOf(ValidationError);
  });

  it.each(['', 'a b', 'x{y}', 'a:b', '-lead', 'x'.repeat(65), 'é'])('refuses room id %j', async (roomId) => {
    await expect(f.service.createRoom('z-create', roomId)).rejects.toBeInstanceOf(ValidationError);
    await expect(f.service.enter(roomId, '1')).rejects.toBeInstanceOf(ValidationError);
  });

  it.each(['', 'z}', '{z', 'a:b', 'a b'])('refuses zone name %j', async (zone) => {
    await expect(f.service.createRoom(zone, 'ok-room')).rejects.toBeInstanceOf(ValidationError);
    await expect(f.service.listRooms(zone)).rejects.toBeInstanceOf(ValidationError);
  });

  it('keeps room ids unique across zones', async () => {
    await f.service.createRoom('z-a', 'shared-id');
    const err = await f.service.createRoom('z-b', 'shared-id').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).message).toMatch(/belongs to zone "z-a"/);
  });

  it('refuses to shrink a room below its count, allows down to it', async () => {
    await f.service.createRoom('z-shrink', 'room', { capacity: 5 });
    for (const p of playerIds(3)) await f.service.enter('room', p);
    await expect(f.service.createRoom('z-shrink', 'room', { capacity: 2 })).rejects.toBeInstanceOf(ValidationError);
    expect(await f.service.createRoom('z-shrink', 'room', { capacity: 3 })).toMatchObject({ count: 3, capacity: 3 });
    await expect(f.service.enter('room', '42')).rejects.toBeInstanceOf(RoomFullError);
    await check('z-shrink');
  });

  it('builds, uses and closes its own client when given ioredis options', async () => {
    const url = new URL(REDIS_URL);
    const own = new RoomService({ connection: { host: url.hostname, port: Number(url.port || 6379) }, prefix: f.prefix });
    await own.createRoom('z-own', 'own-room', { capacity: 1 });
    expect(await own.enter('own-room', '5')).toMatchObject({ count: 1 });
    await own.close();
    await expect(own.listRooms('z-own')).rejects.toThrow(/closed/);
    // The shared client of the fixture sees the same state.
    expect((await f.service.listRooms('z-own')).rooms).toEqual([{ roomId: 'own-room', count: 1, capacity: 1 }]);
  });

  it('refuses a client with an ioredis keyPrefix', () => {
    const c = redis();
    try {
      expect(() => new RoomService({ connection: c.duplicate({ keyPrefix: 'x:', lazyConnect: true }) })).toThrow(ValidationError);
      expect(() => new RoomService({ connection: { keyPrefix: 'x:', lazyConnect: true } })).toThrow(ValidationError);
    } finally {
      c.disconnect();
    }
  });
});

describe('rooms: enter, leave, members', () => {
  it('seats, answers idempotently, refuses a full room with RoomFullError', async () => {
    await f.service.createRoom('z-enter', 'small', { capacity: 2 });
    const [a, b, c] = playerIds(3);
    const s1 = await f.service.enter('small', a!);
    expect(s1).toMatchObject({ zone: 'z-enter', roomId: 'small', count: 1, capacity: 2, alreadySeated: false, movedFrom: null });
    expect(s1.playerId).toBe(parsePlayerId(a!));
    const again = await f.service.enter('small', a!);
    expect(again).toMatchObject({ count: 1, alreadySeated: true });
    expect(again.leaseExpiresAt).toBeGreaterThanOrEqual(s1.leaseExpiresAt);
    await f.service.enter('small', b!);
    const err = await f.service.enter('small', c!).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RoomFullError);
    expect(err).toMatchObject({ code: 'ROOM_FULL', roomId: 'small', capacity: 2 });
    // A seated player re-entering a full room is still an idempotent success.
    expect(await f.service.enter('small', b!)).toMatchObject({ alreadySeated: true, count: 2 });
    expect(await f.service.members('small')).toEqual([a, b].map((x) => parsePlayerId(x!)));
    expect(await f.service.leave('small', a!)).toBe(true);
    expect(await f.service.leave('small', a!)).toBe(false);
    expect(await f.service.enter('small', c!)).toMatchObject({ count: 2 });
    await check('z-enter');
  });

  it('answers UnknownRoomError for rooms never created', async () => {
    await expect(f.service.enter('nope', '1')).rejects.toBeInstanceOf(UnknownRoomError);
    await expect(f.service.leave('nope', '1')).rejects.toBeInstanceOf(UnknownRoomError);
    await expect(f.service.members('nope')).rejects.toBeInstanceOf(UnknownRoomError);
    await expect(f.service.heartbeat('nope', '1')).rejects.toBeInstanceOf(UnknownRoomError);
  });

  it('validates player ids at the edge', async () => {
    await f.service.createRoom('z-enter', 'pid-room');
    await expect(f.service.enter('pid-room', 'abc')).rejects.toMatchObject({ code: 'INVALID_PLAYER_ID' });
    await expect(f.service.enter('pid-room', 12 as unknown as string)).rejects.toMatchObject({ code: 'INVALID_PLAYER_ID' });
  });

  it('moves a player between rooms of a zone in one step, and keeps rooms of other zones apart', async () => {
    await f.service.defineRooms('z-move', [{ roomId: 'm1' }, { roomId: 'm2', capacity: 1 }, { roomId: 'm3', capacity: 1 }]);
    await f.service.createRoom('z-other', 'o1');
    const [p, q] = playerIds(2, 5_000_000);
    await f.service.enter('m1', p!);
    await f.service.enter('o1', p!);
    const moved = await f.service.enter('m2', p!);
    expect(moved).toMatchObject({ roomId: 'm2', movedFrom: 'm1', count: 1 });
    expect(await f.service.members('m1')).toEqual([]);
    expect(await f.service.roomOf('z-move', p!)).toBe('m2');
    expect(await f.service.roomOf('z-other', p!)).toBe('o1');
    // A move into a full room fails and leaves the player where they were.
    await f.service.enter('m3', q!);
    await expect(f.service.enter('m3', p!)).rejects.toBeInstanceOf(RoomFullError);
    expect(await f.service.roomOf('z-move', p!)).toBe('m2');
    await check('z-move');
    await check('z-other');
  });
});

describe('zones: listRooms and autoEnter', () => {
  it('lists every room from the aggregate with a version', async () => {
    await f.service.defineRooms('z-list', [{ roomId: 'b' }, { roomId: 'a', capacity: 5 }]);
    const before = await f.service.listRooms('z-list');
    await f.service.enter('a', '77');
    const after = await f.service.refresh('z-list');
    expect(after.rooms).toEqual([
      { roomId: 'a', count: 1, capacity: 5 },
      { roomId: 'b', count: 0, capacity: 400 },
    ]);
    expect(after.version).toBe(before.version + 1);
    expect(await f.service.listRooms('z-empty')).toEqual({ type: 'snapshot', zone: 'z-empty', version: 0, rooms: [] });
  });

  it('autoEnter picks the fullest room with a seat, then says ZoneFullError', async () => {
    await f.service.defineRooms('z-auto', [
      { roomId: 'auto-a', capacity: 3 },
      { roomId: 'auto-b', capacity: 2 },
      { roomId: 'auto-c', capacity: 1 },
    ]);
    await f.service.enter('auto-a', '900');
    const ids = playerIds(5, 9_000_000);
    const seats = [];
    for (const id of ids) seats.push(await f.service.autoEnter('z-auto', id));
    // auto-a (1 seated) is fullest until full; then the two empty rooms, ties broken by id.
    expect(seats.map((s) => s.roomId)).toEqual(['auto-a', 'auto-a', 'auto-c', 'auto-b', 'auto-b']);
    expect(await f.service.autoEnter('z-auto', ids[0]!)).toMatchObject({ roomId: 'auto-a', alreadySeated: true });
    const err = await f.service.autoEnter('z-auto', '31337').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZoneFullError);
    expect(err).toMatchObject({ code: 'ZONE_FULL', zone: 'z-auto' });
    await f.service.leave('auto-b', ids[3]!);
    expect(await f.service.autoEnter('z-auto', '31337')).toMatchObject({ roomId: 'auto-b' });
    await check('z-auto');
  });

  it('autoEnter of a zone with no room is UnknownZoneError, not ZoneFullError, until a room is defined', async () => {
    const err = await f.service.autoEnter('z-later', '31338').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownZoneError);
    expect(err).toMatchObject({ code: 'UNKNOWN_ZONE', zone: 'z-later' });
    expect(await f.service.roomOf('z-later', '31338')).toBeNull();
    await f.service.createRoom('z-later', 'later-1', { capacity: 1 });
    expect(await f.service.autoEnter('z-later', '31338')).toMatchObject({ roomId: 'later-1', count: 1 });
    // The zone now exists: full is full.
    await expect(f.service.autoEnter('z-later', '31339')).rejects.toBeInstanceOf(ZoneFullError);
    await check('z-later');
  });

  it('autoEnter in a zone of thousands of rooms stays exact, and the listing stays compact', async () => {
    const rooms = Array.from({ length: 2000 }, (_, i) => ({ roomId: `big-${i}`, capacity: 2 }));
    await f.service.defineRooms('z-big', rooms);
    await f.service.enter('big-1234', '1');
    expect(await f.service.autoEnter('z-big', '2')).toMatchObject({ roomId: 'big-1234', count: 2 });
    const snap = await f.service.listRooms('z-big');
    expect(snap.rooms).toHaveLength(2000);
    expect(sum(snap.rooms.map((r) => r.count))).toBe(2);
    // Room id, count and capacity only: no member lists travel with the zone listing.
    expect(JSON.stringify(snap).length).toBeLessThan(2000 * 60);
    await check('z-big');
  });

  it('with a router, defines rooms only in the zones of the map, creating nothing otherwise', async () => {
    const router = new Router(await loadShardMap('shardmap/local.json'));
    const s = new RoomService({ connection: f.client, prefix: f.prefix, router });
    try {
      for (const call of [
        () => s.defineRooms('shenzen', [{ roomId: 'typo-1' }]),
        () => s.defineRooms('shenzen', []),
        () => s.createRoom('shenzen', 'typo-1'),
      ]) {
        const err = await call().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(UnknownZoneError);
        expect(err).toMatchObject({ code: 'UNKNOWN_ZONE', zone: 'shenzen', known: ['shenzhen', 'sichuan', 'north-america'] });
        expect((err as Error).message).toMatch(
          /^unknown zone "shenzen": the shard map has no region of that name \(its zones: shenzhen, sichuan, north-america\)$/,
        );
      }
      await expect(s.zoneOf('typo-1')).rejects.toBeInstanceOf(UnknownRoomError);
      expect(await f.client.exists(...(Object.values(zoneKeys(f.prefix, 'shenzen')) as string[]))).toBe(0);
      // An invalid name is still a ValidationError first.
      await expect(s.defineRooms('a:b', [])).rejects.toBeInstanceOf(ValidationError);
      expect(await s.defineRooms('sichuan', [{ roomId: 'sc-regional-1', capacity: 3 }])).toEqual([
        { zone: 'sichuan', roomId: 'sc-regional-1', count: 0, capacity: 3 },
      ]);
      // Without a router any valid name is a zone, as before.
      expect(await f.service.createRoom('shenzen', 'free-zone-1')).toMatchObject({ zone: 'shenzen' });
    } finally {
      await s.close();
    }
  });

  it("takes the map's prefix when given a router and no prefix option; the option wins", async () => {
    const base = await loadShardMap('shardmap/local.json');
    const mapPrefix = uniqueName('slroomsmap');
    const router = new Router({ ...base, prefix: mapPrefix });
    const fromMap = new RoomService({ connection: f.client, router });
    const overridden = new RoomService({ connection: f.client, router, prefix: f.prefix });
    const plain = new RoomService({ connection: f.client, router: new Router(base) });
    try {
      expect(fromMap.prefix).toBe(mapPrefix);
      expect(overridden.prefix).toBe(f.prefix);
      expect(plain.prefix).toBe('shardline');
      await fromMap.createRoom('shenzhen', 'map-prefixed-1', { capacity: 2 });
      expect(await f.client.hget(zoneKeys(mapPrefix, 'shenzhen').capacity, 'map-prefixed-1')).toBe('2');
      expect(await f.client.hget(zoneKeys(f.prefix, 'shenzhen').capacity, 'map-prefixed-1')).toBeNull();
      // A map built in code is held to the same prefix rule, naming where the prefix came from.
      expect(() => new RoomService({ connection: f.client, router: new Router({ ...base, prefix: '{x}' }) })).toThrow(/^router\.map\.prefix: /);
    } finally {
      await Promise.all([fromMap.close(), overridden.close(), plain.close()]);
      await deleteKeys(f.client, mapPrefix);
    }
  });

  it('gives each player the zone of its region', async () => {
    const router = new Router(await loadShardMap('shardmap/local.json'));
    const s = new RoomService({ connection: f.client, prefix: f.prefix, router });
    const id = router.newPlayerId('sichuan');
    expect(s.defaultZoneFor(id)).toBe('sichuan');
    expect(s.defaultZoneFor(router.newPlayerId('north-america').toString())).toBe('north-america');
    expect(s.zones).toEqual(['shenzhen', 'sichuan', 'north-america']);
    expect(() => f.service.defaultZoneFor(id)).toThrow(ValidationError);
    await s.close();
  });
});
