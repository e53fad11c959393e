import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoomFullError, RoomService, type ZoneEvent } from '../../src/index.js';
import { roomZoneKey, zoneKeys } from '../../src/rooms/keys.js';
import { uniqueName } from '../support/env.js';
import { sleep, waitFor } from '../support/wait.js';
import { assertInvariants, playerIds, readZone } from '../rooms/helpers.js';
import { startLocalCluster, type LocalCluster } from './local-cluster.js';

let cluster: LocalCluster;
let prefix: string;
let client: Cluster;
let service: RoomService;

beforeAll(async () => {
  cluster = await startLocalCluster();
  prefix = uniqueName('slcrooms');
  client = cluster.client();
  service = new RoomService({ connection: client, prefix });
}, 60_000);

afterAll(async () => {
  await service?.close();
  await cluster?.stop();
});

/** readZone's MULTI on a Cluster: every key it reads is in the zone's slot. */
const zoneState = (zone: string) => readZone(client as unknown as Redis, prefix, zone);

describe('rooms on a real Redis Cluster (three masters, one replica each)', () => {
  it('keeps each zone on one slot, spreads zones over the masters, and gives every room its own directory slot', async () => {
    const zones = Array.from({ length: 12 }, (_, i) => `cz-${i}`);
    for (const z of zones) await service.createRoom(z, `${z}-r`, { capacity: 5 });
    const masters = new Set<number>();
    for (const z of zones) {
      const k = zoneKeys(prefix, z);
      const m = await cluster.masterOf(k.capacity);
      for (const key of [k.count, k.open, k.seatOf, k.leases, k.version, k.changes, `${k.members}${z}-r`]) expect(await cluster.masterOf(key)).toBe(m);
      masters.add(m);
      expect(await client.get(roomZoneKey(prefix, `${z}-r`))).toBe(z);
    }
    expect(masters.size).toBeGreaterThan(1);
    // The room's zone is found from its id alone (one GET in its own slot).
    const fresh = new RoomService({ connection: client, prefix });
    try {
      expect(await fresh.zoneOf('cz-3-r')).toBe('cz-3');
      expect((await fresh.enter('cz-3-r', '1000001')).roomId).toBe('cz-3-r');
    } finally {
      await fresh.close();
    }
  });

  it('never overfills a room under concurrent enters and moves from several cluster clients', async () => {
    const zone = 'c-storm';
    const rooms = Array.from({ length: 10 }, (_, i) => ({ roomId: `cs-${i}`, capacity: 20 }));
    await service.defineRooms(zone, rooms);
    const services = Array.from({ length: 4 }, () => new RoomService({ connection: cluster.client(), prefix }));
    const players = playerIds(300, 2_000_000);
    let ok = 0;
    let full = 0;
    try {
      await Promise.all(
        services.map(async (svc, k) => {
          for (let i = 0; i < 150; i++) {
            const p = players[(i * 4 + k) % players.length]!;
            // The same players enter several rooms in turn: every second enter of a player is a move.
            const room = rooms[(i + k * 3) % rooms.length]!.roomId;
            try {
              await svc.enter(room, p);
              ok++;
            } catch (err) {
              expect(err).toBeInstanceOf(RoomFullError);
              full++;
            }
          }
        }),
      );
    } finally {
      await Promise.all(services.map((s) => s.close()));
    }
    expect(ok + full).toBe(600);
    const s = await zoneState(zone);
    assertInvariants(s);
    for (const r of rooms) expect(s.members.get(r.roomId)?.size ?? 0).toBeLessThanOrEqual(20);
    expect(s.seat.size).toBe(200); // 300 players for 200 seats: every seat taken, nobody twice
  });

  it('watches a zone through one connection and lists rooms from a replica (READONLY) when the caller accepts it', async () => {
    const zone = 'c-watch';
    await service.defineRooms(zone, [{ roomId: 'cw-1', capacity: 3 }]);
    const w = service.watch(zone, { blockMs: 500 });
    const events: ZoneEvent[] = [];
    const reading = (async () => {
      for await (const e of w) {
        events.push(e);
        if (events.length === 4) break;
      }
    })();
    await waitFor('the snapshot', async () => events.length >= 1);
    for (const p of ['1', '2', '3']) await service.enter('cw-1', p);
    await reading;
    expect(events.map((e) => (e.type === 'change' ? e.count : 'snapshot'))).toEqual(['snapshot', 1, 2, 3]);

    const master = await cluster.masterOf(zoneKeys(prefix, zone).capacity);
    const [replica] = await cluster.replicasOf(master);
    const evalsOn = async (port: number) => {
      const stats = await cluster.node(port).info('commandstats');
      return Number(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1] ?? 0) + Number(/cmdstat_eval:calls=(\d+)/.exec(stats)?.[1] ?? 0);
    };
    const before = await evalsOn(replica!);
    const truth = await service.listRooms(zone);
    const copy = await waitFor('the replica to catch up', async () => {
      const snap = await service.listRooms(zone, { readFrom: 'replica' });
      return snap.version === truth.version ? snap : null;
    });
    expect(copy).toEqual(truth);
    // Served by the replica: its script calls grow (ioredis learns a replica with the slot map, so
    // a replica that was still syncing when the map was read is used from its next refresh on).
    await waitFor(
      'a replica read on the replica',
      async () => {
        await service.listRooms(zone, { readFrom: 'replica' });
        return (await evalsOn(replica!)) > before;
      },
      30_000,
      250,
    );
  });

  it('a master killed during room entries: its replica takes over and no room is above capacity', async () => {
    const zone = 'c-failover';
    const rooms = Array.from({ length: 8 }, (_, i) => ({ roomId: `cf-${i}`, capacity: 25 }));
    await service.defineRooms(zone, rooms);
    const master = await cluster.masterOf(zoneKeys(prefix, zone).capacity);
    const services = Array.from({ length: 3 }, () => new RoomService({ connection: cluster.client(), prefix }));
    const players = playerIds(400, 3_000_000);
    let stop = false;
    let seated = 0;
    let inFlight = 0;
    let inFlightAtKill: number | undefined;
    // A mirror of the zone fed by a watch, across the failover: changes the old master acknowledged
    // may be gone from the new one, so the watch must resync rather than take reused versions.
    const mirror = new Map<string, number>();
    let mirrorVersion = -1;
    const w = service.watch(zone, { blockMs: 500 });
    const mirroring = (async () => {
      for await (const batch of w.batches()) {
        for (const e of batch) {
          if (e.type === 'snapshot') {
            mirror.clear();
            for (const r of e.rooms) mirror.set(r.roomId, r.count);
          } else mirror.set(e.roomId, e.count);
          mirrorVersion = e.version;
        }
      }
    })();
    const loops = services.map(async (svc, k) => {
      for (let i = 0; !stop; i++) {
        const p = players[(i * 3 + k) % players.length]!;
        inFlight++;
        try {
          await svc.enter(rooms[(i + k) % rooms.length]!.roomId, p);
          seated++;
        } catch (err) {
          if (!(err instanceof RoomFullError)) await sleep(50);
        } finally {
          inFlight--;
        }
      }
    });
    try {
      await waitFor('entries before the failover', async () => seated >= 50);
      inFlightAtKill = inFlight;
      await cluster.kill(master);
      await cluster.waitHealthy();
      const after = seated;
      await waitFor('entries after the failover', async () => seated >= after + 50, 30_000);
    } finally {
      stop = true;
      await Promise.all(loops);
      await Promise.all(services.map((s) => s.close()));
    }
    expect(await cluster.masterOf(zoneKeys(prefix, zone).capacity)).not.toBe(master);
    const s = await zoneState(zone);
    assertInvariants(s);
    for (const r of rooms) expect(s.members.get(r.roomId)?.size ?? 0).toBeLessThanOrEqual(r.capacity);
    // The entries did run into the failover. Whether one of them surfaces an error depends on whether
    // ioredis's own retry on CLUSTERDOWN/MOVED outlasts the election, so count the entries in flight.
    expect(inFlightAtKill).toBeGreaterThan(0);
    const truth = await service.listRooms(zone);
    await waitFor('the watch to follow the new master', async () => mirrorVersion === truth.version, 30_000);
    expect(Object.fromEntries(mirror)).toEqual(Object.fromEntries(truth.rooms.map((r) => [r.roomId, r.count])));
    w.close();
    await mirroring;
  }, 180_000);
});
