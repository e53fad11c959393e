import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { sql } from 'kysely';
import { pino } from 'pino';
import type { ShardSet } from '../../../src/db/index.js';
import type { PlayerId } from '../../../src/routing/index.js';
import { queueNameFor, type SettlementInput } from '../../../src/settlement/index.js';
import { REDIS_URL, uniqueName } from '../../support/env.js';

export const silent = pino({ level: 'silent' });

/** Host, port and database of a Redis: fits ioredis and BullMQ connection options alike. */
export interface RedisAddress {
  host: string;
  port: number;
  db?: number;
}

/** The shared test Redis. */
export function sharedRedis(): RedisAddress {
  const u = new URL(REDIS_URL);
  return { host: u.hostname, port: Number(u.port || 6379), db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0 };
}

/** A key prefix (a plain name: shardline places the hash tags) of this test alone. */
export function faultPrefix(): string {
  return uniqueName('slfault');
}

async function scanKeys(redis: RedisAddress, pattern: string, fn: (r: Redis, keys: string[]) => Promise<void>): Promise<void> {
  const r = new Redis({ ...redis, maxRetriesPerRequest: 3 });
  r.on('error', () => undefined);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await fn(r, keys);
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
}

/** Keys under `prefix` (our own only; never FLUSHALL). */
export async function keysUnder(redis: RedisAddress, prefix: string): Promise<string[]> {
  const out: string[] = [];
  await scanKeys(redis, `${prefix}*`, async (_r, keys) => void out.push(...keys));
  return out.sort();
}

export async function deleteKeysUnder(redis: RedisAddress, prefix: string): Promise<void> {
  await scanKeys(redis, `${prefix}*`, async (r, keys) => void (await r.del(...keys)));
}

/** A small deterministic PRNG, so a failing run can be replayed from its seed. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A match of 2..maxPlayers distinct players drawn from `pool`, random deltas and outcomes. */
export function randomMatch(pool: readonly PlayerId[], gameId: string, rand: () => number, maxPlayers = 6, matchId = uniqueName('fm')): SettlementInput {
  const n = 2 + Math.floor(rand() * (maxPlayers - 1));
  const picked = new Set<PlayerId>();
  while (picked.size < Math.min(n, pool.length)) picked.add(pool[Math.floor(rand() * pool.length)] as PlayerId);
  const outcomes = ['win', 'loss', 'draw'] as const;
  return {
    matchId,
    gameId,
    endedAt: new Date(Date.UTC(2025, 2, 1) + Math.floor(rand() * 86_400_000)),
    results: [...picked].map((playerId) => ({
      playerId: playerId.toString(),
      scoreDelta: Math.floor(rand() * 200) - 100,
      outcome: outcomes[Math.floor(rand() * 3)] as (typeof outcomes)[number],
    })),
  };
}

type Stats = [bigint, number, number, number, number];

/**
 * Every way the shards can disagree with "each of `matches` applied exactly once, nothing else
 * applied in `gameId`": per match and shard, the ledger rows and the inbox state; per player, the
 * stats totals. Returns the discrepancies (empty when all holds), so a failure says what is wrong.
 */
export async function exactlyOnceProblems(shards: ShardSet, gameId: string, matches: readonly SettlementInput[]): Promise<string[]> {
  const problems: string[] = [];
  const expectedRows = new Map<string, number>(); // `${shard}\0${match}` -> players
  const expectedStats = new Map<string, Stats>();
  for (const m of matches) {
    for (const r of m.results) {
      const pid = BigInt(r.playerId.toString()) as PlayerId;
      const key = `${shards.router.shardFor(pid).id}\u0000${m.matchId}`;
      expectedRows.set(key, (expectedRows.get(key) ?? 0) + 1);
      const s = expectedStats.get(pid.toString()) ?? [0n, 0, 0, 0, 0];
      s[0] += BigInt(r.scoreDelta);
      s[r.outcome === 'win' ? 1 : r.outcome === 'loss' ? 2 : 3]++;
      s[4]++;
      expectedStats.set(pid.toString(), s);
    }
  }
  const seenRows = new Set<string>();
  for (const shard of shards.shards) {
    const db = await shards.db(shard.id);
    const ledger = await sql<{ match_id: string; n: number; distinct_players: number }>`
      SELECT match_id, count(*)::int AS n, count(DISTINCT player_id)::int AS distinct_players
      FROM settlement_ledger WHERE game_id = ${gameId} GROUP BY match_id`.execute(db);
    const inbox = await sql<{ match_id: string; status: string; last_error: string | null }>`
      SELECT match_id, status, last_error FROM settlement_inbox WHERE game_id = ${gameId}`.execute(db);
    const inboxBy = new Map(inbox.rows.map((r) => [r.match_id, r]));
    for (const row of ledger.rows) {
      const key = `${shard.id}\u0000${row.match_id}`;
      seenRows.add(key);
      const want = expectedRows.get(key);
      if (want === undefined) problems.push(`${shard.id}: ledger holds match ${row.match_id}, which was never accepted`);
      else if (row.n !== want || row.distinct_players !== want) problems.push(`${shard.id}: match ${row.match_id} has ${row.n} ledger rows, expected ${want}`);
    }
    for (const [key, want] of expectedRows) {
      const [sid, matchId] = key.split('\u0000') as [string, string];
      if (sid !== shard.id) continue;
      if (!seenRows.has(key)) problems.push(`${sid}: match ${matchId} not applied (0 of ${want} ledger rows)`);
      const ib = inboxBy.get(matchId);
      if (ib?.status !== 'applied') problems.push(`${sid}: inbox of ${matchId} is ${ib ? `${ib.status} (${ib.last_error ?? ''})` : 'missing'}`);
    }
    const stats = await db.selectFrom('player_stats').selectAll().where('game_id', '=', gameId).execute();
    for (const s of stats) {
      const want = expectedStats.get(s.player_id.toString());
      const got: Stats = [s.score, s.wins, s.losses, s.draws, s.games_played];
      if (!want) problems.push(`${shard.id}: stats for player ${s.player_id} in a game none of the accepted matches gave them`);
      else if (got.join() !== want.join()) problems.push(`${shard.id}: stats of ${s.player_id} are ${got.join('/')}, expected ${want.join('/')}`);
      expectedStats.delete(s.player_id.toString());
    }
  }
  for (const p of expectedStats.keys()) {
    const onShard = shards.router.shardFor(BigInt(p) as PlayerId).id;
    problems.push(`${onShard}: no stats row for player ${p}`);
  }
  return problems;
}

export interface QueueCounts {
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  completed: number;
  prioritized: number;
}

/** BullMQ job counts of every shard queue under `prefix`, summed. */
export async function queueCounts(redis: RedisAddress, prefix: string, shardIds: readonly string[]): Promise<QueueCounts> {
  const total: QueueCounts = { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0, prioritized: 0 };
  for (const id of shardIds) {
    const q = new Queue(queueNameFor(id), { connection: redis, prefix });
    try {
      const c = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized');
      for (const k of Object.keys(total) as (keyof QueueCounts)[]) total[k] += c[k] ?? 0;
    } finally {
      await q.close();
    }
  }
  return total;
}

/** Settlement rows (inbox, claims, ledger) of one match on every shard. */
export async function rowsOfMatch(shards: ShardSet, matchId: string): Promise<number> {
  let n = 0;
  for (const s of shards.shards) {
    const db = await shards.db(s.id);
    const r = await sql<{ n: number }>`
      SELECT (SELECT count(*) FROM settlement_inbox WHERE match_id = ${matchId})
           + (SELECT count(*) FROM settlement_inbox_claims WHERE match_id = ${matchId})
           + (SELECT count(*) FROM settlement_ledger WHERE match_id = ${matchId}) AS n`.execute(db);
    n += Number(r.rows[0]?.n ?? 0);
  }
  return n;
}
