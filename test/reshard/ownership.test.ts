import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Accounts,
  MapAheadOfOwnershipError,
  ShardOwnershipError,
  ShardSet,
  ShardlineError,
  migrateShards,
  validateShardMap,
  type PlayerId,
  type ShardMap,
} from '../../src/index.js';
import { bucketFilter } from '../../src/db/owned-filter.js';
import { ShardMigrator } from '../../src/migrate/index.js';
import type { Router } from '../../src/routing/index.js';
import { bucketOf } from '../../src/routing/player-id.js';
import { bucketOfKey } from '../../src/routing/key-bucket.js';
import { RUN_PREFIX, uniqueName, urlFor } from '../support/env.js';
import { runCli } from '../support/cli.js';
import { errorOf } from '../support/errors.js';
import { writeMapFile } from '../support/maps.js';
import { LAYOUTS, createTestShards, dropDatabases, withAdmin, type TestShards } from '../support/shards.js';

type Range = [number, number];
type Rec = { version: number; owned: [number, number, number][]; incoming: unknown[]; frozen: unknown[]; movedTo: unknown[] };

async function setOwnership(pool: pg.Pool, record: object): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query(`SET LOCAL lock_timeout = '10s'`);
    await c.query('SELECT shardline_set_ownership($1::jsonb)', [JSON.stringify(record)]);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

async function recordOf(pool: pg.Pool): Promise<Rec> {
  return (await pool.query<{ value: Rec }>(`SELECT value FROM shardline_meta WHERE key = 'ownership'`)).rows[0]!.value;
}

const inRange = (lo: number, hi: number) => `((player_id >> 10) & 4095) BETWEEN ${lo} AND ${hi}`;

/**
 * A bucket move as the mover makes it (helper MOVE builds the real one), by hand: incoming on the
 * target, copy with the fence off, freeze on the source, commit on the target at `epoch`, record
 * on the source. The source keeps its copy (not purged), as between cut-over and purge.
 */
async function simulateMove(from: pg.Pool, to: pg.Pool, toId: string, range: Range, epoch: number): Promise<void> {
  const [lo, hi] = range;
  const target = await recordOf(to);
  await setOwnership(to, { ...target, incoming: [[lo, hi, 'sim-1']] });
  for (const table of ['players', 'player_stats', 'settlement_ledger']) {
    const rows = (await from.query<{ j: string }>(`SELECT coalesce(json_agg(t), '[]')::text AS j FROM ${table} t WHERE ${inRange(lo, hi)}`)).rows[0]!.j;
    const c = await to.connect();
    try {
      await c.query('BEGIN');
      await c.query(`SET LOCAL shardline.fence = 'off'`);
      await c.query(`INSERT INTO ${table} SELECT * FROM json_populate_recordset(NULL::${table}, $1::json)`, [rows]);
      await c.query('COMMIT');
    } finally {
      c.release();
    }
  }
  const source = await recordOf(from);
  const cut = (owned: [number, number, number][]) =>
    owned.flatMap(([a, b, e]): [number, number, number][] => {
      if (b < lo || a > hi) return [[a, b, e]];
      const out: [number, number, number][] = [];
      if (a < lo) out.push([a, lo - 1, e]);
      if (b > hi) out.push([hi + 1, b, e]);
      return out;
    });
  await setOwnership(from, { ...source, owned: cut(source.owned), frozen: [[lo, hi, 'sim-1']] });
  await setOwnership(to, { ...target, owned: [...target.owned, [lo, hi, epoch]], incoming: [] });
  await setOwnership(from, { ...source, owned: cut(source.owned), frozen: [], movedTo: [...source.movedTo, [lo, hi, toId, epoch]] });
}

/**
 * Live routing over a move of half of the first shard's first range to a shard added empty (the
 * add-a-shard runbook): stale clients are refused and redirected, reads count every player once,
 * and the map file is judged against the records by epoch.
 */
describe.each(LAYOUTS)('live routing over a bucket move (%s)', (layout) => {
  let t: TestShards;
  const newDb = uniqueName(RUN_PREFIX + 'own9');
  let mapJson: Record<string, unknown> & { shards: { id: string; region: string; buckets: string[] }[] };
  let map: ShardMap;
  let source: string;
  let moved: Range;
  let base: ShardSet;
  let stale: ShardSet;
  let stale2: ShardSet;
  let stale3: ShardSet;
  let changes: Router[];
  const players: PlayerId[] = [];
  let inMoved: PlayerId[];
  const set = (m: ShardMap, o: ConstructorParameters<typeof ShardSet>[1] = {}) => new ShardSet(m, { poolMax: 2, routingRefreshMs: 0, ...o });
  const sets: ShardSet[] = [];
  const tracked = (s: ShardSet) => (sets.push(s), s);

  beforeAll(async () => {
    t = await createTestShards(layout);
    const first = t.map.shards[0]!;
    source = first.id;
    const [lo, hi] = first.buckets[0]!;
    moved = [Math.floor((lo + hi) / 2) + 1, hi];
    mapJson = structuredClone(t.mapJson) as typeof mapJson;
    mapJson.shards.push({ id: 'sz-9', region: first.region, connection: urlFor(newDb), buckets: [] } as never);
    map = validateShardMap(mapJson, { file: '<ownership test>' });
    await withAdmin((a) => a.query(`CREATE DATABASE ${pg.escapeIdentifier(newDb)}`));
    await new ShardMigrator(
      map.shards.find((s) => s.id === 'sz-9')!,
      { mapShards: map.shards },
    ).latest();
    base = tracked(set(map));
    // Players on the source, some in the range to move, made through the library.
    const accounts = new Accounts(base);
    while (players.filter((p) => bucketOf(p) >= moved[0] && bucketOf(p) <= moved[1]).length < 6 || players.length < 30) {
      const p = await accounts.createPlayer({ region: first.region, nickname: 'before' });
      if (base.router.shardFor(p.id).id === source) players.push(p.id);
    }
    inMoved = players.filter((p) => bucketOf(p) >= moved[0] && bucketOf(p) <= moved[1]);
    stale = tracked(set(map));
    stale2 = tracked(set(map));
    stale3 = tracked(set(map));
    await stale3.routerReady();
    await stale.routerReady(); // routing read before the move, never again by timer
    await stale2.routerReady();
    changes = [];
    stale.onRoutingChange((r) => changes.push(r));
  });
  afterAll(async () => {
    for (const s of sets) await s.close();
    await t?.cleanup();
    await dropDatabases([newDb]);
  });

  it('before the move: routing is the map; the empty shard owns nothing, is routable by id, and gets no new player', async () => {
    expect(base.ownedBuckets('sz-9')).toEqual([]);
    expect(base.router.shard('sz-9').id).toBe('sz-9');
    expect(await base.refreshRouting()).toBe(false);
    for (let i = 0; i < 300; i++) expect(base.router.shardFor(base.router.newPlayerId(map.shards[0]!.region)).id).not.toBe('sz-9');
    expect((await recordOf(base.pool('sz-9'))).owned).toEqual([]);
  });

  it('after the move: a client that never refreshes by timer is refused, refreshes, and writes to the new owner', async () => {
    await simulateMove(base.pool(source), base.pool('sz-9'), 'sz-9', moved, 1);
    const [p, q] = inMoved as [PlayerId, PlayerId];
    expect(stale.router.shardFor(p).id).toBe(source); // still the old routing
    await stale.transaction(p, (trx) => trx.updateTable('players').set({ nickname: 'redirected' }).where('player_id', '=', p).execute());
    expect(stale.router.shardFor(p).id).toBe('sz-9');
    expect(changes.length).toBe(1);
    const nick = async (shard: string, id: PlayerId) =>
      (await base.pool(shard).query<{ nickname: string }>('SELECT nickname FROM players WHERE player_id = $1', [String(id)])).rows[0]?.nickname;
    expect(await nick('sz-9', p)).toBe('redirected');
    expect(await nick(source, p)).toBe('before'); // the stale copy was not written
    // Another stale client, through Accounts: updateProfile is refused by the source, then lands on sz-9.
    expect(stale2.router.shardFor(q).id).toBe(source);
    const updated = await new Accounts(stale2).updateProfile(q, { nickname: 'via-accounts' });
    expect(updated.nickname).toBe('via-accounts');
    expect(await nick('sz-9', q)).toBe('via-accounts');
    expect(await nick(source, q)).toBe('before');
  });

  it('an identity registration on a stale client lands its directory row on the new owner of its bucket', async () => {
    let subject = '';
    for (let i = 0; ; i++) {
      const b = bucketOfKey(`device:stale-${i}`);
      if (b >= moved[0] && b <= moved[1]) {
        subject = `stale-${i}`;
        break;
      }
    }
    const p = await new Accounts(stale3).createPlayer({ region: map.shards[0]!.region, nickname: 'ident', identity: { provider: 'device', subject } });
    const where = async (shard: string) =>
      (await base.pool(shard).query<{ n: number }>(`SELECT count(*)::int AS n FROM identities WHERE provider = 'device' AND subject = $1`, [subject])).rows[0]
        ?.n;
    expect(await where('sz-9')).toBe(1);
    expect(await where(source)).toBe(0);
    // A client reading routing now finds it (a client that never refreshes reads the old owner until it does).
    expect(await new Accounts(tracked(set(map))).playerIdByIdentity({ provider: 'device', subject })).toBe(p.id);
  });

  it('reads count every player once while the source still holds its copy', async () => {
    const fresh = tracked(set(map));
    const got = await new Accounts(fresh).getPlayers(players);
    expect(got.missing).toEqual([]);
    expect(got.players.length).toBe(players.length);
    expect(new Set(got.players.map((p) => String(p.id))).size).toBe(players.length);
    expect(got.players.find((p) => p.id === inMoved[0])?.nickname).toBe('redirected');
    const ids = players.map(String);
    const count = async (limited: boolean) => {
      const r = await fresh.scatter(async (db, shard) => {
        const q = db
          .selectFrom('players')
          .select(sql<string>`count(*)`.as('n'))
          .where(sql<boolean>`player_id = ANY(${ids}::bigint[])`);
        return Number((await (limited ? q.where(bucketFilter('player_id', fresh.ownedBuckets(shard.id))) : q).executeTakeFirstOrThrow()).n);
      });
      return r.results.reduce((a, b) => a + b.value, 0);
    };
    expect(await count(false)).toBe(players.length + inMoved.length); // the unpurged copy
    expect(await count(true)).toBe(players.length);
    expect(fresh.ownedBuckets('sz-9')).toEqual([moved]);
  });

  it('a map older than the records is overridden, with one warning naming the ranges and how to write the current map', async () => {
    const warnings: string[] = [];
    const logger = { warn: (_fields: unknown, message?: string) => void warnings.push(String(message)) };
    const fresh = tracked(set(map, { logger: logger }));
    const router = await fresh.routerReady();
    expect(router.shardFor(inMoved[0]!).id).toBe('sz-9');
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toMatch(new RegExp(`buckets ${moved[0]}-${moved[1]} of "${source}" are owned by "sz-9" since epoch 1`));
    expect(warnings[0]).toMatch(/shardline buckets move … --write-map FILE/);
    expect(warnings[0]).toMatch(/shardline map write/);
    expect(await fresh.refreshRouting()).toBe(false);
    expect(warnings.length).toBe(1);
  });

  it('the current map at the new epoch routes the same, without a warning', async () => {
    const json = structuredClone(mapJson);
    const src = json.shards.find((s) => s.id === source)!;
    src.buckets = [`${map.shards[0]!.buckets[0]![0]}-${moved[0] - 1}`, ...src.buckets.slice(1)];
    json.shards.find((s) => s.id === 'sz-9')!.buckets = [`${moved[0]}-${moved[1]}`];
    const warnings: string[] = [];
    const current = tracked(set(validateShardMap({ ...json, epoch: 1 }), { logger: { warn: (_f: unknown, m?: string) => void warnings.push(String(m)) } }));
    expect((await current.routerReady()).shardFor(inMoved[0]!).id).toBe('sz-9');
    expect(warnings).toEqual([]);
    // A later epoch that agrees with the records is fine too.
    const later = tracked(set(validateShardMap({ ...json, epoch: 5 })));
    expect((await later.routerReady()).shardFor(inMoved[0]!).id).toBe('sz-9');
  });

  it('shardline map write writes the current map: the new owners at the live epoch, which then routes without a warning', async () => {
    const file = writeMapFile(mapJson);
    const out = path.join(path.dirname(file), 'current.json');
    const r = await runCli(['map', 'write', out, '--map', file]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const written = JSON.parse(readFileSync(out, 'utf8')) as typeof mapJson & { epoch: number };
    expect(written.epoch).toBe(1);
    expect(written.shards.find((s) => s.id === 'sz-9')?.buckets).toEqual([`${moved[0]}-${moved[1]}`]);
    const warnings: string[] = [];
    const current = tracked(set(validateShardMap(written), { logger: { warn: (_f: unknown, m?: string) => void warnings.push(String(m)) } }));
    expect((await current.routerReady()).shardFor(inMoved[0]!).id).toBe('sz-9');
    expect(warnings).toEqual([]);
  });

  it('a map giving the moved range back to the source at the live epoch is refused (ShardOwnershipError), above it MapAheadOfOwnershipError', async () => {
    const atLive = tracked(set(validateShardMap({ ...mapJson, epoch: 1 })));
    const err = await errorOf(new Accounts(atLive).getPlayer(inMoved[0]!));
    expect(err).toBeInstanceOf(ShardOwnershipError);
    expect((err as Error).message).toMatch(/sz-9/);
    const ahead = tracked(set(validateShardMap({ ...mapJson, epoch: 2 })));
    const e2 = await errorOf(ahead.routerReady());
    expect(e2).toBeInstanceOf(MapAheadOfOwnershipError);
    expect(e2).toMatchObject({
      code: 'MAP_AHEAD_OF_OWNERSHIP',
      mapEpoch: 2,
      claims: [{ buckets: `${moved[0]}-${moved[1]}`, mapShard: source, owner: 'sz-9', liveEpoch: 1 }],
    });
    expect((e2 as Error).message).toMatch(/--write-map FILE/);
    // Nothing is written through either.
    for (const bad of [atLive, ahead]) {
      expect(await errorOf(new Accounts(bad).createPlayer({ region: map.shards[0]!.region, nickname: 'through-a-bad-map' }))).toBeInstanceOf(ShardlineError);
    }
    const n = await base.pool(source).query<{ n: number }>(`SELECT count(*)::int AS n FROM players WHERE nickname = 'through-a-bad-map'`);
    expect(n.rows[0]?.n).toBe(0);
  });

  it('migrate refuses a shard with a move in progress (incoming or frozen), with ShardInMoveError', async () => {
    const pool = base.pool('sz-9');
    const before = await recordOf(pool);
    const spare = map.shards.find((s) => s.id === source)!.buckets[0]!;
    try {
      await setOwnership(pool, { ...before, incoming: [[spare[0], spare[0] + 3, 'mv-pending']] });
      const results = await migrateShards(
        map.shards.filter((s) => s.id === 'sz-9'),
        'latest',
        { mapShards: map.shards },
      );
      expect(results[0]).toMatchObject({ shardId: 'sz-9', ok: false, errorCode: 'SHARD_IN_MOVE' });
      expect(results[0]?.error).toMatch(/mv-pending/);
    } finally {
      await setOwnership(pool, { ...before, incoming: [] });
    }
    const ok = await migrateShards(
      map.shards.filter((s) => s.id === 'sz-9'),
      'latest',
      { mapShards: map.shards },
    );
    expect(ok[0]).toMatchObject({ ok: true });
  });
});
