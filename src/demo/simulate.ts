import type { Accounts } from '../accounts/index.js';
import { Table, type RoomService } from '../rooms/index.js';
import type { PlayerId } from '../routing/index.js';
import type { SettlementClient } from '../settlement/index.js';

export const DEMO_GAME = 'doudizhu';
const TABLE_SIZE = 3; // dou dizhu: one landlord against two farmers

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i] as T, i);
      }
    }),
  );
}

export interface Counters {
  created: number;
  /** Players who logged in by their username (found through the identity's shard). */
  loggedIn: number;
  seated: number;
  submitted: number;
  /** Sum of every score delta submitted (the consistency check compares the shards to it). */
  submittedDelta: bigint;
  submittedResults: number;
}

export async function createPlayers(accounts: Accounts, regions: readonly string[], count: number, c: Counters): Promise<PlayerId[]> {
  const ids: PlayerId[] = new Array<PlayerId>(count);
  await forEachLimit(
    Array.from({ length: count }, (_, i) => i),
    32,
    async (i) => {
      // Half the players in the first region, the rest spread over the others.
      const region = (i % 2 === 0 ? regions[0] : regions[1 + (Math.floor(i / 2) % Math.max(1, regions.length - 1))]) ?? regions[0]!;
      // Registered by a username, with a request id a retry would send again.
      const p = await accounts.createPlayer({
        region,
        nickname: `player-${i}`,
        identity: { provider: 'username', subject: usernameOf(i) },
        requestId: `register-${i}`,
      });
      ids[i] = p.id;
      c.created++;
    },
  );
  return ids;
}

export const usernameOf = (i: number) => `Player-${i}`;

/**
 * Every player logs in by their username, typed in another case (usernames are case-insensitive):
 * the id comes from the one shard the username's hash names, with no lookup service.
 */
export async function logIn(accounts: Accounts, count: number, c: Counters): Promise<(PlayerId | null)[]> {
  const ids = new Array<PlayerId | null>(count).fill(null);
  await forEachLimit(
    Array.from({ length: count }, (_, i) => i),
    32,
    async (i) => {
      ids[i] = await accounts.playerIdByIdentity({ provider: 'username', subject: usernameOf(i).toUpperCase() });
      if (ids[i] !== null) c.loggedIn++;
    },
  );
  return ids;
}

/** Each player auto-enters a room of their own region's zone (the fullest room with a free seat). */
export async function seatPlayers(rooms: RoomService, ids: readonly PlayerId[], c: Counters): Promise<Map<string, PlayerId[]>> {
  const byRoom = new Map<string, PlayerId[]>();
  await forEachLimit(ids, 64, async (id) => {
    const seat = await rooms.autoEnter(rooms.defaultZoneFor(id), id);
    const list = byRoom.get(seat.roomId) ?? [];
    list.push(id);
    byRoom.set(seat.roomId, list);
    c.seated++;
  });
  return byRoom;
}

/** Tables of three in random seated rooms; every game end goes through the settlement queue. */
export async function playMatches(
  settlement: SettlementClient,
  byRoom: ReadonlyMap<string, readonly PlayerId[]>,
  matches: number,
  run: { runId: string; gameId: string },
  c: Counters,
): Promise<void> {
  const rooms = [...byRoom.entries()].filter(([, m]) => m.length >= TABLE_SIZE);
  if (rooms.length === 0) throw new Error(`no room has ${TABLE_SIZE} players: use more --players`);
  await forEachLimit(
    Array.from({ length: matches }, (_, i) => i),
    24,
    async (m) => {
      const [roomId, members] = rooms[m % rooms.length]!;
      const players = pickDistinct(members, TABLE_SIZE);
      const table = new Table({ tableId: `${roomId}/t${m}`, gameId: run.gameId, settlement });
      for (const p of players) table.sit(p);
      const landlordWins = Math.random() < 0.45;
      const stake = 10 * (1 + Math.floor(Math.random() * 3));
      const results = players.map((playerId, seat) => {
        const landlord = seat === 0;
        const won = landlord === landlordWins;
        // Zero-sum stakes plus a 1-point win bonus, so the totals the consistency check compares are not trivially 0.
        const scoreDelta = (won ? 1 : -1) * (landlord ? 2 * stake : stake) + (won ? 1 : 0);
        return { playerId, scoreDelta, outcome: won ? ('win' as const) : ('loss' as const) };
      });
      await table.end({ matchId: `demo-${run.runId}-${m}`, results });
      c.submitted++;
      c.submittedResults += results.length;
      for (const r of results) c.submittedDelta += BigInt(r.scoreDelta);
    },
  );
}

function pickDistinct<T>(items: readonly T[], n: number): T[] {
  const picked = new Set<number>();
  while (picked.size < n) picked.add(Math.floor(Math.random() * items.length));
  return [...picked].map((i) => items[i] as T);
}
