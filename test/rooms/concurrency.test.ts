import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoomFullError, ZoneFullError, type RoomService } from '../../src/index.js';
import { REDIS_URL } from '../support/env.js';
import { startGoWorker } from '../support/go-worker.js';
import { assertInvariants, playerIds, readZone, roomsFixture, sum, type RoomsFixture, type ZoneState } from './helpers.js';

let f: RoomsFixture;
let services: RoomService[];
beforeAll(async () => {
  f = await roomsFixture();
  services = f.more(4);
});
afterAll(async () => {
  await f.cleanup();
});

/** Reads the zone atomically in a loop while `work` runs, checking the invariants at every read. */
async function observe<T>(zone: string, work: Promise<T>, each?: (s: ZoneState) => void): Promise<{ result: T; reads: number }> {
  let done = false;
  let reads = 0;
  const watcher = (async () => {
    while (!done) {
      const s = await readZone(f.client, f.prefix, zone);
      assertInvariants(s);
      each?.(s);
      reads += 1;
    }
  })();
  let result: T;
  try {
    result = await work;
  } finally {
    done = true;
    await watcher;
  }
  return { result, reads };
}

interface WorkerResult {
  ok: number;
  full: number;
  seated: string[];
}

/** Starts an enter-worker process; resolves its `go` once it is connected and waiting. */
function startWorker(rooms: string[], first: number, count: number): Promise<{ go(): Promise<WorkerResult> }> {
  const file = fileURLToPath(new URL('./enter-worker.ts', import.meta.url));
  return startGoWorker<WorkerResult>(file, [REDIS_URL, f.prefix, rooms.join(','), String(first), String(count)]);
}

describe('concurrency on real Redis', () => {
  it('2,000 concurrent enters from several connections and processes never overfill a room', async () => {
    const zone = 'storm';
    const rooms = Array.from({ length: 20 }, (_, i) => `storm-${i}`);
    await f.service.defineRooms(
      zone,
      rooms.map((roomId) => ({ roomId, capacity: 30 })),
    );
    // Prefill to 26 of 30: 4 seats left per room, 80 in all.
    await Promise.all(rooms.flatMap((r, i) => playerIds(26, 10_000_000 + i * 100).map((p) => f.service.enter(r, p))));
    const seatsLeft = sum((await f.service.listRooms(zone)).rooms.map((r) => r.capacity - r.count));
    expect(seatsLeft).toBe(80);

    const workers = await Promise.all([startWorker(rooms, 30_000_000, 250), startWorker(rooms, 31_000_000, 250)]);
    const inProcess = playerIds(1500, 20_000_000);
    const { result, reads } = await observe(
      zone,
      (async () => {
        const fromWorkers = Promise.all(workers.map((w) => w.go()));
        const local = await Promise.allSettled(
          inProcess.map((p) => services[Number(BigInt(p) % 4n)]!.enter(rooms[Math.floor(Math.random() * rooms.length)]!, p)),
        );
        return { local, workers: await fromWorkers };
      })(),
    );
    const localOk = result.local.filter((r) => r.status === 'fulfilled').length;
    for (const r of result.local) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(RoomFullError);
    const workerOk = sum(result.workers.map((w) => w.ok));
    for (const w of result.workers) expect(w.ok + w.full).toBe(250);
    expect(localOk + workerOk, 'successes equal the free seats').toBe(seatsLeft);
    expect(reads).toBeGreaterThan(0);

    const s = await readZone(f.client, f.prefix, zone);
    assertInvariants(s);
    for (const r of rooms) expect(s.members.get(r)?.size).toBe(30);
    const snap = await f.service.listRooms(zone);
    expect(sum(snap.rooms.map((r) => r.count)), 'zone aggregate equals the sum of room sizes').toBe(sum([...s.members.values()].map((m) => m.size)));
    expect(await f.service.autoEnter(zone, '1').catch((e: unknown) => e)).toBeInstanceOf(ZoneFullError);
  });

  it('concurrent autoEnters fill every seat exactly once, then answer ZoneFullError', async () => {
    const zone = 'auto-storm';
    const rooms = Array.from({ length: 10 }, (_, i) => ({ roomId: `as-${i}`, capacity: 40 + i }));
    await f.service.defineRooms(zone, rooms);
    const seats = sum(rooms.map((r) => r.capacity));
    const ids = playerIds(seats + 300, 40_000_000);
    const results = await Promise.allSettled(ids.map((p, i) => services[i % 4]!.autoEnter(zone, p)));
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ZoneFullError);
    expect(ok).toBe(seats);
    assertInvariants(await readZone(f.client, f.prefix, zone));
  });

  it('moves between rooms never seat a player twice nor lose them in between', async () => {
    const zone = 'moves';
    const rooms = Array.from({ length: 5 }, (_, i) => `mv-${i}`);
    await f.service.defineRooms(
      zone,
      rooms.map((roomId) => ({ roomId, capacity: 12 })),
    );
    const players = playerIds(40, 50_000_000);
    await Promise.all(players.map((p, i) => f.service.enter(rooms[i % rooms.length]!, p)));

    const { reads } = await observe(
      zone,
      Promise.all(
        services.map(async (svc, k) => {
          for (let round = 0; round < 10; round++) {
            await Promise.allSettled(
              players.map((p, i) =>
                svc.enter(rooms[(i + round + k) % rooms.length]!, p).catch((e: unknown) => {
                  if (!(e instanceof RoomFullError)) throw e;
                }),
              ),
            );
          }
        }),
      ),
      (s) => {
        // Nobody leaves in this test: every player holds exactly one seat at every instant.
        expect(s.seat.size).toBe(players.length);
        expect(sum([...s.members.values()].map((m) => m.size))).toBe(players.length);
      },
    );
    expect(reads).toBeGreaterThan(0);
    const s = await readZone(f.client, f.prefix, zone);
    assertInvariants(s);
    expect(s.seat.size).toBe(players.length);
  });
});
