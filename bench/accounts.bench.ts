/**
 * getPlayers(1,000 ids over 4 shards) beside 1,000 single getPlayer calls, in the same run.
 *
 *   npx tsx bench/accounts.bench.ts [--ids 1000] [--players 40000] [--iterations 30]
 *   (or SHARDLINE_BENCH_IDS / SHARDLINE_BENCH_PLAYERS / SHARDLINE_BENCH_ITERATIONS)
 *
 * Databases are created on SHARDLINE_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)
 * under unique names and dropped at the end.
 */
import { Accounts, type PlayerId, type ShardSet } from '../src/index.js';
import { benchShards, countStatements, dropDatabases, option, percentile, round, runIfMain } from './support.js';
import type { BenchResult } from './types.js';

async function timeEach(iterations: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

export async function run(): Promise<BenchResult[]> {
  const idCount = option('ids', 'SHARDLINE_BENCH_IDS', 1000);
  const players = Math.max(option('players', 'SHARDLINE_BENCH_PLAYERS', 40_000), idCount);
  const iterations = option('iterations', 'SHARDLINE_BENCH_ITERATIONS', 30);
  const base = `slbench_accounts_${process.pid}_${Date.now().toString(36)}`;
  const databases: string[] = [];
  let set: ShardSet | undefined;
  try {
    set = await benchShards(base, databases);
    const perShard = Math.ceil(players / set.shards.length);
    const baseMs = Date.now() - 1_704_067_200_000 - 86_400_000;
    await Promise.all(
      set.shards.map(async (s) => {
        const [lo, hi] = s.buckets[0]!;
        const pool = set!.pool(s.id);
        await pool.query(
          `INSERT INTO players (player_id, region, nickname)
           SELECT (($1::bigint + g / $3 / 1024) << 22) | (($2::bigint + g % $3) << 10) | ((g / $3) % 1024), $4, 'player ' || g
           FROM generate_series(0, $5 - 1) AS g`,
          [baseMs, lo, hi - lo + 1, s.region, perShard],
        );
        await pool.query(
          `INSERT INTO player_stats (player_id, game_id, score, wins, games_played) SELECT player_id, 'bench', player_id % 5000, 1, 2 FROM players`,
        );
        await pool.query('VACUUM ANALYZE');
      }),
    );

    // 1,000 ids drawn at random from every shard, in random order.
    const all: PlayerId[] = [];
    for (const s of set.shards) {
      const r = await set
        .pool(s.id)
        .query<{ player_id: PlayerId }>('SELECT player_id FROM players ORDER BY random() LIMIT $1', [Math.ceil(idCount / set.shards.length) + 1]);
      all.push(...r.rows.map((x) => x.player_id));
    }
    const ids = all.sort(() => Math.random() - 0.5).slice(0, idCount);

    const accounts = new Accounts(set, { maxBatchSize: Math.max(1000, idCount) });
    const counter = countStatements(set);
    await timeEach(5, () => accounts.getPlayers(ids)); // warm pools and identity checks

    counter.reset();
    const check = await accounts.getPlayers(ids);
    if (check.players.length !== ids.length) throw new Error(`expected ${ids.length} players, got ${check.players.length}`);
    const roundTrips = counter.total();
    const shardsTouched = counter.touched();

    const batch = await timeEach(iterations, () => accounts.getPlayers(ids));
    const batchStats = await timeEach(iterations, () => accounts.getPlayers(ids, { gameId: 'bench' }));
    counter.reset();
    const singles = await timeEach(3, async () => {
      for (const id of ids) await accounts.getPlayer(id);
    });
    const singleRoundTrips = counter.total() / 3;

    const value = percentile(batch, 50);
    const baseline = percentile(singles, 50);
    return [
      {
        name: `accounts: getPlayers(${ids.length} ids, ${set.shards.length} shards)`,
        unit: 'ms p50',
        value: round(value),
        baselineName: `${ids.length} sequential getPlayer calls`,
        baseline: round(baseline),
        ratio: round(baseline / value),
        target: 'round trips = shards touched',
        met: roundTrips === shardsTouched,
        extra: {
          p99: round(percentile(batch, 99)),
          roundTrips,
          shardsTouched,
          baselineRoundTrips: singleRoundTrips,
          withGameIdP50: round(percentile(batchStats, 50)),
          withGameIdP99: round(percentile(batchStats, 99)),
          iterations,
          playersSeeded: perShard * set.shards.length,
        },
      },
    ];
  } finally {
    await set?.close();
    await dropDatabases(databases);
  }
}

runIfMain(import.meta.url, run);
