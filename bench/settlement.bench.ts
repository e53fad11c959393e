/**
 * Settlement end to end (submit → applied in Postgres) on 4 shards with several concurrent
 * submitters, beside two baselines measured in the same run on the same shards and pool size:
 *   - the same ledger insert + stats upsert straight to Postgres, one result per transaction;
 *   - the ceiling: those writes, 100 results per transaction.
 * and the same end-to-end run with results carrying data and an effect crediting one wallet row
 * per result (docs/effects.md), beside the run without (issue 13: aim >= 0.7x).
 *
 *   npx tsx bench/settlement.bench.ts [--seconds 6] [--submitters 64] [--players-per-match 16]
 *   (or SHARDLINE_BENCH_SECONDS / SHARDLINE_BENCH_SUBMITTERS / SHARDLINE_BENCH_MATCH_SIZE)
 *
 * Databases are created on SHARDLINE_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)
 * and queues on SHARDLINE_BENCH_REDIS_URL (default redis://127.0.0.1:6379) under unique names, and
 * dropped / deleted at the end.
 */
import { fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { pino } from 'pino';
import { ShardMigrator, ShardSet, validateShardMap, type PlayerId } from '../src/index.js';
import { SettlementClient, redisOptionsFromUrl, type SettlementInput } from '../src/settlement/index.js';
import { BENCH_EFFECT_GAME, BENCH_WALLET_DDL } from './settlement-effects.js';
import type { BenchWorkerConfig, BenchWorkerMessage } from './settlement-worker.js';
import { BENCH_LAYOUT, option, percentile, round, urlFor, withAdmin } from './support.js';
import type { BenchResult } from './types.js';

const REDIS_URL = process.env.SHARDLINE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const POOL = 8; // connections per shard, for shardline and both baselines
/** Worker settings of the bench (its own process, one Postgres pool of POOL per shard). */
const WORKER = { concurrency: 256, batchSize: 64, lingerMs: 2, maxInFlightBatches: 4 };

async function createShards(base: string, databases: string[]): Promise<{ set: ShardSet; rawMap: unknown }> {
  const template = `${base}_tpl`;
  databases.push(template);
  await withAdmin((c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(template)}`));
  const tpl = validateShardMap({
    version: 1,
    buckets: 4096,
    regions: ['t'],
    shards: [{ id: 't', region: 't', connection: urlFor(template), buckets: ['0-4095'] }],
  });
  await new ShardMigrator(tpl.shards[0]!).applyPending();
  const names = BENCH_LAYOUT.map((_, i) => `${base}_${i}`);
  await withAdmin(async (c) => {
    for (const n of names) {
      databases.push(n);
      await c.query(`CREATE DATABASE ${pg.escapeIdentifier(n)} TEMPLATE ${pg.escapeIdentifier(template)}`);
    }
  });
  const rawMap = {
    version: 1,
    buckets: 4096,
    regions: [...new Set(BENCH_LAYOUT.map((s) => s.region))],
    shards: BENCH_LAYOUT.map((s, i) => ({ id: s.id, region: s.region, connection: urlFor(names[i]!), buckets: [s.buckets] })),
  };
  const map = validateShardMap(rawMap);
  await Promise.all(map.shards.map((s) => new ShardMigrator(s).latest()));
  const set = new ShardSet(map, { poolMax: POOL, applicationName: 'shardline-bench' });
  // The app table of the effects run (an app would add it with --app-migrations).
  for (const s of map.shards) await set.pool(s.id).query(BENCH_WALLET_DDL);
  return { set, rawMap };
}

async function createPlayers(set: ShardSet, perShard: number): Promise<PlayerId[]> {
  const all: PlayerId[] = [];
  for (const s of set.shards) {
    const r = await set.pool(s.id).query<{ id: bigint }>(
      `INSERT INTO players (player_id, region, nickname)
       SELECT shardline_player_id($1 + (g % $2)), $3, 'bench-' || g FROM generate_series(1, $4) g RETURNING player_id AS id`,
      [s.buckets[0]![0], s.bucketCount, s.region, perShard],
    );
    all.push(...r.rows.map((row) => row.id as PlayerId));
    await set.pool(s.id).query(`INSERT INTO bench_wallet (player_id) SELECT player_id FROM players`);
  }
  return all;
}

const LEDGER_SQL = `INSERT INTO settlement_ledger (match_id, player_id, game_id, score_delta, outcome, ended_at)
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[], $5::text[], $6::timestamptz[])
  ON CONFLICT (match_id, player_id) DO NOTHING RETURNING player_id`;
const STATS_SQL = `INSERT INTO player_stats AS s (player_id, game_id, score, wins, losses, draws, games_played, last_match_id)
  SELECT p, $2, d, (o = 'win')::int, (o = 'loss')::int, (o = 'draw')::int, 1, $5
  FROM unnest($1::bigint[], $3::int[], $4::text[]) AS t(p, d, o)
  ON CONFLICT (player_id, game_id) DO UPDATE SET score = s.score + EXCLUDED.score, wins = s.wins + EXCLUDED.wins,
    losses = s.losses + EXCLUDED.losses, draws = s.draws + EXCLUDED.draws, games_played = s.games_played + 1,
    last_match_id = EXCLUDED.last_match_id, updated_at = now()`;

/**
 * The direct writes: `perTx` results (distinct players of one shard) per transaction, POOL
 * transactions at once per shard, for `seconds`. Returns results per second.
 */
async function direct(set: ShardSet, players: PlayerId[], perTx: number, seconds: number, gameId: string): Promise<number> {
  const byShard = set.router.groupByShard(players);
  const deadline = Date.now() + seconds * 1000;
  let done = 0;
  let seq = 0;
  await Promise.all(
    [...byShard].flatMap(([shardId, ids]) =>
      Array.from({ length: POOL }, async () => {
        const pool = set.pool(shardId);
        while (Date.now() < deadline) {
          const matchId = `${gameId}-${seq++}`;
          const start = Math.floor(Math.random() * ids.length);
          const picked = Array.from({ length: perTx }, (_, k) => ids[(start + k) % ids.length]!.toString()).sort();
          const deltas = picked.map((_, k) => (k === 0 ? 25 : -5));
          const outcomes = picked.map((_, k) => (k === 0 ? 'win' : 'loss'));
          const c = await pool.connect();
          try {
            await c.query('BEGIN');
            const ins = await c.query(LEDGER_SQL, [
              picked.map(() => matchId),
              picked,
              picked.map(() => gameId),
              deltas,
              outcomes,
              picked.map(() => new Date()),
            ]);
            const fresh = new Set(ins.rows.map((r: { player_id: bigint }) => r.player_id.toString()));
            const keep = picked.map((p, k) => (fresh.has(p) ? k : -1)).filter((k) => k >= 0);
            await c.query(STATS_SQL, [keep.map((k) => picked[k]), gameId, keep.map((k) => deltas[k]), keep.map((k) => outcomes[k]), matchId]);
            await c.query('COMMIT');
            done += perTx;
          } catch (err) {
            await c.query('ROLLBACK').catch(() => undefined);
            throw err;
          } finally {
            c.release();
          }
        }
      }),
    ),
  );
  return done / seconds;
}

/** The worker process (bench/settlement-worker.ts), as `shardline worker` runs beside the game servers. */
function startWorker(config: BenchWorkerConfig, onCommitted: (m: Extract<BenchWorkerMessage, { type: 'committed' }>) => void) {
  const child = fork(path.join(path.dirname(fileURLToPath(import.meta.url)), 'settlement-worker.ts'), [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, SHARDLINE_BENCH_WORKER: JSON.stringify(config) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let stopped: (m: Extract<BenchWorkerMessage, { type: 'stopped' }>) => void = () => undefined;
  const stoppedP = new Promise<Extract<BenchWorkerMessage, { type: 'stopped' }>>((r) => (stopped = r));
  const ready = new Promise<void>((resolve, reject) => {
    child.on('message', (m: BenchWorkerMessage) => {
      if (m.type === 'ready') resolve();
      else if (m.type === 'committed') onCommitted(m);
      else if (m.type === 'stopped') stopped(m);
      else if (m.type === 'error') reject(new Error(`bench worker: ${m.message}`));
    });
    child.on('exit', (code) => reject(new Error(`bench worker exited with ${code}`)));
  });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  return {
    ready,
    async stop(): Promise<{ txSeconds: number; txCount: number }> {
      if (child.exitCode !== null || !child.connected) return { txSeconds: 0, txCount: 0 };
      child.send({ type: 'stop' });
      const timeout = new Promise<{ txSeconds: number; txCount: number }>((r) => setTimeout(() => r({ txSeconds: 0, txCount: 0 }), 15_000).unref());
      const r = await Promise.race([stoppedP, timeout]);
      await Promise.race([exited, new Promise((res) => setTimeout(res, 5000).unref())]);
      if (child.exitCode === null) child.kill('SIGKILL');
      return r;
    },
  };
}

/** Submitters for `seconds`, the worker in its own process; results/s from first submit to last apply. */
async function endToEnd(
  set: ShardSet,
  rawMap: unknown,
  players: PlayerId[],
  opts: { seconds: number; submitters: number; matchSize: number; gameId: string; effects?: boolean; matchesPerSec?: number; workers?: number },
) {
  const prefix = `slbench-${process.pid}-${Date.now().toString(36)}`;
  const connection = redisOptionsFromUrl(REDIS_URL);
  const logger = pino({ level: 'error' });
  // Any object with parse() is a schema: the check an app's zod schema would make, without zod's cost in the figure.
  const coins = {
    parse: (v: unknown) => {
      if (typeof (v as { coins?: unknown }).coins !== 'number') throw new Error('coins must be a number');
      return v as { coins: number };
    },
  };
  const client = new SettlementClient({ shards: set, connection, prefix, logger, games: { [opts.gameId]: { data: coins } } });
  const now = () => performance.timeOrigin + performance.now();
  const submittedAt = new Map<string, { t: number; parts: number }>();
  const latencies: number[] = [];
  const batchSizes: number[] = [];
  let applied = 0;
  let lastApplied = 0;
  let resolveDone: () => void = () => undefined;
  const allDone = new Promise<void>((r) => (resolveDone = r));
  let submitting = true;
  const onCommitted = (e: { at: number; applied: string[]; size: number }) => {
    batchSizes.push(e.size);
    for (const m of e.applied) {
      const s = submittedAt.get(m);
      if (!s) continue;
      if (--s.parts === 0) {
        latencies.push(e.at - s.t);
        submittedAt.delete(m);
        applied += opts.matchSize;
        lastApplied = e.at;
      }
    }
    if (!submitting && submittedAt.size === 0) resolveDone();
  };
  // One worker process for every shard by default; --workers N splits the shards over N processes
  // (one event loop each), as a deployment running `shardline worker --shard …` per shard would.
  const shardIds = set.router.shards.map((s) => s.id);
  const workerCount = Math.min(opts.workers ?? 1, shardIds.length);
  const workers = Array.from({ length: workerCount }, (_, w) =>
    startWorker(
      {
        map: rawMap,
        pool: POOL,
        redisUrl: REDIS_URL,
        prefix,
        ...WORKER,
        effects: opts.effects === true,
        ...(workerCount > 1 ? { shardIds: shardIds.filter((_, i) => i % workerCount === w) } : {}),
      },
      onCommitted,
    ),
  );
  const worker = {
    ready: Promise.all(workers.map((w) => w.ready)),
    async stop() {
      const all = await Promise.all(workers.map((w) => w.stop()));
      return { txSeconds: all.reduce((a, t) => a + t.txSeconds, 0), txCount: all.reduce((a, t) => a + t.txCount, 0) };
    },
  };
  try {
    await worker.ready;
    const start = now();
    const deadline = start + opts.seconds * 1000;
    let seq = 0;
    let submitted = 0;
    let submitTime = 0;
    // At a set rate (the half-rate run) the submitters take evenly spaced slots instead of going flat out.
    const interval = opts.matchesPerSec ? 1000 / opts.matchesPerSec : 0;
    let slot = 0;
    await Promise.all(
      Array.from({ length: opts.submitters }, async () => {
        while (now() < deadline) {
          if (interval > 0) {
            const at = start + slot++ * interval;
            if (at >= deadline) break;
            if (at > now()) await new Promise((r) => setTimeout(r, at - now()));
          }
          const picked = new Set<PlayerId>();
          while (picked.size < opts.matchSize) picked.add(players[Math.floor(Math.random() * players.length)]!);
          const match: SettlementInput = {
            matchId: `${opts.gameId}-${seq++}`,
            gameId: opts.gameId,
            endedAt: new Date(),
            results: [...picked].map((playerId, k) => ({
              playerId,
              scoreDelta: k === 0 ? 25 : -5,
              outcome: k === 0 ? 'win' : 'loss',
              ...(opts.effects ? { data: { coins: k === 0 ? 30 : 5 } } : {}),
            })),
          };
          const t = now();
          const parts = new Set([...picked].map((p) => set.router.shardFor(p).id)).size;
          submittedAt.set(match.matchId, { t, parts });
          await client.submitSettlement(match);
          submitTime += now() - t;
          submitted++;
        }
      }),
    );
    submitting = false;
    if (submittedAt.size === 0) resolveDone();
    let drainTimer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        allDone,
        new Promise((_, reject) => (drainTimer = setTimeout(() => reject(new Error(`${submittedAt.size} matches not applied within 60 s`)), 60_000))),
      ]);
    } finally {
      // A pending timer would hold the process open for the rest of the minute after the report.
      clearTimeout(drainTimer);
    }
    const seconds = (lastApplied - start) / 1000;
    const tx = await worker.stop();
    const sortedLatencies = [...latencies].sort((a, b) => a - b);
    return {
      avgTxMs: (tx.txSeconds / Math.max(1, tx.txCount)) * 1000,
      submitMs: submitTime / Math.max(1, submitted),
      throughput: applied / seconds,
      p50: percentile(sortedLatencies, 50),
      p99: percentile(sortedLatencies, 99),
      matches: submitted,
      avgBatch: batchSizes.reduce((a, b) => a + b, 0) / Math.max(1, batchSizes.length),
    };
  } finally {
    await worker.stop();
    await client.close();
    const r = new Redis(connection);
    try {
      let cursor = '0';
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await r.del(...keys);
      } while (cursor !== '0');
    } finally {
      r.disconnect();
    }
  }
}

export async function run(): Promise<BenchResult[]> {
  const seconds = option('seconds', 'SHARDLINE_BENCH_SECONDS', 6);
  const submitters = option('submitters', 'SHARDLINE_BENCH_SUBMITTERS', 64);
  const matchSize = option('players-per-match', 'SHARDLINE_BENCH_MATCH_SIZE', 16);
  const workers = option('workers', 'SHARDLINE_BENCH_WORKERS', 1);
  const base = `slbench_settle_${process.pid}_${Date.now().toString(36)}`;
  const databases: string[] = [];
  let set: ShardSet | undefined;
  try {
    const created = await createShards(base, databases);
    set = created.set;
    const players = await createPlayers(set, option('players', 'SHARDLINE_BENCH_PLAYERS', 2000));
    const single = await direct(set, players, 1, seconds, 'single');
    const ceiling = await direct(set, players, 100, seconds, 'ceiling');
    const e2e = await endToEnd(set, created.rawMap, players, { seconds, submitters, matchSize, gameId: 'e2e', workers });
    const fx = await endToEnd(set, created.rawMap, players, { seconds, submitters, matchSize, gameId: BENCH_EFFECT_GAME, effects: true, workers });
    const credited = await walletTotal(set);
    // Latency when not saturated: the same run at half the rate just measured.
    const half = await endToEnd(set, created.rawMap, players, {
      seconds,
      submitters,
      matchSize,
      gameId: 'e2e-half',
      workers,
      matchesPerSec: e2e.throughput / matchSize / 2,
    });
    const extra = {
      p50ms: round(e2e.p50, 1),
      p99ms: round(e2e.p99, 1),
      matches: e2e.matches,
      playersPerMatch: matchSize,
      submitters,
      avgPartsPerTx: round(e2e.avgBatch, 1),
      avgTxMs: round(e2e.avgTxMs, 1),
      avgSubmitMs: round(e2e.submitMs, 1),
      poolPerShard: POOL,
      workerProcesses: workers,
      p50MsHalfRate: round(half.p50, 1),
      p99MsHalfRate: round(half.p99, 1),
      halfRateResultsPerSec: Math.round(half.throughput),
      halfRateSubmitMs: round(half.submitMs, 1),
      halfRateTxMs: round(half.avgTxMs, 1),
      halfRatePartsPerTx: round(half.avgBatch, 1),
    };
    return [
      {
        name: 'settlement: player results applied/s, submit → applied (4 shards)',
        unit: 'results/s',
        value: Math.round(e2e.throughput),
        baselineName: 'same writes straight to Postgres, 1 result per transaction',
        baseline: Math.round(single),
        ratio: round(e2e.throughput / single, 2),
        target: '>= 6',
        extra,
      },
      {
        name: 'settlement: player results applied/s vs the ceiling',
        unit: 'results/s',
        value: Math.round(e2e.throughput),
        baselineName: 'same writes, 100 results per transaction (ceiling)',
        baseline: Math.round(ceiling),
        ratio: round(e2e.throughput / ceiling, 2),
        target: '>= 0.35',
        extra: { p50ms: extra.p50ms, p99ms: extra.p99ms, p50MsHalfRate: extra.p50MsHalfRate, p99MsHalfRate: extra.p99MsHalfRate },
      },
      {
        name: 'settlement with an effect (data + one wallet row per result) vs without',
        unit: 'results/s',
        value: Math.round(fx.throughput),
        baselineName: 'the same run without data or effects',
        baseline: Math.round(e2e.throughput),
        ratio: round(fx.throughput / e2e.throughput, 2),
        target: '>= 0.7',
        extra: {
          p50ms: round(fx.p50, 1),
          p99ms: round(fx.p99, 1),
          matches: fx.matches,
          avgPartsPerTx: round(fx.avgBatch, 1),
          avgTxMs: round(fx.avgTxMs, 1),
          avgSubmitMs: round(fx.submitMs, 1),
          // Every credit applied once: the wallets hold exactly what the applied results carried.
          walletsExact: credited === expectedCoins(fx.matches, matchSize) ? 'yes' : `no (${credited} vs ${expectedCoins(fx.matches, matchSize)})`,
        },
      },
    ];
  } finally {
    await set?.close();
    await withAdmin(async (c) => {
      for (const n of databases) await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(n)} WITH (FORCE)`);
    });
  }
}

async function walletTotal(set: ShardSet): Promise<bigint> {
  let total = 0n;
  for (const s of set.shards) {
    const r = await set.pool(s.id).query<{ c: bigint | null }>(`SELECT sum(coins)::bigint AS c FROM bench_wallet`);
    total += BigInt(r.rows[0]?.c ?? 0);
  }
  return total;
}

/** Each match credits 30 to its winner and 5 to each other player. */
function expectedCoins(matches: number, matchSize: number): bigint {
  return BigInt(matches) * BigInt(30 + 5 * (matchSize - 1));
}

export function printResults(results: readonly BenchResult[]): void {
  for (const r of results) {
    console.log(`${r.name}: ${r.value} ${r.unit}  |  ${r.baselineName}: ${r.baseline}  |  ratio ${r.ratio}${r.target ? ` (target ${r.target})` : ''}`);
    if (r.extra)
      console.log(
        `  ${Object.entries(r.extra)
          .map(([k, v]) => `${k}=${v}`)
          .join('  ')}`,
      );
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  run().then(printResults, (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
