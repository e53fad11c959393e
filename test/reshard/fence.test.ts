import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketMovedError, BucketMovingError, ShardSet, type PlayerId } from '../../src/index.js';
import { bucketRefusalOf, isBucketMoved } from '../../src/db/pg-errors.js';
import { ShardMigrator } from '../../src/migrate/index.js';
import { bucketOf, encodePlayerId } from '../../src/routing/player-id.js';
import { bucketOfKey } from '../../src/routing/key-bucket.js';
import { errorOf } from '../support/errors.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';
import { sleep } from '../support/wait.js';

type Range = [number, number];

/** Writes an ownership record on a shard as the mover would: in its own transaction, with a lock timeout. */
async function setOwnership(pool: pg.Pool, record: object, lockTimeout = '10s'): Promise<number> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query(`SET LOCAL lock_timeout = '${lockTimeout}'`);
    const r = await c.query<{ v: number }>('SELECT shardline_set_ownership($1::jsonb) AS v', [JSON.stringify(record)]);
    await c.query('COMMIT');
    return r.rows[0]?.v as number;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

interface Rec {
  version: number;
  owned: [number, number, number][];
  frozen: unknown[];
  movedTo: unknown[];
}

async function recordOf(pool: pg.Pool): Promise<Rec> {
  return (await pool.query<{ value: Rec }>(`SELECT value FROM shardline_meta WHERE key = 'ownership'`)).rows[0]!.value;
}

/** A key whose home bucket (sha256) falls in `range`, tried from `prefix`0, `prefix`1, … */
function keyIn(range: Range, prefix: string, of: (k: string) => number = bucketOfKey): string {
  for (let i = 0; ; i++) {
    const k = `${prefix}${i}`;
    const b = of(k);
    if (b >= range[0] && b <= range[1]) return k;
  }
}

const idIn = (bucket: number, seq = 1): PlayerId => encodePlayerId({ time: Date.now() - 1704067200000, bucket, seq });

describe.each(LAYOUTS)('the fence, inside the database (%s)', (layout) => {
  let t: TestShards;
  let shardA: string;
  let ownedA: Range;
  /** The upper half of A's first range: the range "moved away" in these tests. */
  let moved: Range;
  /** Another part of A's range, frozen in a cut-over. */
  let frozen: Range;
  let kept: Range;
  let movedTo: string;
  let pool: pg.Pool;
  let inMoved: PlayerId;
  let inFrozen: PlayerId;
  let inKept: PlayerId;
  /** Clients that read routing before the fence moved and never refresh it by timer (in one-shard the range "moves" off the map). */
  let quick: ShardSet;
  let patient: ShardSet;

  beforeAll(async () => {
    t = await createTestShards(layout);
    const a = t.map.shards[0]!;
    shardA = a.id;
    ownedA = [a.buckets[0]![0], a.buckets[0]![1]];
    const mid = Math.floor((ownedA[0] + ownedA[1]) / 2);
    kept = [ownedA[0], mid - 10];
    frozen = [mid - 9, mid];
    moved = [mid + 1, ownedA[1]];
    movedTo = t.map.shards[1]?.id ?? 'elsewhere-1';
    pool = t.shardSet.pool(shardA);
    // Players in each part, minted and inserted before any fence moves (as createPlayer does).
    const mint = async (bucket: number) =>
      BigInt(
        (
          await pool.query<{ id: string }>(
            `INSERT INTO players (player_id, region, nickname) VALUES (shardline_player_id($1), $2, 'fenced') RETURNING player_id AS id`,
            [bucket, a.region],
          )
        ).rows[0]!.id,
      ) as PlayerId;
    inMoved = await mint(moved[0] + 1);
    inFrozen = await mint(frozen[0]);
    inKept = await mint(kept[0] + 1);
    for (const p of [inMoved, inFrozen, inKept]) {
      await pool.query(`INSERT INTO player_stats (player_id, game_id, score) VALUES ($1, 'chess', 10)`, [String(p)]);
    }
    quick = new ShardSet(t.map, { poolMax: 2, routingRefreshMs: 0, freezeWaitMs: 400 });
    patient = new ShardSet(t.map, { poolMax: 2, routingRefreshMs: 0, freezeWaitMs: 8000 });
    for (const s of [t.shardSet, quick, patient]) await s.routerReady();
    const others: [number, number, number][] = a.buckets.slice(1).map(([lo, hi]) => [lo, hi, 0]);
    await setOwnership(pool, {
      owned: [[kept[0], kept[1], 0], ...others],
      frozen: [[frozen[0], frozen[1], 'mv-test']],
      movedTo: [[moved[0], moved[1], movedTo, 1]],
    });
  });
  afterAll(async () => {
    await quick?.close();
    await patient?.close();
    await t?.cleanup();
  });

  it('the record is the one written, version + 1, and the triggers are on every fenced table', async () => {
    const r = await recordOf(pool);
    expect(r.version).toBe(2);
    const { rows } = await pool.query<{ rel: string; n: string }>(
      `SELECT tgrelid::regclass::text AS rel, count(*)::text AS n FROM pg_trigger WHERE tgname LIKE 'shardline_fence_%' GROUP BY 1 ORDER BY 1`,
    );
    // Other player tables of later migrations are fenced as well: these at least.
    expect(Object.fromEntries(rows.map((x) => [x.rel, Number(x.n)]))).toMatchObject({
      identities: 2,
      player_identities: 2,
      player_stats: 2,
      players: 2,
      settlement_inbox_claims: 1,
      settlement_ledger: 2,
    });
  });

  it('every write path to a moved bucket is refused in the database and maps to BucketMovedError', async () => {
    const pid = String(inMoved);
    const writes: [string, string, unknown[]][] = [
      ['createPlayer', `INSERT INTO players (player_id, region, nickname) VALUES (shardline_player_id($1), 'x', 'n')`, [moved[0]]],
      ['updateProfile', `UPDATE players SET nickname = 'stale' WHERE player_id = $1`, [pid]],
      [
        'ledger',
        `INSERT INTO settlement_ledger (match_id, player_id, game_id, score_delta, outcome, ended_at) VALUES ('m-f', $1, 'chess', 3, 'win', now())`,
        [pid],
      ],
      ['stats', `UPDATE player_stats SET score = score + 3 WHERE player_id = $1`, [pid]],
      ['stats insert', `INSERT INTO player_stats (player_id, game_id) VALUES ($1, 'go')`, [pid]],
      [
        'claim',
        `INSERT INTO settlement_inbox_claims (match_id, content_hash, game_id, shard_ids, player_count) VALUES ($1, 'h', 'chess', '{}', 1)`,
        [keyIn(moved, 'match-')],
      ],
      [
        'identity',
        `INSERT INTO identities (bucket, provider, subject, player_id, state, request_id) VALUES ($1, 'device', $2, $3, 'pending', 'r1')`,
        ((s: string) => [bucketOfKey(`device:${s}`), s, pid])(keyIn(moved, 'dev-', (k) => bucketOfKey(`device:${k}`))),
      ],
      ['player identity', `INSERT INTO player_identities (player_id, request_id, provider, subject, state) VALUES ($1, 'r1', 'device', 'd', 'linked')`, [pid]],
      ['delete', `DELETE FROM players WHERE player_id = $1`, [pid]],
    ];
    for (const [what, text, values] of writes) {
      const raw = await errorOf(pool.query(text, values));
      expect(bucketRefusalOf(raw), what).toMatchObject({ kind: 'moved', movedTo, epoch: 1 });
      expect(isBucketMoved(raw), what).toBe(true);
      const mapped = await errorOf(
        t.shardSet.withShard(shardA, (db) => sql.raw(text.replace(/\$(\d)/g, (_, i) => pgLiteral(values[Number(i) - 1]))).execute(db)),
      );
      expect(mapped, what).toBeInstanceOf(BucketMovedError);
      expect(mapped, what).toMatchObject({ code: 'BUCKET_MOVED', shardId: shardA, movedTo, epoch: 1 });
      expect((mapped as BucketMovedError).bucket, what).toBeGreaterThanOrEqual(moved[0]);
    }
    // Nothing changed: the player and its stats are as they were on A.
    const row = (await pool.query(`SELECT p.nickname, s.score FROM players p JOIN player_stats s USING (player_id) WHERE player_id = $1`, [pid])).rows[0];
    expect(row).toEqual({ nickname: 'fenced', score: 10n });
  });

  it('writes to a kept bucket pass, and the mover passes the fence with shardline.fence = off', async () => {
    await pool.query(`UPDATE players SET nickname = 'kept' WHERE player_id = $1`, [String(inKept)]);
    await pool.query(
      `INSERT INTO settlement_ledger (match_id, player_id, game_id, score_delta, outcome, ended_at) VALUES ('m-k', $1, 'chess', 1, 'win', now())`,
      [String(inKept)],
    );
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      await c.query(`SET LOCAL shardline.fence = 'off'`);
      await c.query(`INSERT INTO players (player_id, region, nickname) VALUES ($1, 'x', 'copied')`, [String(idIn(moved[1], 7))]);
      await c.query(`DELETE FROM players WHERE player_id = $1`, [String(idIn(moved[1], 7))]);
      await c.query('COMMIT');
    } finally {
      c.release();
    }
  });

  it('a frozen bucket is refused as moving: BucketMovingError, transient; a transaction backs off, then throws it', async () => {
    const raw = await errorOf(pool.query(`UPDATE players SET nickname = 'x' WHERE player_id = $1`, [String(inFrozen)]));
    expect(bucketRefusalOf(raw)).toMatchObject({ kind: 'moving', bucket: bucketOf(inFrozen) });
    const shards = quick;
    {
      let calls = 0;
      const err = await errorOf(
        shards.transaction(inFrozen, async (trx) => {
          calls++;
          await trx.updateTable('players').set({ nickname: 'x' }).where('player_id', '=', inFrozen).execute();
        }),
      );
      expect(err).toBeInstanceOf(BucketMovingError);
      expect(err).toMatchObject({ code: 'BUCKET_MOVING', transient: true, shardId: shardA, bucket: bucketOf(inFrozen) });
      expect(calls).toBeGreaterThan(1); // it backed off and tried again
    }
  });

  it('a transaction waiting on a frozen bucket commits once the cut-over ends (here: the range is unfrozen)', async () => {
    const shards = patient;
    const before = await recordOf(pool);
    try {
      const done = shards.transaction(inFrozen, (trx) =>
        trx.updateTable('players').set({ nickname: 'after-freeze' }).where('player_id', '=', inFrozen).execute(),
      );
      await sleep(300);
      await setOwnership(pool, { ...before, owned: [...before.owned, [frozen[0], frozen[1], 0]], frozen: [] });
      await done;
      expect((await pool.query(`SELECT nickname FROM players WHERE player_id = $1`, [String(inFrozen)])).rows[0].nickname).toBe('after-freeze');
    } finally {
      await setOwnership(pool, before);
    }
  });

  it('a repeatable-read transaction whose snapshot predates the fence is refused', async () => {
    const before = await recordOf(pool);
    const rr = await pool.connect();
    try {
      await rr.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await rr.query('SELECT count(*) FROM players'); // the snapshot is taken here
      // The fence moves on: the kept range goes too (a reader does not hold it up).
      await setOwnership(pool, {
        ...before,
        owned: before.owned.filter(([lo]) => lo !== kept[0]),
        movedTo: [...before.movedTo, [kept[0], kept[1], movedTo, 2]],
      });
      const err = await errorOf(rr.query(`UPDATE players SET nickname = 'rr' WHERE player_id = $1`, [String(inKept)]));
      expect(bucketRefusalOf(err)).toMatchObject({ kind: 'moved', movedTo, epoch: 2 });
      await rr.query('ROLLBACK');
    } finally {
      rr.release();
      await setOwnership(pool, before);
    }
  });

  it('shardline_set_ownership waits out an open writer: its write commits before the fence, nothing after it', async () => {
    const before = await recordOf(pool);
    const writer = await pool.connect();
    try {
      await writer.query('BEGIN');
      await writer.query(`UPDATE players SET nickname = 'in-flight' WHERE player_id = $1`, [String(inKept)]);
      // With a short lock timeout the fence gives up behind the open writer, changing nothing.
      const timedOut = await errorOf(setOwnership(pool, { ...before, owned: [] }, '200ms'));
      expect((timedOut as { code?: string }).code).toBe('55P03');
      expect((await recordOf(pool)).version).toBe(before.version);
      // With a longer one it waits for the writer, which commits under the old fence.
      let fenced = false;
      const fence = setOwnership(pool, { ...before, owned: before.owned.filter(([lo]) => lo !== kept[0]), movedTo: [[kept[0], kept[1], movedTo, 3]] }).then(
        (v) => {
          fenced = true;
          return v;
        },
      );
      await sleep(300);
      expect(fenced).toBe(false);
      await writer.query('COMMIT');
      expect(await fence).toBe(before.version + 1);
      expect((await pool.query(`SELECT nickname FROM players WHERE player_id = $1`, [String(inKept)])).rows[0].nickname).toBe('in-flight');
      const after = await errorOf(pool.query(`UPDATE players SET nickname = 'late' WHERE player_id = $1`, [String(inKept)]));
      expect(bucketRefusalOf(after)).toMatchObject({ kind: 'moved', epoch: 3 });
    } finally {
      writer.release();
      await setOwnership(pool, before);
    }
  });

  it('an app player table made by an app migration is fenced too', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'shardline-fence-app-'));
    writeFileSync(
      path.join(dir, '20260101_wallets.js'),
      `export async function up(knex) { await knex.raw('CREATE TABLE wallets (player_id bigint NOT NULL, coins integer NOT NULL DEFAULT 0, PRIMARY KEY (player_id))'); }
       export async function down(knex) { await knex.raw('DROP TABLE wallets'); }`,
    );
    const spec = t.map.shards[0]!;
    await new ShardMigrator(spec, { appMigrations: dir }).appUp('20260101_wallets');
    await pool.query(`INSERT INTO wallets (player_id, coins) VALUES ($1, 5)`, [String(inKept)]);
    const err = await errorOf(pool.query(`INSERT INTO wallets (player_id, coins) VALUES ($1, 5)`, [String(inMoved)]));
    expect(bucketRefusalOf(err)).toMatchObject({ kind: 'moved', movedTo, epoch: 1 });
    const mapped = await errorOf(t.shardSet.withShard(shardA, (db) => sql`INSERT INTO wallets (player_id) VALUES (${String(inMoved)}::bigint)`.execute(db)));
    expect(mapped).toBeInstanceOf(BucketMovedError);
  });

  it('only the owner role may change ownership or the fence; the application role reads the record', async () => {
    const { rows } = await pool.query<Record<string, boolean>>(
      `SELECT has_function_privilege('shardline_app', 'shardline_set_ownership(jsonb)', 'EXECUTE') AS set,
              has_function_privilege('shardline_app', 'shardline_apply_fence()', 'EXECUTE') AS apply,
              has_table_privilege('shardline_app', 'shardline_meta', 'SELECT') AS read,
              has_table_privilege('shardline_app', 'shardline_meta', 'UPDATE') AS write`,
    );
    expect(rows[0]).toEqual({ set: false, apply: false, read: true, write: false });
  });

  it('shardline_set_ownership refuses a malformed record and a range both owned and frozen', async () => {
    for (const bad of [
      { owned: [[0, 4096, 0]] },
      { owned: [[5, 1, 0]] },
      { owned: 'all' },
      { owned: [[0, 10, 0]], frozen: [[5, 6, 'm']] },
      { movedTo: [[0, 1, 2, 3]] },
    ]) {
      expect(((await errorOf(setOwnership(pool, bad))) as { code?: string }).code, JSON.stringify(bad)).toBe('22023');
    }
  });
});

function pgLiteral(v: unknown): string {
  return typeof v === 'number' ? String(v) : `'${String(v).replace(/'/g, "''")}'`;
}
