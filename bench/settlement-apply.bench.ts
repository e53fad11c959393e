/**
 * The worker's apply alone (applyParts, src/settlement/apply.ts) on one shard, without Redis or
 * submitters: N pending parts are written to the inbox, then applied in batches of `--batch`, one
 * transaction at a time, beside the same ledger insert + stats upsert straight to Postgres in
 * transactions of the same size (the ceiling of bench/settlement.bench.ts, here per batch). Reports
 * wall time, this process's CPU and the shard backends' CPU (read from /proc: Postgres is local) per
 * result, and statements per batch (BEGIN and COMMIT included).
 *
 *   npx tsx bench/settlement-apply.bench.ts [--parts 2560] [--batch 64] [--players-per-part 4] [--boards]
 *   (or SHARDLINE_BENCH_APPLY_PARTS / SHARDLINE_BENCH_APPLY_BATCH / SHARDLINE_BENCH_APPLY_PART_SIZE / SHARDLINE_BENCH_APPLY_BOARDS=1)
 *
 * `--boards` defines a daily board on the game, so the boards' statements are measured too.
 * Databases are created on SHARDLINE_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)
 * under unique names and dropped at the end.
 */
import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { ShardMigrator, ShardSet, type PlayerId } from '../src/index.js';
import { applyParts } from '../src/settlement/apply.js';
import { writeParts, type PartRow } from '../src/settlement/inbox-store.js';
import { benchMap, cloneFromTemplate, countStatements, dropDatabases, option, round, runIfMain } from './support.js';
import type { BenchResult } from './types.js';

const GAME = 'apply';
const TICKS = 100; // clock ticks per second of /proc/<pid>/stat (USER_HZ on Linux)

/** CPU seconds (user + system) the given processes have used, from /proc; 0 for any not readable. */
function cpuOf(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the command name (which is in parentheses and may hold spaces): utime is the 12th, stime the 13th.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      /* not local, or gone */
    }
  }
  return ticks / TICKS;
}

const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function seedPlayers(pool: pg.Pool, count: number): Promise<PlayerId[]> {
  const r = await pool.query<{ id: bigint }>(
    `INSERT INTO players (player_id, region, nickname)
     SELECT shardline_player_id(g % 4096), 't', 'bench-' || g FROM generate_series(1, $1) g RETURNING player_id AS id`,
    [count],
  );
  return r.rows.map((row) => row.id as PlayerId);
}

function partsOf(prefix: string, players: readonly PlayerId[], count: number, size: number): PartRow[] {
  return Array.from({ length: count }, (_, i) => {
    const picked = new Set<string>();
    while (picked.size < size) picked.add(players[Math.floor(Math.random() * players.length)]!.toString());
    const ids = [...picked].sort((a, b) => a.length - b.length || (a < b ? -1 : 1));
    return {
      matchId: `${prefix}-${i.toString().padStart(6, '0')}`,
      contentHash: 'h'.repeat(64),
      gameId: GAME,
      endedAt: new Date(),
      results: ids.map((playerId, k) => ({ playerId, scoreDelta: k === 0 ? 25 : -5, outcome: k === 0 ? 'win' : 'loss' })),
      shardIds: ['s'],
    };
  });
}

interface Figures {
  wallUs: number;
  selfCpuUs: number;
  pgCpuUs: number;
  statementsPerBatch: number;
}

/** Runs `fn` over each batch in turn, with the figures per result. */
async function measure(
  pool: pg.Pool,
  counter: ReturnType<typeof countStatements>,
  batches: number,
  results: number,
  fn: (i: number) => Promise<void>,
): Promise<Figures> {
  const pids = async () => (await pool.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`)).rows.map((r) => r.pid);
  const backends = await pids();
  counter.reset();
  const pg0 = cpuOf(backends);
  const self0 = selfCpu();
  const t0 = performance.now();
  for (let i = 0; i < batches; i++) await fn(i);
  const wall = (performance.now() - t0) / 1000;
  const self = selfCpu() - self0;
  const pgCpu = cpuOf(backends) - pg0;
  const statements = counter.total();
  const per = (s: number) => round((s * 1e6) / results, 1);
  return { wallUs: per(wall), selfCpuUs: per(self), pgCpuUs: per(pgCpu), statementsPerBatch: round(statements / batches, 1) };
}

const LEDGER_SQL = `INSERT INTO settlement_ledger (match_id, player_id, game_id, score_delta, outcome, ended_at)
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[], $5::text[], $6::timestamptz[])
  ON CONFLICT (match_id, player_id) DO NOTHING RETURNING match_id, player_id`;
const STATS_SQL = `INSERT INTO player_stats AS s (player_id, game_id, score, wins, losses, draws, games_played, last_match_id)
  SELECT p, $2, d, w, l, 0, g, $5 FROM unnest($1::bigint[], $3::bigint[], $4::int[], $6::int[], $7::int[]) AS t(p, d, w, l, g)
  ON CONFLICT (player_id, game_id) DO UPDATE SET score = s.score + EXCLUDED.score, wins = s.wins + EXCLUDED.wins,
    losses = s.losses + EXCLUDED.losses, games_played = s.games_played + EXCLUDED.games_played,
    last_match_id = EXCLUDED.last_match_id, updated_at = now()`;

/** The ceiling: the batch's ledger rows and stats deltas straight to Postgres, one transaction. */
async function direct(pool: pg.Pool, parts: readonly PartRow[]): Promise<void> {
  const rows = parts.flatMap((p) => p.results.map((r) => ({ p, r })));
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query(LEDGER_SQL, [
      rows.map((x) => x.p.matchId),
      rows.map((x) => x.r.playerId),
      rows.map((x) => x.p.gameId),
      rows.map((x) => x.r.scoreDelta),
      rows.map((x) => x.r.outcome),
      rows.map((x) => x.p.endedAt),
    ]);
    const by = new Map<string, { d: number; w: number; l: number; g: number }>();
    for (const { r } of rows) {
      const s = by.get(r.playerId) ?? { d: 0, w: 0, l: 0, g: 0 };
      s.d += r.scoreDelta;
      if (r.outcome === 'win') s.w++;
      else s.l++;
      s.g++;
      by.set(r.playerId, s);
    }
    const ids = [...by.keys()].sort((a, b) => a.length - b.length || (a < b ? -1 : 1));
    await c.query(STATS_SQL, [
      ids,
      GAME,
      ids.map((id) => by.get(id)!.d),
      ids.map((id) => by.get(id)!.w),
      parts[parts.length - 1]!.matchId,
      ids.map((id) => by.get(id)!.l),
      ids.map((id) => by.get(id)!.g),
    ]);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

export async function run(): Promise<BenchResult[]> {
  const total = option('parts', 'SHARDLINE_BENCH_APPLY_PARTS', 2560);
  const batch = option('batch', 'SHARDLINE_BENCH_APPLY_BATCH', 64);
  const size = option('players-per-part', 'SHARDLINE_BENCH_APPLY_PART_SIZE', 4);
  const boards = process.argv.includes('--boards') || process.env.SHARDLINE_BENCH_APPLY_BOARDS === '1';
  const base = `slbench_apply_${process.pid}_${Date.now().toString(36)}`;
  const created: string[] = [];
  let set: ShardSet | undefined;
  try {
    await cloneFromTemplate(base, [`${base}_0`], created);
    const map = benchMap([{ id: 's', region: 't', db: `${base}_0`, buckets: '0-4095' }]);
    await new ShardMigrator(map.shards[0]!).latest();
    // One connection: the batches run one after another, so the figures are each statement's cost.
    set = new ShardSet(map, { poolMax: 1, applicationName: 'shardline-bench-apply' });
    const pool = set.pool('s');
    // The apply commits without waiting for fsync (see applyParts); the ceiling likewise, on this one connection.
    await pool.query(`SET synchronous_commit = off`);
    const players = await seedPlayers(pool, 4000);
    if (boards)
      await pool.query(`INSERT INTO leaderboard_boards (board_id, game_id, name, operator, period) VALUES ($1, $2, 'daily', 'sum', 'daily')`, [
        `${GAME}:daily`,
        GAME,
      ]);
    const counter = countStatements(set);
    const batches = Math.max(1, Math.floor(total / batch));
    const results = batches * batch * size;

    // Warm-up (connection, plans, caches), then the ceiling and the apply, twice each, alternately.
    const warm = partsOf('warm', players, batch * 4, size);
    await set.withShard('s', (db) => writeParts(db, warm));
    for (let i = 0; i < 4; i++)
      await set.withShard('s', (db) =>
        applyParts(
          db,
          warm.slice(i * batch, (i + 1) * batch).map((p) => p.matchId),
        ),
      );
    const runs: { apply: Figures; direct: Figures }[] = [];
    for (let round_ = 0; round_ < 2; round_++) {
      const parts = partsOf(`a${round_}`, players, batches * batch, size);
      for (let i = 0; i < parts.length; i += 500) await set.withShard('s', (db) => writeParts(db, parts.slice(i, i + 500)));
      const ids = parts.map((p) => p.matchId);
      const apply = await measure(pool, counter, batches, results, async (i) => {
        await set!.withShard('s', (db) => applyParts(db, ids.slice(i * batch, (i + 1) * batch)));
      });
      const ceilingParts = partsOf(`d${round_}`, players, batches * batch, size);
      const ceiling = await measure(pool, counter, batches, results, (i) => direct(pool, ceilingParts.slice(i * batch, (i + 1) * batch)));
      runs.push({ apply, direct: ceiling });
    }
    // The better of the two rounds of each: the figure least disturbed by other work on the machine.
    const best = (k: 'apply' | 'direct') => runs.map((r) => r[k]).reduce((a, b) => (b.wallUs < a.wallUs ? b : a));
    const apply = best('apply');
    const ceiling = best('direct');
    return [
      {
        name: `settlement apply: µs wall per result, batches of ${batch} parts × ${size} (1 shard, 1 connection${boards ? ', a daily board' : ''})`,
        unit: 'µs/result',
        value: apply.wallUs,
        baselineName: 'the same ledger insert + stats upsert straight to Postgres, one transaction per batch',
        baseline: ceiling.wallUs,
        ratio: round(ceiling.wallUs / apply.wallUs, 2),
        extra: {
          statementsPerBatch: apply.statementsPerBatch,
          baselineStatementsPerBatch: ceiling.statementsPerBatch,
          workerCpuUs: apply.selfCpuUs,
          postgresCpuUs: apply.pgCpuUs,
          baselineClientCpuUs: ceiling.selfCpuUs,
          baselinePostgresCpuUs: ceiling.pgCpuUs,
        },
      },
    ];
  } finally {
    await set?.close();
    await dropDatabases(created);
  }
}

runIfMain(import.meta.url, run);
