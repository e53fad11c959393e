/**
 * topScores(limit 100) over N players on 4 shards, beside the same query on one unsharded
 * database holding the very same rows, measured alternately in the same run. rankOf of the median
 * and of the bottom player (per-range counts, migration 0012) beside the COUNT of the players ahead
 * on the unsharded table (what rankOf did before; issue 17: aim >= 10x), around (5 above, 5 below),
 * and settlement throughput (the worker, applying queued matches) of a game with three boards
 * beside a game with one (aim >= 0.8x).
 *
 *   npx tsx bench/leaderboard.bench.ts [--players 1000000] [--iterations 300] [--matches 400]
 *   (or SHARDLINE_BENCH_PLAYERS / SHARDLINE_BENCH_ITERATIONS / SHARDLINE_BENCH_MATCHES)
 *
 * Databases are created on SHARDLINE_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)
 * under unique names and dropped at the end.
 */
import { loadavg } from 'node:os';
import { Redis } from 'ioredis';
import pg from 'pg';
import { pino } from 'pino';
import { Leaderboards, ShardMigrator, ShardSet, type PlayerId, type ShardSpec } from '../src/index.js';
import { SettlementClient, SettlementWorker, redisOptionsFromUrl, type SettlementInput } from '../src/settlement/index.js';
import { BENCH_LAYOUT, benchMap, cloneFromTemplate, countStatements, dropDatabases, option, percentile, round, runIfMain } from './support.js';
import type { BenchResult } from './types.js';

const GAME = 'bench';
const LIMIT = 100;
const REDIS_URL = process.env.SHARDLINE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Worker settings of the throughput part (as bench/settlement.bench.ts). */
const WORKER = { concurrency: 256, batchSize: 64, lingerMs: 2, maxInFlightBatches: 4 };

/** The id of seeded player `g` of shard `s` (the formula of seedRows). */
function seededId(s: ShardSpec, g: number, baseMs: number): PlayerId {
  const [lo, hi] = s.buckets[0]!;
  const h = hi - lo + 1;
  return (((BigInt(baseMs) + BigInt(Math.floor(g / h / 1024))) << 22n) | (BigInt(lo + (g % h)) << 10n) | BigInt(Math.floor(g / h) % 1024)) as PlayerId;
}

async function seedRows(db: pg.ClientBase, s: ShardSpec, count: number, baseMs: number, boards: boolean): Promise<void> {
  const [lo, hi] = s.buckets[0]!;
  await db.query(`SET session_replication_role = replica`);
  await db.query(
    `WITH p AS (
       INSERT INTO players (player_id, region, nickname)
       SELECT (($1::bigint + g / $3 / 1024) << 22) | (($2::bigint + g % $3) << 10) | ((g / $3) % 1024), $4, 'player ' || g
       FROM generate_series(0, $5 - 1) AS g
       RETURNING player_id)
     INSERT INTO player_stats (player_id, game_id, score, wins, games_played)
     SELECT player_id, $6, (hashint8(player_id)::bigint + 2147483648) % 1000000, 1, 1 FROM p`,
    [baseMs, lo, hi - lo + 1, s.region, count, GAME],
  );
  // The plain board's mirror rows, as the player_stats triggers (off here) would have written them.
  if (boards) {
    await db.query(
      `INSERT INTO leaderboard_scores (player_id, board_id, period, score, active, last_match_id)
       SELECT player_id, game_id, '', score, true, last_match_id FROM player_stats`,
    );
  }
  await db.query(`RESET session_replication_role`);
}

/**
 * Seeds with the secondary indexes (the leaderboard index among them) dropped, then rebuilds them
 * from their own definitions: one sort instead of a million random index insertions.
 */
async function seed(db: pg.ClientBase, shards: readonly ShardSpec[], count: number, baseMs: number, boards: boolean): Promise<void> {
  await db.query('SET statement_timeout = 0'); // a million rows on a loaded machine outlast the pool's default
  const idx = await db.query<{ name: string; def: string }>(
    `SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
     FROM pg_index i WHERE i.indrelid IN ('players'::regclass, 'player_stats'::regclass, 'leaderboard_scores'::regclass)
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)`,
  );
  for (const { name } of idx.rows) await db.query(`DROP INDEX ${name}`);
  for (const s of shards) await seedRows(db, s, count, baseMs, boards);
  for (const { def } of idx.rows) await db.query(def);
  // The per-range counts, set-based (what shardline_rebuild_leaderboards() computes).
  if (boards) {
    await db.query(
      `INSERT INTO leaderboard_counts (board_id, period, range, active, n)
       SELECT board_id, period, shardline_score_range(score), active, count(*) FROM leaderboard_scores GROUP BY 1, 2, 3, 4`,
    );
  }
  await db.query('VACUUM ANALYZE');
}

/** Statements sent per shard pool, counted by wrapping each pooled client's query (pass-through). */
/** Runs a and b alternately so both see the same machine load; returns sorted latencies. */
async function alternate(iterations: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[number[], number[]]> {
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < iterations; i++) {
    for (const [fn, out] of i % 2 === 0
      ? ([
          [a, ta],
          [b, tb],
        ] as const)
      : ([
          [b, tb],
          [a, ta],
        ] as const)) {
      const t0 = performance.now();
      await fn();
      out.push(performance.now() - t0);
    }
  }
  return [ta.sort((x, y) => x - y), tb.sort((x, y) => x - y)];
}

function latencyResult(
  name: string,
  baselineName: string,
  sharded: number[],
  unsharded: number[],
  target: string,
  extra: Record<string, number | string>,
): BenchResult {
  const value = percentile(sharded, 50);
  const baseline = percentile(unsharded, 50);
  return {
    name,
    unit: 'ms p50',
    value: round(value, 3),
    baselineName,
    baseline: round(baseline, 3),
    ratio: round(baseline / value),
    target,
    extra: { p99: round(percentile(sharded, 99), 3), baselineP99: round(percentile(unsharded, 99), 3), iterations: sharded.length, ...extra },
  };
}

export async function run(): Promise<BenchResult[]> {
  const players = option('players', 'SHARDLINE_BENCH_PLAYERS', 1_000_000);
  const iterations = option('iterations', 'SHARDLINE_BENCH_ITERATIONS', 300);
  const base = `slbench_leaderboard_${process.pid}_${Date.now().toString(36)}`;
  const flatDb = `${base}_flat`;
  const shardDbs = BENCH_LAYOUT.map((_, i) => `${base}_${i}`);
  const created: string[] = [];
  let set: ShardSet | undefined;
  let flatSet: ShardSet | undefined;
  try {
    const t0 = performance.now();
    await cloneFromTemplate(base, [...shardDbs, flatDb], created);
    const map = benchMap(BENCH_LAYOUT.map((s, i) => ({ ...s, db: shardDbs[i]! })));
    await Promise.all(map.shards.map((s) => new ShardMigrator(s).latest()));
    set = new ShardSet(map, { poolMax: 4 });
    // The unsharded copy: one database, one pool, the same schema and indexes, every row.
    flatSet = new ShardSet(benchMap([{ id: 'flat', region: 'all', db: flatDb, buckets: '0-4095' }]), { poolMax: 4, verifyIdentity: false });

    const perShard = Math.ceil(players / map.shards.length);
    const baseMs = Date.now() - 1_704_067_200_000 - 86_400_000;
    const flatPool = flatSet.pool('flat');
    await Promise.all([
      ...map.shards.map(async (s) => {
        const c = await set!.pool(s.id).connect();
        try {
          await seed(c, [s], perShard, baseMs, true);
        } finally {
          c.release();
        }
      }),
      (async () => {
        const c = await flatPool.connect();
        try {
          await seed(c, map.shards, perShard, baseMs, false);
        } finally {
          c.release();
        }
      })(),
    ]);
    const seedSeconds = (performance.now() - t0) / 1000;
    // The machine's 1-minute load when the timed part starts and ends: latencies are only comparable at similar load.
    const loadStart = loadavg()[0] ?? 0;

    const boards = new Leaderboards(set);
    const flat = flatSet.rawDb('flat');
    // The very statement each shard runs, on the one table holding everything.
    const flatTop = () =>
      flat
        .selectFrom('player_stats as s')
        .select(['s.player_id', 's.score'])
        .select((eb) => eb.selectFrom('players as p').select('p.nickname').whereRef('p.player_id', '=', 's.player_id').as('nickname'))
        .where('s.game_id', '=', GAME)
        .orderBy('s.score', 'desc')
        .orderBy('s.player_id', 'asc')
        .limit(LIMIT)
        .execute();

    const counter = countStatements(set);
    const [sharded, top] = [await boards.topScores(GAME, { limit: LIMIT }), await flatTop()];
    if (sharded.length !== top.length || sharded.some((e, i) => e.playerId !== top[i]!.player_id)) {
      throw new Error('sharded and unsharded top-100 differ');
    }
    await alternate(Math.min(30, iterations), () => boards.topScores(GAME, { limit: LIMIT }), flatTop); // warm up
    counter.reset();
    const [topSharded, topFlat] = await alternate(iterations, () => boards.topScores(GAME, { limit: LIMIT }), flatTop);
    const statementsPerCall = counter.total() / iterations;
    const [regional] = await alternate(
      Math.max(10, Math.floor(iterations / 3)),
      () => boards.topScores(GAME, { limit: LIMIT, region: 'shenzhen' }),
      async () => undefined,
    );

    // rankOf of the median and of the bottom player: the costliest counts for a COUNT of those ahead.
    const rows = perShard * map.shards.length;
    const at = async (offset: number) =>
      (
        await flatPool.query<{ player_id: PlayerId; score: bigint }>(
          `SELECT player_id, score FROM player_stats WHERE game_id = $1 ORDER BY score DESC, player_id ASC OFFSET $2 LIMIT 1`,
          [GAME, offset],
        )
      ).rows[0]!;
    const flatRank = (p: { player_id: PlayerId; score: bigint }) => () =>
      flatPool.query(`SELECT count(*) FROM player_stats WHERE game_id = $1 AND (score > $2 OR (score = $2 AND player_id < $3))`, [GAME, p.score, p.player_id]);
    const rankIterations = Math.max(20, Math.floor(iterations / 3));
    const rankResults: BenchResult[] = [];
    for (const [label, offset] of [
      ['median', Math.floor(rows / 2)],
      ['bottom', rows - 1],
    ] as const) {
      const p = await at(offset);
      const got = await boards.rankOf(p.player_id, GAME);
      if (got?.rank !== offset + 1) throw new Error(`rankOf(${label}) is ${got?.rank}, the unsharded order says ${offset + 1}`);
      await alternate(5, () => boards.rankOf(p.player_id, GAME), flatRank(p)); // warm up
      counter.reset();
      const [rankSharded, rankFlat] = await alternate(rankIterations, () => boards.rankOf(p.player_id, GAME), flatRank(p));
      rankResults.push(
        latencyResult(
          `leaderboard: rankOf(${label} player), ${rows} players on ${map.shards.length} shards`,
          `COUNT of the players ahead, one unsharded table`,
          rankSharded,
          rankFlat,
          '>= 10',
          { statementsPerCall: counter.total() / rankIterations },
        ),
      );
    }

    // around: 5 above and 5 below the median player, beside the same two index reads on the unsharded table.
    const mid = await at(Math.floor(rows / 2));
    const flatAround = () =>
      flatPool.query(
        `(SELECT player_id, score FROM player_stats WHERE game_id = $1 AND score >= $2 AND (score > $2 OR player_id < $3)
          ORDER BY score ASC, player_id DESC LIMIT 5)
         UNION ALL
         (SELECT player_id, score FROM player_stats WHERE game_id = $1 AND score <= $2 AND (score < $2 OR player_id > $3)
          ORDER BY score DESC, player_id ASC LIMIT 5)`,
        [GAME, mid.score, mid.player_id],
      );
    const around = await boards.around(mid.player_id, GAME);
    if (around?.length !== 11 || around[5]?.playerId !== mid.player_id) throw new Error('around(median) is not the 11 entries around it');
    const [aroundSharded, aroundFlat] = await alternate(rankIterations, () => boards.around(mid.player_id, GAME), flatAround);

    const loadEnd = loadavg()[0] ?? 0;
    const throughput = await settlementThroughput(set, boards, base, baseMs, perShard, option('matches', 'SHARDLINE_BENCH_MATCHES', 400));

    return [
      latencyResult(
        `leaderboard: topScores(limit ${LIMIT}), ${rows} players on ${map.shards.length} shards`,
        `same query, one unsharded table`,
        topSharded,
        topFlat,
        '>= 0.5',
        {
          statementsPerCall,
          regionalP50: round(percentile(regional, 50), 3),
          regionalShards: map.regions.find((r) => r.name === 'shenzhen')!.shards.length,
          seedSeconds: round(seedSeconds, 1),
          loadAvgStart: round(loadStart, 1),
          loadAvgEnd: round(loadEnd, 1),
        },
      ),
      ...rankResults,
      latencyResult(
        `leaderboard: around(median player, 5 above, 5 below), ${rows} players on ${map.shards.length} shards`,
        `the same two index reads, one unsharded table (no ranks)`,
        aroundSharded,
        aroundFlat,
        'reported',
        {},
      ),
      throughput,
    ];
  } finally {
    await set?.close();
    await flatSet?.close();
    await dropDatabases(created);
  }
}

/**
 * Player results applied per second by the worker, for matches queued beforehand (so submitting is
 * not measured): game `tp3` with three boards (its plain all-time board, a daily sum and a weekly
 * best) beside game `tp1` with its plain board only, in alternating rounds on the same shards.
 */
async function settlementThroughput(
  set: ShardSet,
  boards: Leaderboards,
  base: string,
  baseMs: number,
  perShard: number,
  matches: number,
): Promise<BenchResult> {
  await boards.defineBoard({ boardId: 'tp3:daily', operator: 'sum', period: 'daily' });
  await boards.defineBoard({ boardId: 'tp3:best-week', operator: 'best', period: 'weekly' });
  const connection = redisOptionsFromUrl(REDIS_URL);
  const logger = pino({ level: 'silent' });
  const prefix = `${base}_q`;
  const client = new SettlementClient({ shards: set, connection, prefix, logger });
  const rate: Record<'tp1' | 'tp3', number[]> = { tp1: [], tp3: [] };
  let k = 0;
  const pick = () => {
    const s = set.shards[Math.floor(Math.random() * set.shards.length)]!;
    return seededId(s, Math.floor(Math.random() * perShard), baseMs);
  };
  try {
    for (const game of ['tp1', 'tp3', 'tp1', 'tp3', 'tp1', 'tp3', 'tp3', 'tp1'] as const) {
      const batch: SettlementInput[] = Array.from({ length: matches }, () => {
        k++;
        return {
          matchId: `tp-${k}`,
          gameId: game,
          endedAt: new Date(Date.now() - 60_000),
          results: [...new Set([pick(), pick(), pick()])].map((playerId, i) => ({
            playerId: String(playerId),
            scoreDelta: 10 - i * 7,
            outcome: i === 0 ? 'win' : 'loss',
          })),
        };
      });
      const results = batch.reduce((n, m) => n + m.results.length, 0);
      for (let i = 0; i < batch.length; i += 50) await Promise.all(batch.slice(i, i + 50).map((m) => client.submitSettlement(m)));
      const worker = new SettlementWorker({ shards: set, connection, prefix, logger, ...WORKER });
      const t0 = performance.now();
      await worker.start();
      for (;;) {
        const pending = await Promise.all(
          set.shards.map(async (s) =>
            Number((await set.pool(s.id).query<{ n: string }>(`SELECT count(*) AS n FROM settlement_inbox WHERE status = 'pending'`)).rows[0]!.n),
          ),
        );
        if (pending.every((n) => n === 0)) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      const seconds = (performance.now() - t0) / 1000;
      await worker.stop(10_000);
      rate[game].push(results / seconds);
    }
  } finally {
    await client.close();
    const r = new Redis(connection);
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `*${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await r.del(...keys);
    } while (cursor !== '0');
    r.disconnect();
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const three = median(rate.tp3);
  const one = median(rate.tp1);
  return {
    name: `leaderboard: settlement, player results applied/s, a game with 3 boards`,
    unit: 'results/s',
    value: Math.round(three),
    baselineName: 'the same, a game with 1 board (its plain all-time board)',
    baseline: Math.round(one),
    ratio: round(three / one),
    target: '>= 0.8',
    extra: {
      rounds: rate.tp3.length,
      matchesPerRound: matches,
      tp3: rate.tp3.map((x) => Math.round(x)).join(' '),
      tp1: rate.tp1.map((x) => Math.round(x)).join(' '),
    },
  };
}

runIfMain(import.meta.url, run);
