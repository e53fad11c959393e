import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoomFullError, ZoneFullError } from '../../src/index.js';
import { assertInvariants, readZone, roomsFixture, type RoomsFixture } from './helpers.js';

/**
 * Model-based check: random sequences of enter / leave / autoEnter / heartbeat against real Redis
 * must answer exactly what a plain in-memory model of the rules answers, and keep the invariants.
 */

let f: RoomsFixture;
beforeAll(async () => {
  f = await roomsFixture();
});
afterAll(async () => {
  await f.cleanup();
});

type Op =
  | { kind: 'enter'; room: number; player: number }
  | { kind: 'leave'; room: number; player: number }
  | { kind: 'auto'; player: number }
  | { kind: 'heartbeat'; room: number; player: number };

const ROOMS = 3;
const PLAYERS = 6;
const room = fc.integer({ min: 0, max: ROOMS - 1 });
const player = fc.integer({ min: 0, max: PLAYERS - 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('enter' as const), room, player }),
  fc.record({ kind: fc.constant('leave' as const), room, player }),
  fc.record({ kind: fc.constant('auto' as const), player }),
  fc.record({ kind: fc.constant('heartbeat' as const), room, player }),
);

let run = 0;

describe('rooms against a model', () => {
  it('property: every answer and every count matches the model', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 3 }), { minLength: ROOMS, maxLength: ROOMS }), fc.array(op, { maxLength: 30 }), async (caps, ops) => {
        run += 1;
        const zone = `model-${run}`;
        const ids = Array.from({ length: ROOMS }, (_, i) => `m${run}-${String.fromCharCode(97 + i)}`);
        await f.service.defineRooms(
          zone,
          ids.map((roomId, i) => ({ roomId, capacity: caps[i]! })),
        );
        const seat = new Map<number, number>();
        const count = (r: number): number => [...seat.values()].filter((x) => x === r).length;
        const pid = (p: number): string => String(100 + p);

        for (const o of ops) {
          if (o.kind === 'enter') {
            const got = await f.service.enter(ids[o.room]!, pid(o.player)).catch((e: unknown) => e);
            const cur = seat.get(o.player);
            if (cur === o.room) expect(got).toMatchObject({ alreadySeated: true, roomId: ids[o.room] });
            else if (count(o.room) >= caps[o.room]!) expect(got).toBeInstanceOf(RoomFullError);
            else {
              expect(got).toMatchObject({ alreadySeated: false, movedFrom: cur === undefined ? null : ids[cur], count: count(o.room) + 1 });
              seat.set(o.player, o.room);
            }
          } else if (o.kind === 'leave') {
            expect(await f.service.leave(ids[o.room]!, pid(o.player))).toBe(seat.get(o.player) === o.room);
            if (seat.get(o.player) === o.room) seat.delete(o.player);
          } else if (o.kind === 'heartbeat') {
            const got = await f.service.heartbeat(ids[o.room]!, pid(o.player));
            expect(got !== null).toBe(seat.get(o.player) === o.room);
          } else {
            const got = await f.service.autoEnter(zone, pid(o.player)).catch((e: unknown) => e);
            const cur = seat.get(o.player);
            if (cur !== undefined) {
              expect(got).toMatchObject({ alreadySeated: true, roomId: ids[cur] });
            } else {
              // Fullest room with a seat; ties go to the greatest room id (ZREVRANGE order).
              const open = ids.map((_, r) => r).filter((r) => count(r) < caps[r]!);
              open.sort((a, b) => count(b) - count(a) || b - a);
              if (open.length === 0) expect(got).toBeInstanceOf(ZoneFullError);
              else {
                expect(got).toMatchObject({ roomId: ids[open[0]!], alreadySeated: false });
                seat.set(o.player, open[0]!);
              }
            }
          }
        }
        const state = await readZone(f.client, f.prefix, zone);
        assertInvariants(state);
        const snap = await f.service.listRooms(zone);
        expect(snap.rooms.map((r) => r.count)).toEqual(ids.map((_, r) => count(r)));
      }),
      { numRuns: 40 },
    );
  });
});
