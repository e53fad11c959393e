import { Redis } from 'ioredis';
import { pino } from 'pino';
import { sql } from 'kysely';
import type { ShardSet } from '../../src/db/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import type { SettlementInput } from '../../src/settlement/index.js';
import { startCli, type CliProcess, type CliResult } from '../support/cli.js';
import { REDIS_URL, uniqueName } from '../support/env.js';

// The shared helpers, under the names this suite (and those importing it) always used.
export { createPlayers } from '../support/players.js';
export { writeMapFile } from '../support/maps.js';
export { waitFor } from '../support/wait.js';

export const silent = pino({ level: 'silent' });

export function redisOptions(): { host: string; port: number; db: number } {
  const u = new URL(REDIS_URL);
  return { host: u.hostname, port: Number(u.port || 6379), db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0 };
}

/** A key prefix (a plain name: shardline places the hash tags) no other test uses. */
export function testPrefix(): string {
  return uniqueName('slset');
}

/** Deletes every key under `prefix` (never FLUSHALL: other test files share this Redis). */
export async function deleteKeys(prefix: string): Promise<number> {
  const r = new Redis(redisOptions());
  try {
    let deleted = 0;
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) deleted += await r.del(...keys);
    } while (cursor !== '0');
    return deleted;
  } finally {
    r.disconnect();
  }
}

export async function countKeys(prefix: string): Promise<number> {
  const r = new Redis(redisOptions());
  try {
    let n = 0;
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      n += keys.length;
    } while (cursor !== '0');
    return n;
  } finally {
    r.disconnect();
  }
}

/** Players spread over every shard, interleaved: a match of n of them touches min(n, shards) shards. */
export function interleave(byShard: Map<string, PlayerId[]>): PlayerId[] {
  const lists = [...byShard.values()];
  const out: PlayerId[] = [];
  for (let k = 0; lists.some((l) => k < l.length); k++) for (const l of lists) if (k < l.length) out.push(l[k] as PlayerId);
  return out;
}

export function makeMatch(players: readonly PlayerId[], overrides: Partial<SettlementInput> = {}): SettlementInput {
  return {
    matchId: uniqueName('match'),
    gameId: 'chess',
    endedAt: new Date('2025-03-01T12:00:00.000Z'),
    results: players.map((playerId, i) => ({
      playerId: playerId.toString(),
      scoreDelta: i === 0 ? 25 : -10 + i,
      outcome: i === 0 ? 'win' : i % 3 === 0 ? 'draw' : 'loss',
    })),
    ...overrides,
  };
}

export interface ShardRows {
  inbox: number;
  claims: number;
  ledger: number;
  stats: number;
}

/** Settlement rows on every shard, summed. */
export async function countRows(shardSet: ShardSet, matchId?: string): Promise<ShardRows> {
  const total: ShardRows = { inbox: 0, claims: 0, ledger: 0, stats: 0 };
  for (const s of shardSet.shards) {
    const db = await shardSet.db(s.id);
    const where = matchId === undefined ? sql`true` : sql`match_id = ${matchId}`;
    const r = await sql<ShardRows>`
      SELECT (SELECT count(*)::int FROM settlement_inbox WHERE ${where}) AS inbox,
             (SELECT count(*)::int FROM settlement_inbox_claims WHERE ${where}) AS claims,
             (SELECT count(*)::int FROM settlement_ledger WHERE ${where}) AS ledger,
             (SELECT count(*)::int FROM player_stats) AS stats`.execute(db);
    const row = r.rows[0] as ShardRows;
    total.inbox += row.inbox;
    total.claims += row.claims;
    total.ledger += row.ledger;
    total.stats += row.stats;
  }
  return total;
}

/** Every player's (score, wins, losses, draws, games) for a game, by player id. */
export async function statsOf(shardSet: ShardSet, gameId: string): Promise<Map<string, [bigint, number, number, number, number]>> {
  const out = new Map<string, [bigint, number, number, number, number]>();
  for (const s of shardSet.shards) {
    const db = await shardSet.db(s.id);
    const rows = await db.selectFrom('player_stats').selectAll().where('game_id', '=', gameId).execute();
    for (const r of rows) out.set(r.player_id.toString(), [r.score, r.wins, r.losses, r.draws, r.games_played]);
  }
  return out;
}

/** What the stats must be after applying `matches` exactly once each. */
export function expectedStats(matches: readonly SettlementInput[]): Map<string, [bigint, number, number, number, number]> {
  const out = new Map<string, [bigint, number, number, number, number]>();
  for (const m of matches) {
    for (const r of m.results) {
      const k = r.playerId.toString();
      const s = out.get(k) ?? [0n, 0, 0, 0, 0];
      s[0] += BigInt(r.scoreDelta);
      switch (r.outcome) {
        case 'win':
          s[1]++;
          break;
        case 'loss':
          s[2]++;
          break;
        case 'draw':
          s[3]++;
          break;
        default: {
          const unhandled: never = r.outcome;
          throw new Error(`no expected stats for outcome ${String(unhandled)}`);
        }
      }
      s[4]++;
      out.set(k, s);
    }
  }
  return out;
}

/** Starts `shardline ...args` (the real bin) against the test Redis (see startCli). */
export function startShardline(args: readonly string[], timeoutMs = 60_000): CliProcess {
  return startCli(args, { env: { REDIS_URL }, timeoutMs });
}

export function shardline(args: readonly string[]): Promise<CliResult> {
  return startShardline(args).done;
}
