import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { sql } from 'kysely';
import type { ShardSet } from '../../src/db/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import type { SettlementInput } from '../../src/settlement/index.js';
import { REDIS_URL, uniqueName } from '../support/env.js';

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

/**
 * Inserts players straight into `players` (the Accounts API is built elsewhere), `perShard` on every
 * shard of the map. Returns them grouped by shard id.
 */
export async function createPlayers(shardSet: ShardSet, perShard: number): Promise<Map<string, PlayerId[]>> {
  const byShard = new Map<string, PlayerId[]>(shardSet.shards.map((s) => [s.id, []]));
  const regions = shardSet.router.regions;
  let i = 0;
  while ([...byShard.values()].some((l) => l.length < perShard)) {
    const region = regions[i++ % regions.length] as string;
    const id = shardSet.router.newPlayerId(region);
    const list = byShard.get(shardSet.router.shardFor(id).id) as PlayerId[];
    if (list.length < perShard) list.push(id);
  }
  for (const [shardId, ids] of byShard) {
    const db = await shardSet.db(shardId);
    const region = shardSet.router.shard(shardId).region;
    await db
      .insertInto('players')
      .values(ids.map((player_id, k) => ({ player_id, region, nickname: `p${k}` })))
      .execute();
  }
  return byShard;
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

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
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
      if (r.outcome === 'win') s[1]++;
      else if (r.outcome === 'loss') s[2]++;
      else s[3]++;
      s[4]++;
      out.set(k, s);
    }
  }
  return out;
}

/** Writes a map (e.g. TestShards.mapJson) to a temp file for subprocesses. */
export function writeMapFile(map: unknown): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'shardline-settle-'));
  const file = path.join(dir, 'map.json');
  writeFileSync(file, JSON.stringify(map));
  return file;
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `shardline ...args` (the real bin) and returns the child plus a promise of its end. */
export function startShardline(args: readonly string[], timeoutMs = 60_000): { child: ChildProcess; done: Promise<Run>; output: () => string } {
  const child = spawn(process.execPath, ['src/cli/bin.js', ...args], {
    env: { ...process.env, REDIS_URL, SHARDLINE_MAP: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done, output: () => stdout + stderr };
}

export function shardline(args: readonly string[]): Promise<Run> {
  return startShardline(args).done;
}
