import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoomFullError, RoomService } from '../../src/index.js';
import { waitFor } from '../support/wait.js';
import { assertInvariants, playerIds, readZone, roomsFixture, type RoomsFixture } from './helpers.js';

const LEASE_MS = 400;

let f: RoomsFixture;
/** A second service on the same keys with a long lease: its players stay while the short ones lapse. */
let longLease: RoomService;
beforeAll(async () => {
  f = await roomsFixture({ leaseMs: LEASE_MS });
  longLease = f.more(1, { leaseMs: 60_000 })[0]!;
});
afterAll(async () => {
  await f.cleanup();
});

/** Waits until Redis' own clock (the one leases are measured on) has passed `ms`. */
async function redisTimePast(ms: number): Promise<void> {
  await waitFor("Redis' clock to pass the lease", async () => {
    const [s, us] = await f.client.time();
    return Number(s) * 1000 + Math.floor(Number(us) / 1000) > ms;
  });
}

describe('seat leases', () => {
  it('an expired lease frees the seat, and the zone counts follow', async () => {
    await f.service.createRoom('lease-a', 'la', { capacity: 2 });
    const [a, b, c] = playerIds(3);
    await f.service.enter('la', a!);
    const last = await f.service.enter('la', b!);
    await expect(f.service.enter('la', c!)).rejects.toBeInstanceOf(RoomFullError);
    await redisTimePast(last.leaseExpiresAt);
    // Nobody left: the leases lapsed. The next listing already shows it.
    const snap = await f.service.listRooms('lease-a');
    expect(snap.rooms).toEqual([{ roomId: 'la', count: 0, capacity: 2 }]);
    expect(await f.service.members('la')).toEqual([]);
    expect(await f.service.enter('la', c!)).toMatchObject({ count: 1, alreadySeated: false });
    assertInvariants(await readZone(f.client, f.prefix, 'lease-a'));
  });

  it('a heartbeat renews the lease; a lapsed lease is not revived', async () => {
    await f.service.createRoom('lease-b', 'lb');
    const [a, b] = playerIds(2, 2_000_000);
    const seatA = await longLease.enter('lb', a!);
    const seatB = await f.service.enter('lb', b!);
    const renewed = await longLease.heartbeat('lb', a!);
    expect(renewed).not.toBeNull();
    expect(renewed!).toBeGreaterThanOrEqual(seatA.leaseExpiresAt);
    expect((await readZone(f.client, f.prefix, 'lease-b')).leases.get(a!)).toBe(renewed);
    await redisTimePast(seatB.leaseExpiresAt);
    expect(await f.service.heartbeat('lb', b!)).toBeNull();
    expect(await f.service.members('lb')).toEqual([BigInt(a!)]);
    expect(await longLease.heartbeat('lb', a!)).not.toBeNull();
    assertInvariants(await readZone(f.client, f.prefix, 'lease-b'));
  });

  it('a client that keeps sending heartbeats keeps its seat while a silent one loses it', async () => {
    const svc = f.more(1, { leaseMs: 1500 })[0]!;
    await svc.createRoom('lease-c', 'lc');
    const [alive, silent] = playerIds(2, 3_000_000);
    await svc.enter('lc', alive!);
    await svc.enter('lc', silent!);
    await waitFor(
      'the silent player to lose the seat',
      async () => {
        expect(await svc.heartbeat('lc', alive!)).not.toBeNull();
        return !(await svc.members('lc')).some((id) => id === BigInt(silent!));
      },
      15_000,
      100,
    );
    expect(await svc.members('lc')).toEqual([BigInt(alive!)]);
  });

  it('reap() frees every expired seat of a zone in bounded batches', async () => {
    const rooms = ['rp-0', 'rp-1', 'rp-2', 'rp-3'];
    await f.service.defineRooms(
      'lease-d',
      rooms.map((roomId) => ({ roomId })),
    );
    const svc = f.more(1, { leaseMs: 2000 })[0]!;
    const ids = playerIds(1500, 4_000_000);
    const seats = await Promise.all(ids.map((p, i) => svc.enter(rooms[i % 4]!, p)));
    await longLease.enter('rp-0', '99');
    await redisTimePast(Math.max(...seats.map((s) => s.leaseExpiresAt)));
    // The raw state still counts the lapsed seats: nothing touched the zone since they lapsed.
    const lapsed = (await readZone(f.client, f.prefix, 'lease-d')).seat.size - 1;
    expect(lapsed).toBeGreaterThan(1000);
    expect(await svc.reap('lease-d')).toBe(lapsed);
    const s = await readZone(f.client, f.prefix, 'lease-d');
    assertInvariants(s);
    expect([...s.count.values()]).toEqual(rooms.map((r) => (r === 'rp-0' ? 1 : 0)));
    expect(await f.service.reap('lease-d')).toBe(0);
  });

  it('a sweeper keeps an idle zone counting right without any client call', async () => {
    await f.service.createRoom('lease-e', 'le');
    const seat = await f.service.enter('le', '7');
    const errors: unknown[] = [];
    const sweeper = f.service.startSweeper(['lease-e'], { intervalMs: 50, onError: (e) => errors.push(e) });
    try {
      await redisTimePast(seat.leaseExpiresAt);
      await waitFor('the sweeper to free the seat', async () => (await readZone(f.client, f.prefix, 'lease-e')).count.get('le') === 0);
      expect(sweeper.reaped).toBe(1);
      expect(errors).toEqual([]);
      assertInvariants(await readZone(f.client, f.prefix, 'lease-e'));
    } finally {
      await sweeper.stop();
    }
  });
});

describe('watching a zone', () => {
  it('reaps lapsed seats while the zone is watched, so a watcher sees a dead client leave', async () => {
    await f.service.createRoom('lease-w', 'lw');
    const w = f.service.watch('lease-w', { sweepMs: 50 });
    try {
      expect((await w.next()).value).toMatchObject({ type: 'snapshot' });
      await longLease.enter('lw', '8');
      await longLease.leave('lw', '8');
      // A client that enters and dies: after this, nothing but the watch's sweeper touches the zone.
      await f.service.enter('lw', '9');
      const counts: number[] = [];
      while (counts.length < 4) {
        const r = await w.next();
        if (!r.done && r.value.type === 'change') counts.push(r.value.count);
      }
      expect(counts).toEqual([1, 0, 1, 0]);
      assertInvariants(await readZone(f.client, f.prefix, 'lease-w'));
    } finally {
      w.close();
    }
  });
});
