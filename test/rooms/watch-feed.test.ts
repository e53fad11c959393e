import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoomService, ValidationError, type ZoneEvent, type ZoneWatch } from '../../src/index.js';
import { legacyDirectoryKey, roomZoneKey } from '../../src/rooms/keys.js';
import { waitFor } from '../support/wait.js';
import { playerIds, roomsFixture, type RoomsFixture } from './helpers.js';

let f: RoomsFixture;
beforeAll(async () => {
  f = await roomsFixture();
});
afterAll(async () => {
  await f.cleanup();
});

async function connectionsNamed(name: string): Promise<number> {
  const list = (await f.client.client('LIST')) as string;
  return list.split('\n').filter((line) => line.includes(` name=${name} `)).length;
}

describe('the shared zone feed', () => {
  it('1,000 watchers of a zone hold one Redis connection and each receives every change, in order', async () => {
    const zone = 'feed-1k';
    const rooms = Array.from({ length: 5 }, (_, i) => ({ roomId: `f1k-${i}`, capacity: 100 }));
    await f.service.defineRooms(zone, rooms);
    const name = `${f.prefix}:watch:${zone}`;
    const watchers: ZoneWatch[] = Array.from({ length: 1000 }, () => f.service.watch(zone, { sweepMs: false }));
    const seen: ZoneEvent[][] = watchers.map(() => []);
    const changes = 300;
    let target = Infinity;
    const consumers = watchers.map(async (w, i) => {
      for await (const e of w) {
        seen[i]!.push(e);
        if (e.version >= target) break;
      }
    });
    await waitFor('every snapshot', async () => seen.every((s) => s.length >= 1));
    const start = Math.min(...seen.map((s) => s[0]!.version));
    // A storm of enters and moves from another service (another connection) while all watch.
    const [writer] = f.more(1);
    const players = playerIds(150, 4_000_000);
    for (let i = 0; i < changes; i++) await writer!.enter(rooms[i % rooms.length]!.roomId, players[i % players.length]!);
    const truth = await f.service.listRooms(zone);
    // Every watcher still open: all of them on one connection.
    expect(await connectionsNamed(name)).toBe(1);
    // One more change, the last each watcher waits for (set before it is written).
    target = truth.version + 1;
    await writer!.leave(rooms[0]!.roomId, players[0]!);
    await Promise.all(consumers);
    for (const events of seen) {
      const [snap, ...rest] = events;
      expect(snap?.type).toBe('snapshot');
      let v = snap!.version;
      for (const e of rest) {
        expect(e.type).toBe('change');
        expect(e.version).toBe(++v);
      }
      expect(v).toBeGreaterThanOrEqual(truth.version);
    }
    expect(truth.version - start).toBeGreaterThanOrEqual(150); // each watcher saw at least that many changes
    // The last watch to leave closes the feed's connection.
    await waitFor('the feed connection to close', async () => (await connectionsNamed(name)) === 0);
  }, 60_000);

  it('batches(): 1,000 watchers take the changes a batch at a time, every one in order, a snapshot first', async () => {
    const zone = 'feed-batches';
    await f.service.createRoom(zone, 'fbt', { capacity: 1000 });
    const watchers = Array.from({ length: 1000 }, () => f.service.watch(zone, { sweepMs: false }));
    const seen: number[][] = watchers.map(() => []);
    let target = Infinity;
    let snapshots = 0;
    const consumers = watchers.map(async (w, i) => {
      for await (const batch of w.batches()) {
        for (const e of batch) {
          if (e.type === 'snapshot') snapshots++;
          seen[i]!.push(e.version);
        }
        if ((seen[i]!.at(-1) ?? -1) >= target) break;
      }
    });
    await waitFor('every snapshot', async () => snapshots === 1000);
    const [writer] = f.more(1);
    const players = playerIds(200, 6_000_000);
    await Promise.all(players.map((p) => writer!.enter('fbt', p)));
    target = (await f.service.listRooms(zone)).version + 1;
    await writer!.leave('fbt', players[0]!);
    await Promise.all(consumers);
    for (const versions of seen) {
      expect(versions.length).toBeGreaterThanOrEqual(202);
      versions.forEach((v, k) => k > 0 && expect(v).toBe(versions[k - 1]! + 1));
      expect(versions.at(-1)).toBe(target);
    }
  }, 60_000);

  it('a watcher far behind the others reads the log itself, then joins the shared window', async () => {
    const zone = 'feed-behind';
    await f.service.createRoom(zone, 'fb', { capacity: 1000 });
    const { version } = await f.service.listRooms(zone);
    const ahead = f.service.watch(zone, { sweepMs: false });
    await ahead.next(); // snapshot
    for (const p of playerIds(50, 5_000_000)) await f.service.enter('fb', p);
    for (let i = 0; i < 50; i++) await ahead.next();
    // Starts 50 changes back: the window began after them, so it reads them from the log.
    const late = f.service.watch(zone, { fromVersion: version, sweepMs: false });
    const got: number[] = [];
    for (let i = 0; i < 50; i++) got.push((await late.next()).value!.version);
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => version + 1 + i));
    await f.service.leave('fb', '5000000');
    expect((await late.next()).value).toMatchObject({ type: 'change', version: version + 51, count: 49 });
    expect((await ahead.next()).value).toMatchObject({ type: 'change', version: version + 51 });
    late.close();
    ahead.close();
  });

  it('refuses a readFrom it does not know', async () => {
    await f.service.createRoom('feed-read', 'fr');
    await expect(f.service.listRooms('feed-read', { readFrom: 'nearest' as 'replica' })).rejects.toThrow(ValidationError);
    // One Redis and no replica connection: a replica read is the primary's answer.
    expect(await f.service.listRooms('feed-read', { readFrom: 'replica' })).toEqual(await f.service.listRooms('feed-read'));
  });

  it('a replica connection serves listRooms with readFrom replica (here the same server, read-only script)', async () => {
    const svc = new RoomService({ connection: f.client, prefix: f.prefix, replicaConnection: f.client.duplicate() });
    try {
      await svc.createRoom('feed-replica', 'frp', { capacity: 2 });
      await svc.enter('frp', '1');
      expect(await svc.listRooms('feed-replica', { readFrom: 'replica' })).toEqual(await svc.listRooms('feed-replica'));
    } finally {
      await svc.close();
    }
  });
});

describe('the room directory', () => {
  it('a room of the old directory hash keeps its zone: found, copied to its own key, and its id stays taken', async () => {
    await f.client.hset(legacyDirectoryKey(f.prefix), 'old-room', 'old-zone');
    const svc = new RoomService({ connection: f.client, prefix: f.prefix });
    try {
      expect(await svc.zoneOf('old-room')).toBe('old-zone');
      expect(await f.client.get(roomZoneKey(f.prefix, 'old-room'))).toBe('old-zone');
      await expect(svc.createRoom('other-zone', 'old-room')).rejects.toThrow(/already belongs to zone "old-zone"/);
      await svc.createRoom('old-zone', 'old-room', { capacity: 3 });
      expect((await svc.enter('old-room', '1')).zone).toBe('old-zone');
    } finally {
      await svc.close();
    }
    // A fresh id never in the old hash is claimed in its own key.
    await f.client.hset(legacyDirectoryKey(f.prefix), 'legacy-only', 'z-legacy');
    await expect(f.service.createRoom('z-new', 'legacy-only')).rejects.toThrow(ValidationError);
  });
});
