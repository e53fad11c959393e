/**
 * Login identities: `playerIdByIdentity` and `findByIdentity` on 4 shards beside the same indexed
 * read on one unsharded table (the same rows, all in one database), and `createPlayer` with an
 * identity beside without, in the same run.
 *
 *   npx tsx bench/identity.bench.ts [--identities 20000] [--lookups 2000] [--creates 300]
 *   (or SHARDLINE_BENCH_IDENTITIES / SHARDLINE_BENCH_LOOKUPS / SHARDLINE_BENCH_CREATES)
 *
 * Databases are created on SHARDLINE_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)
 * under unique names and dropped at the end.
 */
import pg from 'pg';
import { Accounts, type PlayerId, type ShardSet } from '../src/index.js';
import { identityBucket } from '../src/accounts/identity-key.js';
import { ownerOfBucket } from '../src/routing/key-bucket.js';
import { benchShards, countStatements, dropDatabases, option, percentile, round, runIfMain, urlFor, withAdmin } from './support.js';
import type { BenchResult } from './types.js';

async function timeEach<T>(items: readonly T[], fn: (item: T) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (const item of items) {
    const t0 = performance.now();
    await fn(item);
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

const subjectOf = (i: number) => `bench-user-${i}`;

interface Seeded {
  provider: string;
  subject: string;
  bucket: number;
  playerId: PlayerId;
}

/** Inserts players on every shard and one identity per player, each row on its own shard: straight SQL, not the protocol. */
async function seed(set: ShardSet, count: number): Promise<Seeded[]> {
  const perShard = Math.ceil(count / set.shards.length);
  const baseMs = Date.now() - 1_704_067_200_000 - 86_400_000;
  const ids: PlayerId[] = [];
  for (const s of set.shards) {
    const [lo, hi] = s.buckets[0]!;
    const r = await set.pool(s.id).query<{ player_id: PlayerId }>(
      `INSERT INTO players (player_id, region, nickname)
       SELECT (($1::bigint + g / $3 / 1024) << 22) | (($2::bigint + g % $3) << 10) | ((g / $3) % 1024), $4, 'player ' || g
       FROM generate_series(0, $5 - 1) AS g RETURNING player_id`,
      [baseMs, lo, hi - lo + 1, s.region, perShard],
    );
    ids.push(...r.rows.map((x) => BigInt(x.player_id) as PlayerId));
  }
  const rows: Seeded[] = ids.slice(0, count).map((playerId, i) => {
    const identity = { provider: 'username', subject: subjectOf(i) };
    return { ...identity, bucket: identityBucket(identity), playerId };
  });
  const byIdentityShard = new Map<string, Seeded[]>();
  const byPlayerShard = new Map<string, Seeded[]>();
  for (const r of rows) {
    const i = ownerOfBucket(set.map, r.bucket).id;
    const p = set.router.shardFor(r.playerId).id;
    byIdentityShard.set(i, [...(byIdentityShard.get(i) ?? []), r]);
    byPlayerShard.set(p, [...(byPlayerShard.get(p) ?? []), r]);
  }
  for (const s of set.shards) {
    const mine = byIdentityShard.get(s.id) ?? [];
    await insertIdentities(set.pool(s.id), mine);
    const listed = byPlayerShard.get(s.id) ?? [];
    await set.pool(s.id).query(
      `INSERT INTO player_identities (player_id, request_id, provider, subject, state)
       SELECT p, 'seed-' || p, 'username', s, 'linked' FROM unnest($1::int8[], $2::text[]) AS x(p, s)`,
      [listed.map((r) => String(r.playerId)), listed.map((r) => r.subject)],
    );
    await set.pool(s.id).query('VACUUM ANALYZE');
  }
  return rows;
}

async function insertIdentities(pool: pg.Pool, rows: readonly Seeded[]): Promise<void> {
  await pool.query(
    `INSERT INTO identities (bucket, provider, subject, player_id, state, request_id)
     SELECT b, 'username', s, p, 'confirmed', 'seed-' || p FROM unnest($1::int[], $2::text[], $3::int8[]) AS x(b, s, p)`,
    [rows.map((r) => r.bucket), rows.map((r) => r.subject), rows.map((r) => String(r.playerId))],
  );
}

export async function run(): Promise<BenchResult[]> {
  const count = option('identities', 'SHARDLINE_BENCH_IDENTITIES', 20_000);
  const lookups = option('lookups', 'SHARDLINE_BENCH_LOOKUPS', 2000);
  const creates = option('creates', 'SHARDLINE_BENCH_CREATES', 300);
  const base = `slbench_identity_${process.pid}_${Date.now().toString(36)}`;
  const databases: string[] = [];
  let set: ShardSet | undefined;
  let flat: pg.Pool | undefined;
  try {
    set = await benchShards(base, databases);
    const rows = await seed(set, count);

    // The baseline: every row of both tables in one database (a clone of the same migrated template).
    const flatDb = `${base}_flat`;
    await withAdmin((c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(flatDb)} TEMPLATE ${pg.escapeIdentifier(`${base}_tpl`)}`));
    databases.push(flatDb);
    flat = new pg.Pool({ connectionString: urlFor(flatDb), max: 8 });
    for (const s of set.shards) {
      const players = await set
        .pool(s.id)
        .query<{ player_id: string; region: string; nickname: string }>('SELECT player_id::text, region, nickname FROM players');
      await flat.query(`INSERT INTO players (player_id, region, nickname) SELECT * FROM unnest($1::int8[], $2::text[], $3::text[])`, [
        players.rows.map((p) => p.player_id),
        players.rows.map((p) => p.region),
        players.rows.map((p) => p.nickname),
      ]);
    }
    await insertIdentities(flat, rows);
    await flat.query('VACUUM ANALYZE');

    const accounts = new Accounts(set);
    const sample = Array.from({ length: lookups }, () => rows[Math.floor(Math.random() * rows.length)]!);
    const warm = sample.slice(0, Math.min(200, lookups));
    const pkRead = (r: Seeded) =>
      flat!.query('SELECT player_id, state, request_id FROM identities WHERE bucket = $1 AND provider = $2 AND subject = $3', [
        r.bucket,
        r.provider,
        r.subject,
      ]);
    const joinRead = (r: Seeded) =>
      flat!.query(
        `SELECT p.player_id, p.region, p.nickname, p.status, p.created_at, p.updated_at FROM identities i JOIN players p ON p.player_id = i.player_id
          WHERE i.bucket = $1 AND i.provider = $2 AND i.subject = $3`,
        [r.bucket, r.provider, r.subject],
      );
    // The same raw statement on the shards' own pools: separates shardline's overhead from the cost of 4 databases.
    const shardPkRead = (r: Seeded) =>
      set!
        .pool(ownerOfBucket(set!.map, r.bucket).id)
        .query('SELECT player_id, state, request_id FROM identities WHERE bucket = $1 AND provider = $2 AND subject = $3', [r.bucket, r.provider, r.subject]);
    const byId = (r: Seeded) => accounts.playerIdByIdentity({ provider: r.provider, subject: r.subject });
    const find = (r: Seeded) => accounts.findByIdentity({ provider: r.provider, subject: r.subject });
    for (const fn of [pkRead, shardPkRead, joinRead, byId, find]) await timeEach(warm, fn); // pools, plans, identity checks

    const check = await byId(sample[0]!);
    if (check !== sample[0]!.playerId) throw new Error(`lookup found ${check}, expected ${sample[0]!.playerId}`);
    const counter = countStatements(set);
    await byId(sample[1]!);
    const lookupRoundTrips = counter.total();

    // Interleaved in rounds, so a load spike on the machine hits both sides alike.
    const idTimes: number[] = [];
    const pkTimes: number[] = [];
    const findTimes: number[] = [];
    const joinTimes: number[] = [];
    const shardPkTimes: number[] = [];
    for (let k = 0; k < sample.length; k += 100) {
      const chunk = sample.slice(k, k + 100);
      idTimes.push(...(await timeEach(chunk, byId)));
      pkTimes.push(...(await timeEach(chunk, pkRead)));
      findTimes.push(...(await timeEach(chunk, find)));
      joinTimes.push(...(await timeEach(chunk, joinRead)));
      shardPkTimes.push(...(await timeEach(chunk, shardPkRead)));
    }
    for (const t of [idTimes, pkTimes, findTimes, joinTimes, shardPkTimes]) t.sort((a, b) => a - b);

    // Registrations, alternating with and without an identity.
    const withId: number[] = [];
    const without: number[] = [];
    const region = set.router.regions[0]!;
    counter.reset();
    await accounts.createPlayer({ region, nickname: 'rt', identity: { provider: 'username', subject: `bench-rt-${base}` } });
    const createRoundTrips = counter.total();
    for (let i = 0; i < creates; i++) {
      let t0 = performance.now();
      await accounts.createPlayer({ region, nickname: `new ${i}`, identity: { provider: 'username', subject: `bench-new-${i}` } });
      withId.push(performance.now() - t0);
      t0 = performance.now();
      await accounts.createPlayer({ region, nickname: `plain ${i}` });
      without.push(performance.now() - t0);
    }
    withId.sort((a, b) => a - b);
    without.sort((a, b) => a - b);

    const p50 = (t: number[]) => percentile(t, 50);
    const p99 = (t: number[]) => percentile(t, 99);
    return [
      {
        name: `identity: playerIdByIdentity (${set.shards.length} shards, ${rows.length} identities)`,
        unit: 'ms p50',
        value: round(p50(idTimes), 3),
        baselineName: 'the same primary-key read on one unsharded table (raw pg)',
        baseline: round(p50(pkTimes), 3),
        ratio: round(p50(pkTimes) / p50(idTimes)),
        target: '>= 0.8',
        extra: {
          p99: round(p99(idTimes), 3),
          baselineP99: round(p99(pkTimes), 3),
          rawPgOnTheShardsP50: round(p50(shardPkTimes), 3),
          roundTrips: lookupRoundTrips,
          lookups,
        },
      },
      {
        name: `identity: findByIdentity (${set.shards.length} shards)`,
        unit: 'ms p50',
        value: round(p50(findTimes), 3),
        baselineName: 'identities JOIN players on one unsharded database (raw pg)',
        baseline: round(p50(joinTimes), 3),
        ratio: round(p50(joinTimes) / p50(findTimes)),
        extra: { p99: round(p99(findTimes), 3), baselineP99: round(p99(joinTimes), 3), roundTrips: 2, lookups },
      },
      {
        name: 'identity: createPlayer with an identity',
        unit: 'ms p50',
        value: round(p50(withId), 3),
        baselineName: 'createPlayer without one',
        baseline: round(p50(without), 3),
        ratio: round(p50(without) / p50(withId)),
        extra: { p99: round(p99(withId), 3), baselineP99: round(p99(without), 3), roundTrips: createRoundTrips, baselineRoundTrips: 1, creates },
      },
    ];
  } finally {
    await flat?.end();
    await set?.close();
    await dropDatabases(databases);
  }
}

runIfMain(import.meta.url, run);
