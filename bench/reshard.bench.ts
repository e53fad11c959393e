/**
 * A bucket move (freeze mode, the default) of an eighth of a shard's rows while writes continue:
 * the write pause of the moved range (p50, max), the mover's copy rate beside a plain
 * `COPY … TO STDOUT | COPY … FROM STDIN` of the same rows in the same run, and the rate of writes
 * to the buckets that stay beside their rate without a move; then the purge's rate (by range, in
 * bounded batches) beside the same purge bucket by bucket, on two equal ranges moved after it.
 *
 *   npx tsx bench/reshard.bench.ts [--players 800000] [--batch 4] [--writers 4]
 *   (or SHARDLINE_BENCH_MOVE_PLAYERS / SHARDLINE_BENCH_MOVE_BATCH / SHARDLINE_BENCH_MOVE_WRITERS)
 *
 * The source shard owns every bucket and holds `players` players with 2 stats rows and 3 ledger
 * rows each; buckets 0-511 (an eighth) move to a shard that starts empty. Databases are created on
 * SHARDLINE_BENCH_PG_URL under unique names and dropped at the end.
 */
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { ShardMigrator, validateShardMap, type ShardMap } from '../src/index.js';
import { moveBuckets, purgeMove, type MoveReport } from '../src/reshard/index.js';
import { deleteRange } from '../src/reshard/copy.js';
import { movedTables } from '../src/reshard/tables.js';
import { cloneFromTemplate, dropDatabases, option, percentile, round, runIfMain, urlFor } from './support.js';
import type { BenchResult } from './types.js';

const RANGE: [number, number] = [0, 511];
const IN_RANGE = `((player_id >> 10) & 4095) BETWEEN ${RANGE[0]} AND ${RANGE[1]}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function seed(url: string, players: number): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const base = Date.now() - 1_704_067_200_000 - 86_400_000;
    // The bucket indexes of migration 0010 are built once after the load, not row by row.
    const tables = ['players', 'player_stats', 'settlement_ledger', 'player_identities'];
    for (const t of tables) await c.query(`DROP INDEX ${t}_bucket`);
    // g -> bucket g % 4096, so every bucket holds players/4096 of them.
    const step = 100_000;
    for (let from = 0; from < players; from += step) {
      const to = Math.min(players, from + step) - 1;
      const id = `((($1::bigint + g / 4096 / 1024) << 22) | ((g % 4096) << 10) | ((g / 4096) % 1024))`;
      await c.query(`INSERT INTO players (player_id, region, nickname) SELECT ${id}, 'shenzhen', 'p' || g FROM generate_series($2::int, $3::int) g`, [
        base,
        from,
        to,
      ]);
      await c.query(
        `INSERT INTO player_stats (player_id, game_id, score, wins, games_played) SELECT ${id}, v.game, g % 1000, 1, 1
           FROM generate_series($2::int, $3::int) g, (VALUES ('chess'), ('go')) v(game)`,
        [base, from, to],
      );
      await c.query(
        `INSERT INTO settlement_ledger (match_id, player_id, game_id, score_delta, outcome, ended_at)
         SELECT 'm-' || g || '-' || n, ${id}, 'chess', n, 'win', now() FROM generate_series($2::int, $3::int) g, generate_series(1, 3) n`,
        [base, from, to],
      );
    }
    for (const t of tables) await c.query(`CREATE INDEX ${t}_bucket ON ${t} ((((player_id >> 10) & 4095)::int))`);
    await c.query('ANALYZE');
  } finally {
    await c.end();
  }
}

/** The same rows the move copies, by a plain COPY pipe into a scratch database (no fence, no verify). */
async function plainCopy(sourceUrl: string, scratchUrl: string): Promise<{ rows: number; ms: number }> {
  const src = new pg.Client({ connectionString: sourceUrl });
  const dst = new pg.Client({ connectionString: scratchUrl });
  await Promise.all([src.connect(), dst.connect()]);
  try {
    const t0 = performance.now();
    let rows = 0;
    await dst.query('BEGIN');
    for (const t of ['players', 'player_stats', 'settlement_ledger']) {
      const out = src.query(copyStreams.to(`COPY (SELECT * FROM ${t} WHERE ${IN_RANGE}) TO STDOUT`));
      const into = dst.query(copyStreams.from(`COPY ${t} FROM STDIN`));
      await pipeline(out, into);
      rows += into.rowCount;
    }
    await dst.query('COMMIT');
    return { rows, ms: performance.now() - t0 };
  } finally {
    await Promise.all([src.end(), dst.end()]);
  }
}

interface Writer {
  stop(): Promise<void>;
  /** Committed writes. */
  done(): number;
  /** Per write that was refused at least once (frozen or moved): how long until it committed, ms. */
  pauses(): number[];
}

/**
 * Clients bumping a player's stats in a loop, routed per bucket: a write refused as *moving*
 * (frozen) is retried after 2 ms, one refused as *moved* goes to the shard the refusal names.
 */
function startWriters(urls: Record<string, string>, ids: readonly string[], clients: number): Writer {
  let stop = false;
  let done = 0;
  const pauses: number[] = [];
  const route = new Map<number, string>();
  const loops = Array.from({ length: clients }, async (_, w) => {
    const conns = new Map<string, pg.Client>();
    const conn = async (shard: string) => {
      let c = conns.get(shard);
      if (!c) {
        c = new pg.Client({ connectionString: urls[shard] });
        c.on('error', () => undefined);
        await c.connect();
        conns.set(shard, c);
      }
      return c;
    };
    try {
      for (let i = w; !stop; i += clients) {
        const id = ids[i % ids.length] as string;
        const bucket = Number((BigInt(id) >> 10n) & 4095n);
        const t0 = performance.now();
        let refused = false;
        for (;;) {
          const shard = route.get(bucket) ?? 'sz-1';
          try {
            await (await conn(shard)).query(`UPDATE player_stats SET score = score + 1 WHERE player_id = $1 AND game_id = 'chess'`, [id]);
            break;
          } catch (err) {
            const e = err as { code?: string; constraint?: string; detail?: string };
            if (e.code !== '23514') throw err;
            refused = true;
            if (e.constraint === 'shardline_owned_buckets') {
              const to = (JSON.parse(e.detail ?? '{}') as { movedTo?: string }).movedTo;
              if (to) route.set(bucket, to);
              else await sleep(2);
            } else await sleep(2);
          }
        }
        done++;
        if (refused) pauses.push(performance.now() - t0);
      }
    } finally {
      await Promise.all([...conns.values()].map((c) => c.end().catch(() => undefined)));
    }
  });
  return {
    async stop() {
      stop = true;
      await Promise.all(loops);
    },
    done: () => done,
    pauses: () => [...pauses].sort((a, b) => a - b),
  };
}

/** Two ranges of equal size past the moved eighth, moved without writers, for the purge's two paces. */
const PURGE_RANGES: [[number, number], [number, number]] = [
  [512, 639],
  [640, 767],
];

/**
 * The purge's rate: one range's source copy deleted bucket by bucket, a transaction each (the purge
 * before it went by range), and the other's by purgeMove (by range, bounded batches). Returns the
 * rows deleted and the time of each.
 */
async function purgeRates(map: ShardMap, sourceUrl: string): Promise<Record<'perBucket' | 'batched', { rows: number; ms: number }>> {
  const moves: MoveReport[] = [];
  for (const range of PURGE_RANGES) moves.push(await moveBuckets({ map, range, to: 'sz-2', purge: 'never', maxFreezeMs: 0, settlement: false }));
  const [before, after] = moves as [MoveReport, MoveReport];
  const c = new pg.Client({ connectionString: sourceUrl });
  await c.connect();
  try {
    const tables = await movedTables(c);
    const t0 = performance.now();
    let rows = 0;
    for (let bucket = before.range[0]; bucket <= before.range[1]; bucket++) {
      await c.query('BEGIN');
      await c.query(`SET LOCAL shardline.fence = 'off'`);
      rows += await deleteRange(c, tables, bucket, bucket);
      await c.query('COMMIT');
    }
    const perBucket = { rows, ms: performance.now() - t0 };
    const t1 = performance.now();
    await purgeMove(map, after.id);
    return { perBucket, batched: { rows: after.rowsCopied, ms: performance.now() - t1 } };
  } finally {
    await c.end();
  }
}

export async function run(): Promise<BenchResult[]> {
  const players = option('players', 'SHARDLINE_BENCH_MOVE_PLAYERS', 800_000);
  const batch = option('batch', 'SHARDLINE_BENCH_MOVE_BATCH', 4);
  const writers = option('writers', 'SHARDLINE_BENCH_MOVE_WRITERS', 4);
  const base = `slbench_mv_${process.pid}_${Date.now().toString(36)}`;
  const created: string[] = [];
  try {
    const names = [`${base}_0`, `${base}_1`, `${base}_scratch`];
    await cloneFromTemplate(base, names, created);
    const map = validateShardMap({
      version: 1,
      buckets: 4096,
      regions: ['shenzhen'],
      shards: [
        { id: 'sz-1', region: 'shenzhen', connection: urlFor(names[0]!), buckets: ['0-4095'] },
        { id: 'sz-2', region: 'shenzhen', connection: urlFor(names[1]!), buckets: [] },
      ],
    });
    await Promise.all(map.shards.map((s) => new ShardMigrator(s).latest()));
    const urls = { 'sz-1': urlFor(names[0]!), 'sz-2': urlFor(names[1]!) };
    await seed(urls['sz-1'], players);

    const plain = await plainCopy(urls['sz-1'], urlFor(names[2]!));

    const src = new pg.Client({ connectionString: urls['sz-1'] });
    await src.connect();
    const pick = async (where: string) =>
      (await src.query<{ id: string }>(`SELECT player_id::text AS id FROM players TABLESAMPLE SYSTEM (5) WHERE ${where} LIMIT 2000`)).rows.map((r) => r.id);
    const movingIds = await pick(IN_RANGE);
    const stayingIds = await pick(`NOT ${IN_RANGE}`);
    await src.end();

    // Writes to the staying buckets without a move (5 s), then during it.
    // Both sets of writers run in the baseline too: only the move differs between the two rates.
    const alone = startWriters(urls, stayingIds, writers);
    const aloneMoving = startWriters(urls, movingIds, writers);
    await sleep(5000);
    await Promise.all([alone.stop(), aloneMoving.stop()]);
    const aloneRate = alone.done() / 5;

    const staying = startWriters(urls, stayingIds, writers);
    const moving = startWriters(urls, movingIds, writers);
    const t0 = performance.now();
    const report = await moveBuckets({ map, range: RANGE, to: 'sz-2', batchBuckets: batch, purge: 'never', maxFreezeMs: 0, settlement: false });
    const moveMs = performance.now() - t0;
    await Promise.all([staying.stop(), moving.stop()]);
    const duringRate = staying.done() / (moveMs / 1000);

    const purge = await purgeRates(map, urls['sz-1']);

    const pauses = moving.pauses();
    const freezes = [...report.freezes].sort((a, b) => a - b);
    const copyRate = report.rowsCopied / (report.copyMs / 1000);
    const plainRate = plain.rows / (plain.ms / 1000);
    const rows = { players: players / 8, rowsCopied: report.rowsCopied, batches: report.freezes.length };
    return [
      {
        name: `move (freeze, ${batch}-bucket batches): write pause of the moved range, p50`,
        unit: 'ms',
        value: round(percentile(pauses, 50)),
        baselineName: 'target 1000 ms per batch',
        baseline: 1000,
        ratio: round(1000 / Math.max(1, percentile(pauses, 50))),
        target: '>= 1',
        extra: {
          'pause max ms': round(pauses.at(-1) ?? 0),
          'writes paused': pauses.length,
          'batch freeze p50 ms': round(percentile(freezes, 50)),
          'batch freeze max ms': round(freezes.at(-1) ?? 0),
          ...rows,
        },
      },
      {
        name: 'move (freeze): write pause of the moved range, max',
        unit: 'ms',
        value: round(pauses.at(-1) ?? 0),
        baselineName: 'target 1000 ms per batch',
        baseline: 1000,
        ratio: round(1000 / Math.max(1, pauses.at(-1) ?? 0)),
        target: '>= 1',
      },
      {
        name: 'move (freeze): copy rate',
        unit: 'rows/s',
        value: Math.round(copyRate),
        baselineName: 'COPY TO STDOUT | COPY FROM STDIN, same rows',
        baseline: Math.round(plainRate),
        ratio: round(copyRate / plainRate),
        target: '>= 0.5',
        extra: {
          'whole move rows/s (fence, verify, commit included)': Math.round(report.rowsCopied / (moveMs / 1000)),
          'move s': round(moveMs / 1000),
          ...rows,
        },
      },
      {
        name: 'move (freeze): writes to the other buckets during the move',
        unit: 'writes/s',
        value: round(duringRate),
        baselineName: 'same writes without a move',
        baseline: round(aloneRate),
        ratio: round(duringRate / aloneRate),
        target: '>= 0.8',
        extra: { writers },
      },
      {
        name: `purge of a moved range (${PURGE_RANGES[1][1] - PURGE_RANGES[1][0] + 1} buckets, up to 64 a transaction)`,
        unit: 'rows/s',
        value: Math.round(purge.batched.rows / (purge.batched.ms / 1000)),
        baselineName: 'the same purge bucket by bucket, one transaction each (before), same run',
        baseline: Math.round(purge.perBucket.rows / (purge.perBucket.ms / 1000)),
        ratio: round(purge.batched.rows / purge.batched.ms / (purge.perBucket.rows / purge.perBucket.ms)),
        target: '> 1',
        extra: {
          'batched ms': round(purge.batched.ms),
          'bucket by bucket ms': round(purge.perBucket.ms),
          'batched rows': purge.batched.rows,
          'bucket by bucket rows': purge.perBucket.rows,
        },
      },
    ];
  } finally {
    await dropDatabases(created);
  }
}

runIfMain(import.meta.url, run);
