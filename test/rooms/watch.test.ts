import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RoomChange, ZoneEvent, ZoneWatch } from '../../src/index.js';
import { waitFor } from '../support/wait.js';
import { playerIds, roomsFixture, type RoomsFixture } from './helpers.js';

let f: RoomsFixture;
beforeAll(async () => {
  f = await roomsFixture();
});
afterAll(async () => {
  await f.cleanup();
});

async function take(w: ZoneWatch, n: number): Promise<ZoneEvent[]> {
  const out: ZoneEvent[] = [];
  while (out.length < n) {
    const r = await w.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

async function watchConnections(name: string): Promise<number> {
  const list = (await f.client.client('LIST')) as string;
  return list.split('\n').filter((line) => line.includes(` name=${name} `)).length;
}

describe('zone watch', () => {
  it('starts with a snapshot, then yields every change in version order', async () => {
    await f.service.defineRooms('w-basic', [{ roomId: 'wb-1', capacity: 2 }, { roomId: 'wb-2' }]);
    const w = f.service.watch('w-basic');
    try {
      const [snap] = await take(w, 1);
      expect(snap).toMatchObject({
        type: 'snapshot',
        zone: 'w-basic',
        rooms: [
          { roomId: 'wb-1', count: 0 },
          { roomId: 'wb-2', count: 0 },
        ],
      });
      const v0 = snap!.version;
      await f.service.enter('wb-1', '1');
      await f.service.enter('wb-1', '2');
      await f.service.enter('wb-2', '1'); // a move: two changes, one step
      const changes = await take(w, 4);
      expect(changes).toEqual([
        { type: 'change', zone: 'w-basic', roomId: 'wb-1', count: 1, capacity: 2, version: v0 + 1 },
        { type: 'change', zone: 'w-basic', roomId: 'wb-1', count: 2, capacity: 2, version: v0 + 2 },
        { type: 'change', zone: 'w-basic', roomId: 'wb-1', count: 1, capacity: 2, version: v0 + 3 },
        { type: 'change', zone: 'w-basic', roomId: 'wb-2', count: 1, capacity: 400, version: v0 + 4 },
      ]);
      expect(w.version).toBe(v0 + 4);
    } finally {
      w.close();
    }
  });

  it('resumes from a version without a snapshot while the log still reaches back', async () => {
    await f.service.createRoom('w-resume', 'wr');
    const { version } = await f.service.listRooms('w-resume');
    await f.service.enter('wr', '1');
    await f.service.enter('wr', '2');
    const w = f.service.watch('w-resume', { fromVersion: version });
    try {
      const events = await take(w, 2);
      expect(events.map((e) => [e.type, e.version])).toEqual([
        ['change', version + 1],
        ['change', version + 2],
      ]);
    } finally {
      w.close();
    }
  });

  it('a consumer that fell behind the trimmed log resynchronises from a snapshot', async () => {
    const [svc] = f.more(1, { changeLogLength: 10 });
    await svc!.createRoom('w-behind', 'wbh', { capacity: 1000 });
    const { version } = await svc!.listRooms('w-behind');
    // Far more changes than the log keeps (trimming is approximate: whole nodes of ~100 entries).
    for (const p of playerIds(400)) await svc!.enter('wbh', p);
    const w = svc!.watch('w-behind', { fromVersion: version });
    try {
      const [first] = await take(w, 1);
      expect(first).toMatchObject({ type: 'snapshot', rooms: [{ roomId: 'wbh', count: 400 }] });
      expect(first!.version).toBe(version + 400);
      await svc!.leave('wbh', '1000000');
      const [next] = await take(w, 1);
      expect(next).toMatchObject({ type: 'change', count: 399, version: version + 401 });
    } finally {
      w.close();
    }
    // A resume point from the future (e.g. the zone was reset) also gets a snapshot.
    const future = svc!.watch('w-behind', { fromVersion: version + 10_000 });
    expect((await take(future, 1))[0]).toMatchObject({ type: 'snapshot', version: version + 401 });
    future.close();
  });

  it('a mirror fed by watch ends equal to listRooms after a concurrent storm', async () => {
    const rooms = Array.from({ length: 6 }, (_, i) => ({ roomId: `wm-${i}`, capacity: 8 }));
    await f.service.defineRooms('w-mirror', rooms);
    const mirror = new Map<string, number>();
    let mirrorVersion = -1;
    const w = f.service.watch('w-mirror', { blockMs: 200 });
    const consumer = (async () => {
      for await (const e of w) {
        if (e.type === 'snapshot') {
          mirror.clear();
          for (const r of e.rooms) mirror.set(r.roomId, r.count);
        } else {
          expect(e.version).toBe(mirrorVersion + 1);
          mirror.set(e.roomId, e.count);
        }
        mirrorVersion = e.version;
      }
    })();
    const services = f.more(3);
    const players = playerIds(60, 7_000_000);
    await Promise.all(
      services.map(async (svc, k) => {
        for (let i = 0; i < 60; i++) {
          const p = players[(i * 7 + k * 13) % players.length]!;
          const room = rooms[(i + k) % rooms.length]!.roomId;
          if (i % 5 === 4) await svc.leave(room, p);
          else await svc.enter(room, p).catch(() => undefined);
        }
      }),
    );
    const truth = await f.service.listRooms('w-mirror');
    await waitFor('the mirror to catch up', async () => mirrorVersion >= truth.version);
    expect(mirrorVersion).toBe(truth.version);
    expect(Object.fromEntries(mirror)).toEqual(Object.fromEntries(truth.rooms.map((r) => [r.roomId, r.count])));
    w.close();
    await consumer;
  });

  it('closing the iterator releases its connection, even while it waits for changes', async () => {
    await f.service.createRoom('w-close', 'wc');
    const name = `${f.prefix}:watch:w-close`;
    const w = f.service.watch('w-close', { blockMs: 30_000 });
    await take(w, 1);
    const pending = w.next(); // blocked in XREAD on the server
    await waitFor('the watch connection', async () => (await watchConnections(name)) === 1);
    await w.return();
    expect(await pending).toEqual({ done: true, value: undefined });
    await waitFor('the watch connection to close', async () => (await watchConnections(name)) === 0);

    // `break` out of for-await releases it too.
    const w2 = f.service.watch('w-close');
    let seen: ZoneEvent | undefined;
    for await (const e of w2) {
      seen = e;
      break;
    }
    expect(seen?.type).toBe('snapshot');
    await waitFor('the watch connection to close', async () => (await watchConnections(name)) === 0);
  });

  it('change events carry room, count, capacity and version', async () => {
    await f.service.createRoom('w-shape', 'ws', { capacity: 3 });
    const w = f.service.watch('w-shape');
    try {
      await take(w, 1);
      await f.service.createRoom('w-shape', 'ws', { capacity: 5 });
      const [e] = (await take(w, 1)) as RoomChange[];
      expect(e).toMatchObject({ type: 'change', roomId: 'ws', count: 0, capacity: 5 });
    } finally {
      w.close();
    }
  });
});
