/**
 * topScores(limit 100) over N players on 4 shards, beside the same query on one unsharded
 * database holding the very same rows, measured alternately in the same run. Also rankOf of a
 * mid-table player beside the same count on the unsharded table.
 *
 *   npx tsx bench/leaderboard.bench.ts [--players 1000000] [--iterations 300]
 *   (or SHARDLINE_BENCH_PLAYERS / SHARDLINE_BENCH_ITERATIONS)
 *
 * Databases are created on SHARDLINE_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)
 * under unique names and dropped at the end.
 */
import pg from 'pg';
import { Leaderboards, ShardMigrator, ShardSet, type PlayerId, type ShardSpec } from '../src/index.js';
import { BENCH_LAYOUT, benchMap, cloneFromTemplate, countStatements, dropDatabases, option, percentile, round, runIfMain } from './support.js';
import type { BenchResult } from './types.js';

const GAME = 'bench';
const LIMIT = 100;

async function seedRows(db: pg.ClientBase, s: ShardSpec, count: number, baseMs: number): Promise<void> {
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
  await db.query(`RESET session_replication_role`);
}

/**
 * Seeds with the secondary indexes (the leaderboard index among them) dropped, then rebuilds them
 * from their own definitions: one sort instead of a million random index insertions.
 */
async function seed(db: pg.ClientBase, shards: readonly ShardSpec[], count: number, baseMs: number): Promise<void> {
  const idx = await db.query<{ name: string; def: string }>(
    `SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
     FROM pg_index i WHERE i.indrelid IN ('players'::regclass, 'player_stats'::regclass)
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)`,
  );
  for (const { name } of idx.rows) await db.query(`DROP INDEX ${name}`);
  for (const s of shards) await seedRows(db, s, count, baseMs);
  for (const { def } of idx.rows) await db.query(def);
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
          await seed(c, [s], perShard, baseMs);
        } finally {
          c.release();
        }
      }),
      (async () => {
        const c = await flatPool.connect();
        try {
          await seed(c, map.shards, perShard, baseMs);
        } finally {
          c.release();
        }
      })(),
    ]);
    const seedSeconds = (performance.now() - t0) / 1000;

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

    // rankOf of the median player: the costliest kind of count, half of every shard.
    const mid = await flatPool.query<{ player_id: PlayerId; score: bigint }>(
      `SELECT player_id, score FROM player_stats WHERE game_id = $1 ORDER BY score DESC, player_id ASC OFFSET $2 LIMIT 1`,
      [GAME, Math.floor((perShard * map.shards.length) / 2)],
    );
    const median = mid.rows[0]!;
    const flatRank = () =>
      flatPool.query(`SELECT count(*) FROM player_stats WHERE game_id = $1 AND (score > $2 OR (score = $2 AND player_id < $3))`, [
        GAME,
        median.score,
        median.player_id,
      ]);
    const rankIterations = Math.max(5, Math.floor(iterations / 30));
    const [rankSharded, rankFlat] = await alternate(rankIterations, () => boards.rankOf(median.player_id, GAME), flatRank);

    const rows = perShard * map.shards.length;
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
        },
      ),
      latencyResult(
        `leaderboard: rankOf(median player), ${rows} players on ${map.shards.length} shards`,
        `same count, one unsharded table`,
        rankSharded,
        rankFlat,
        'reported',
        {},
      ),
    ];
  } finally {
    await set?.close();
    await flatSet?.close();
    await dropDatabases(created);
  }
}

runIfMain(import.meta.url, run);
