import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis, type RedisOptions } from 'ioredis';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Accounts,
  Leaderboards,
  PlayerNotFoundError,
  ShardMigrator,
  SchemaVersionError,
  ShardSet,
  ValidationError,
  expectedVersion,
  migrateShards,
  schemaStatus,
  validateShardMap,
  type Player,
  type ShardMap,
} from '../../src/index.js';
import { migrationNames } from '../../src/migrate/migration-source.js';
import { SettlementClient, SettlementWorker, jobIdFor, type SettlementInput, type SettlementStatus } from '../../src/settlement/index.js';
import { runCli, startCli } from '../support/cli.js';
import { startEmbeddedPg, within, type EmbeddedPg } from '../support/embedded-pg.js';
import { REDIS_URL } from '../support/env.js';
import { writeMapFile } from '../support/maps.js';
import { waitFor } from '../support/wait.js';

/**
 * The production recipe on a private server with password auth: an owner role that runs the
 * migrations and owns every table, a NOLOGIN application role the migrations grant DML to (with a
 * non-default name, to show it is configurable), and a login role that is only a member of it.
 */
const OWNER = 'shardline_owner';
const OWNER_PW = `owner-${randomBytes(6).toString('hex')}`;
const APP_ROLE = 'game_app';
const LOGIN = 'game_api';
const LOGIN_PW = `api-${randomBytes(6).toString('hex')}`;
const DBS = ['lp_shard_1', 'lp_shard_2'];
const opts = { connectionTimeoutMs: 10_000, poolMax: 2 };

let server: EmbeddedPg;
let ownerMap: ShardMap;
let appMap: ShardMap;
let app: ShardSet;

/** The map the tests use; connections come from $LP_1 and $LP_2 (a subprocess gets them in its environment). */
const MAP_JSON = {
  version: 1,
  buckets: 4096,
  regions: ['shenzhen', 'sichuan'],
  shards: [
    { id: 'lp-1', region: 'shenzhen', connection: 'env:LP_1', buckets: ['0-2047'] },
    { id: 'lp-2', region: 'sichuan', connection: 'env:LP_2', buckets: ['2048-4095'] },
  ],
};

/** The connection URLs of both shards as `user`: what $LP_1 and $LP_2 hold. */
function envAs(user: string, password: string): { LP_1: string; LP_2: string } {
  return { LP_1: server.urlFor(DBS[0]!, { user, password }), LP_2: server.urlFor(DBS[1]!, { user, password }) };
}

function mapAs(user: string, password: string): ShardMap {
  return validateShardMap(MAP_JSON, { env: envAs(user, password) });
}

beforeAll(async () => {
  server = await startEmbeddedPg({ name: 'roles', password: `su-${randomBytes(6).toString('hex')}` });
  await server.admin(async (c) => {
    // What an operator does once per server: an owner that may create the NOLOGIN app role.
    await c.query(`CREATE ROLE ${OWNER} LOGIN CREATEROLE PASSWORD '${OWNER_PW}'`);
    for (const db of DBS) await c.query(`CREATE DATABASE ${db} OWNER ${OWNER}`);
  });
  ownerMap = mapAs(OWNER, OWNER_PW);
  const results = await migrateShards(ownerMap.shards, 'latest', { ...opts, appRole: APP_ROLE });
  expect(results.map((r) => [r.shardId, r.ok, r.error])).toEqual([
    ['lp-1', true, undefined],
    ['lp-2', true, undefined],
  ]);
  // ...and once migrated: the login the game servers use, a member of the app role and nothing else.
  await server.admin((c) => c.query(`CREATE ROLE ${LOGIN} LOGIN PASSWORD '${LOGIN_PW}' IN ROLE ${APP_ROLE}`));
  appMap = mapAs(LOGIN, LOGIN_PW);
  app = new ShardSet(appMap, opts);
}, 120_000);

afterAll(async () => {
  await app?.close();
  await server?.destroy();
});

/** The suite's shared Redis (settlement queues only; the data being tested is in Postgres). */
function redisOptions(): RedisOptions {
  const u = new URL(REDIS_URL);
  return { host: u.hostname, port: Number(u.port || 6379), db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0 };
}

/** Deletes this test's queue keys (never FLUSHALL: other test files share the Redis). */
async function deleteKeys(prefix: string): Promise<void> {
  const r = new Redis(redisOptions());
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await r.del(...keys);
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
}

/** A raw connection to a shard as the application login, for statements the library never sends. */
async function asApp<T>(fn: (c: pg.Client) => Promise<T>, db = DBS[0]!): Promise<T> {
  const c = new pg.Client({ connectionString: server.urlFor(db, { user: LOGIN, password: LOGIN_PW }), connectionTimeoutMillis: 10_000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** The SQLSTATE `statement` fails with (undefined if it succeeds), inside the caller's transaction. */
async function refusal(c: pg.Client, statement: string): Promise<string | undefined> {
  try {
    await c.query('SAVEPOINT probe');
    await c.query(statement);
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  } finally {
    await c.query('ROLLBACK TO SAVEPOINT probe').catch(() => undefined);
  }
}

/** Owner, SECURITY DEFINER, pinned settings and EXECUTE rights of the functions named `name`. */
async function functionRights(c: pg.Client, name: string) {
  const r = await c.query<{ owner: string; definer: boolean; config: string[] | null; public_execute: boolean; app_execute: boolean }>(
    `SELECT pg_get_userbyid(p.proowner) AS owner, p.prosecdef AS definer, p.proconfig AS config,
            EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS public_execute,
            has_function_privilege(current_user, p.oid, 'EXECUTE') AS app_execute
     FROM pg_proc p WHERE p.proname = $1`,
    [name],
  );
  return r.rows;
}

describe('least privilege: the application role', () => {
  it('runs the library: identity check, routing, accounts, leaderboards, schema check', async () => {
    const accounts = new Accounts(app);
    const sz = await accounts.createPlayer({ region: 'shenzhen', nickname: 'Ada' });
    const sc = await accounts.createPlayer({ region: 'sichuan', nickname: 'Lin' });
    expect(app.router.shardFor(sz.id).id).toBe('lp-1');
    expect(app.router.shardFor(sc.id).id).toBe('lp-2');
    expect((await accounts.getPlayers([sz.id, sc.id])).players.map((p) => p.nickname)).toEqual(['Ada', 'Lin']);
    expect((await accounts.updateProfile(sz.id, { nickname: 'Ada L.', status: 'suspended' })).nickname).toBe('Ada L.');
    expect((await accounts.getStats(sc.id, 'chess')).gamesPlayed).toBe(0);
    expect((await accounts.getMatchHistory(sc.id)).items).toEqual([]);

    // What settlement writes (ledger, stats, inbox): plain DML on the player tables.
    const db = await app.db('lp-2');
    await db
      .insertInto('settlement_ledger')
      .values({ match_id: 'm-1', player_id: sc.id, game_id: 'chess', score_delta: 12, outcome: 'win', ended_at: new Date() })
      .execute();
    await db.insertInto('player_stats').values({ player_id: sc.id, game_id: 'chess', score: 12n, wins: 1, games_played: 1, last_match_id: 'm-1' }).execute();
    await db.updateTable('player_stats').set({ score: 15n }).where('player_id', '=', sc.id).execute();
    expect((await accounts.getMatchHistory(sc.id)).items.map((i) => i.matchId)).toEqual(['m-1']);
    expect((await new Leaderboards(app).topScores('chess')).map((e) => [e.nickname, e.score])).toEqual([['Lin', 15n]]);

    // The worker's schema-version check, through shardline_applied_migrations(): the role has no
    // grant on knex_migrations (the next tests show it).
    for (const shard of appMap.shards) await new ShardMigrator(shard, opts).assertCurrent();
    const status = await schemaStatus(appMap.shards, opts);
    expect(status.shards.map((s) => [s.reachable, s.version])).toEqual([
      [true, expectedVersion()],
      [true, expectedVersion()],
    ]);
  });

  it('settles a match end to end: submit, then the worker applies it on both shards', async () => {
    const prefix = `slsec_${randomBytes(4).toString('hex')}`;
    const accounts = new Accounts(app);
    const [a, b] = [await accounts.createPlayer({ region: 'shenzhen', nickname: 'p1' }), await accounts.createPlayer({ region: 'sichuan', nickname: 'p2' })];
    const silent = pino({ level: 'silent' });
    const client = new SettlementClient({ shards: app, connection: redisOptions(), prefix, logger: silent });
    const worker = new SettlementWorker({ shards: app, connection: redisOptions(), prefix, logger: silent, lingerMs: 5 });
    try {
      await worker.start();
      const matchId = `lp-${randomBytes(4).toString('hex')}`;
      await client.submitSettlement({
        matchId,
        gameId: 'go',
        endedAt: new Date().toISOString(),
        results: [
          { playerId: String(a.id), scoreDelta: 5, outcome: 'win' },
          { playerId: String(b.id), scoreDelta: -5, outcome: 'loss' },
        ],
      });
      await waitFor('settlement of the match', async () => (await client.settlementStatus(matchId))?.state === 'applied', 60_000);
      expect([(await accounts.getStats(a.id, 'go')).score, (await accounts.getStats(b.id, 'go')).score]).toEqual([5n, -5n]);
    } finally {
      await worker.stop(5000);
      await client.close();
      await deleteKeys(prefix);
    }
  });

  it('reads, writes and deletes in the settlement inbox tables', async () => {
    await asApp(async (c) => {
      const tables = await c.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 'settlement_inbox%' ORDER BY 1`,
      );
      expect(tables.rows.length).toBeGreaterThan(0); // migration 0002 is there
      for (const { table_name } of tables.rows) {
        for (const privilege of ['SELECT', 'INSERT', 'UPDATE', 'DELETE']) {
          const r = await c.query<{ ok: boolean }>(`SELECT has_table_privilege(current_user, $1, $2) AS ok`, [table_name, privilege]);
          expect({ table_name, privilege, ok: r.rows[0]?.ok }).toEqual({ table_name, privilege, ok: true });
        }
      }
      await c.query('BEGIN');
      await c.query(
        `INSERT INTO settlement_inbox (match_id, content_hash, game_id, ended_at, results, shard_ids) VALUES ('m-x', 'h', 'chess', now(), '[]', '{lp-1}')`,
      );
      await c.query(`UPDATE settlement_inbox SET status = 'applied' WHERE match_id = 'm-x'`);
      await c.query(`DELETE FROM settlement_inbox WHERE match_id = 'm-x'`);
      await c.query('ROLLBACK');
    });
  });

  it('reads, writes and deletes in the login identity tables (0008), never TRUNCATE, and runs the identity protocol', async () => {
    await asApp(async (c) => {
      for (const table_name of ['identities', 'player_identities']) {
        for (const [privilege, granted] of [
          ['SELECT', true],
          ['INSERT', true],
          ['UPDATE', true],
          ['DELETE', true],
          ['TRUNCATE', false],
          ['REFERENCES', false],
          ['TRIGGER', false],
        ] as const) {
          const r = await c.query<{ ok: boolean }>(`SELECT has_table_privilege(current_user, $1, $2) AS ok`, [table_name, privilege]);
          expect({ table_name, privilege, ok: r.rows[0]?.ok }).toEqual({ table_name, privilege, ok: granted });
        }
      }
      await c.query('BEGIN');
      expect(await refusal(c, 'DROP TABLE identities')).toBe('42501');
      expect(await refusal(c, 'ALTER TABLE identities DROP CONSTRAINT identities_bucket_check')).toBe('42501');
      await c.query('ROLLBACK');
    });
    const accounts = new Accounts(app, { identityLeaseMs: 1000 });
    const p = await accounts.createPlayer({ region: 'sichuan', nickname: 'Mei', identity: { provider: 'username', subject: 'Mei' }, requestId: 'lp-req-1' });
    expect(
      await accounts.createPlayer({ region: 'sichuan', nickname: 'Mei', identity: { provider: 'username', subject: 'MEI' }, requestId: 'lp-req-1' }),
    ).toEqual(p);
    await accounts.linkIdentity(p.id, { provider: 'steam', subject: '76561198000000001' });
    await accounts.unlinkIdentity(p.id, { provider: 'username', subject: 'mei' });
    expect((await accounts.findByIdentity({ provider: 'steam', subject: '76561198000000001' }))?.id).toBe(p.id);
    expect(await accounts.playerIdByIdentity({ provider: 'username', subject: 'Mei' })).toBeNull();
    expect(await accounts.resolvePendingIdentities({ olderThanMs: 0 })).toEqual({ confirmed: 0, released: 0, unavailableShards: [] });
  });

  it('is refused DDL, TRUNCATE and any write to the migration and identity tables', async () => {
    await asApp(async (c) => {
      await c.query('BEGIN');
      const refused: Record<string, string | undefined> = {};
      for (const statement of [
        'DROP TABLE players',
        'ALTER TABLE players ADD COLUMN hacked text',
        'ALTER TABLE players DROP CONSTRAINT players_status_check',
        'CREATE TABLE stash (x int)',
        'CREATE INDEX players_by_nickname ON players (nickname)',
        `CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
        'TRUNCATE players CASCADE',
        'DROP FUNCTION shardline_player_id(integer)',
        'SELECT name FROM knex_migrations ORDER BY id',
        `INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('9999_fake', 99, now())`,
        `UPDATE knex_migrations SET name = 'x'`,
        'DELETE FROM knex_migrations',
        'SELECT * FROM knex_migrations_lock',
        'INSERT INTO knex_migrations_lock (is_locked) VALUES (0)',
        'UPDATE knex_migrations_lock SET is_locked = 1',
        'DELETE FROM knex_migrations_lock',
        // Nor can it swap the owner's function for one that lies about the version.
        `CREATE OR REPLACE FUNCTION shardline_applied_migrations() RETURNS text[] LANGUAGE sql AS 'SELECT ARRAY[''9999_fake'']'`,
        'ALTER FUNCTION shardline_applied_migrations() SECURITY INVOKER',
        'DROP FUNCTION shardline_applied_migrations()',
        `UPDATE shardline_meta SET value = '{}'`,
        `INSERT INTO shardline_meta (key, value) VALUES ('identity2', '{}')`,
        'DELETE FROM shardline_meta',
        `ALTER TABLE players OWNER TO ${LOGIN}`,
        'CREATE SCHEMA stash',
        `SET ROLE ${OWNER}`,
      ]) {
        refused[statement] = await refusal(c, statement);
      }
      await c.query('ROLLBACK');
      // 42501 insufficient_privilege for every one of them.
      expect(Object.entries(refused).filter(([, code]) => code !== '42501')).toEqual([]);
    });
  });

  it('has no privilege on the migration tables, only EXECUTE on the pinned owner function', async () => {
    const expected = await asApp(async (c) => {
      const privileges = await c.query<{ t: string; p: string; ok: boolean }>(
        `SELECT t, p, has_table_privilege(current_user, t, p) AS ok
         FROM unnest(ARRAY['knex_migrations', 'knex_migrations_lock']) AS t,
              unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p`,
      );
      expect(privileges.rows.filter((r) => r.ok)).toEqual([]);
      expect(await functionRights(c, 'shardline_applied_migrations')).toEqual([
        { owner: OWNER, definer: true, config: ['search_path=pg_catalog, pg_temp'], public_execute: false, app_execute: true },
      ]);
      return (await c.query<{ names: string[] }>('SELECT shardline_applied_migrations() AS names')).rows[0]?.names;
    });
    // The same list the owner reads from the table itself.
    const owner = new pg.Client({ connectionString: server.urlFor(DBS[0]!, { user: OWNER, password: OWNER_PW }) });
    await owner.connect();
    try {
      expect(expected).toEqual((await owner.query<{ name: string }>('SELECT name FROM knex_migrations ORDER BY id')).rows.map((r) => r.name));
      expect(expected?.at(-1)).toBe(expectedVersion());
    } finally {
      await owner.end();
    }
  });

  it('mints player ids only through the pinned owner function, with no right to move the id clock', async () => {
    await asApp(async (c) => {
      expect(await functionRights(c, 'shardline_player_id')).toEqual([
        { owner: OWNER, definer: true, config: ['search_path=pg_catalog, pg_temp'], public_execute: false, app_execute: true },
      ]);
      await c.query('BEGIN');
      // setval would let the application rewind the clock and mint ids that exist already.
      expect(await refusal(c, `SELECT setval('player_id_seq', 1)`)).toBe('42501');
      await c.query('ROLLBACK');
      const ids = await c.query<{ id: string }>(`SELECT shardline_player_id(5)::text AS id FROM generate_series(1, 3)`);
      expect(new Set(ids.rows.map((r) => r.id)).size).toBe(3);
    });
  });

  it('rolling the function back restores SELECT on knex_migrations, and the check still works either way', async () => {
    const shard = appMap.shards[1]!;
    const canRead = () =>
      asApp(async (c) => (await c.query<{ ok: boolean }>(`SELECT has_table_privilege(current_user, 'knex_migrations', 'SELECT') AS ok`)).rows[0]?.ok, DBS[1]);
    // The migrations from 0004 on, newest last: roll back down to 0004's, which is the one under test.
    const above = migrationNames().filter((n) => n >= '0004');
    expect(above[0]).toMatch(/^0004_applied_migrations_function$/);
    for (const name of above.slice(1).reverse()) {
      const [undone] = await migrateShards(ownerMap.shards.slice(1), 'rollback', { ...opts, appRole: APP_ROLE });
      expect(undone).toMatchObject({ ok: true, changed: [name] });
    }
    // Another --app-role than the one 0003 granted to is refused, in both directions.
    const [wrongDown] = await migrateShards(ownerMap.shards.slice(1), 'rollback', { ...opts, appRole: 'other_app' });
    expect(wrongDown?.error).toMatch(/role "other_app" is not the application role migration 0003 granted to/);

    const [down] = await migrateShards(ownerMap.shards.slice(1), 'rollback', { ...opts, appRole: APP_ROLE });
    expect(down).toMatchObject({ ok: true, changed: [above[0]] });
    expect(await canRead()).toBe(true);
    // An older schema: the app role's check falls back to the table, and sees it is behind.
    await expect(new ShardMigrator(shard, opts).assertCurrent()).rejects.toBeInstanceOf(SchemaVersionError);
    expect((await schemaStatus([shard], opts)).shards[0]).toMatchObject({ reachable: true, pending: above });

    const [wrongUp] = await migrateShards(ownerMap.shards.slice(1), 'latest', { ...opts, appRole: 'other_app' });
    expect(wrongUp?.error).toMatch(/role "other_app" is not the application role migration 0003 granted to/);
    const [up] = await migrateShards(ownerMap.shards.slice(1), 'latest', { ...opts, appRole: APP_ROLE });
    expect(up).toMatchObject({ ok: true, changed: above });
    expect(await canRead()).toBe(false);
    await new ShardMigrator(shard, opts).assertCurrent();
  });

  it('cannot run the migrations itself', async () => {
    const results = await migrateShards(appMap.shards.slice(0, 1), 'latest', { ...opts, appRole: APP_ROLE });
    expect(results[0]).toMatchObject({ ok: false });
    expect(results[0]?.error).toMatch(/permission denied/);
  });

  it('gets DML on tables a later migration creates, with no grant of its own', async () => {
    // A later migration, run as the same owner, adds a table: the default privileges cover it.
    const owner = new pg.Client({ connectionString: server.urlFor(DBS[0]!, { user: OWNER, password: OWNER_PW }) });
    await owner.connect();
    try {
      await owner.query('CREATE TABLE later_feature (player_id bigint PRIMARY KEY, note text)');
      await asApp(async (c) => {
        await c.query(`INSERT INTO later_feature VALUES (1, 'a')`);
        await c.query(`UPDATE later_feature SET note = 'b'`);
        expect((await c.query('DELETE FROM later_feature RETURNING note')).rows).toEqual([{ note: 'b' }]);
        await c.query('BEGIN');
        expect(await refusal(c, 'DROP TABLE later_feature')).toBe('42501');
        await c.query('ROLLBACK');
      });
    } finally {
      await owner.query('DROP TABLE IF EXISTS later_feature');
      await owner.end();
    }
  });

  it("app migrations run as the owner: DML on the app's tables, no DDL, nothing on their bookkeeping, and the gate reads through the function", async () => {
    const dir = fileURLToPath(new URL('../fixtures/app-migrations/good/', import.meta.url));
    const up = await migrateShards(ownerMap.shards, 'latest', { ...opts, appRole: APP_ROLE, appMigrations: dir });
    expect(up.map((r) => [r.ok, r.appVersion, r.error])).toEqual([
      [true, '0002_wallet', undefined],
      [true, '0002_wallet', undefined],
    ]);
    try {
      await asApp(async (c) => {
        await c.query('BEGIN');
        await c.query(`INSERT INTO players (player_id, region, nickname) VALUES (77, 'shenzhen', 'w')`);
        expect(await refusal(c, `INSERT INTO wallets (player_id, coins) VALUES (77, 5)`)).toBeUndefined();
        expect(await refusal(c, `INSERT INTO inventory (player_id, item) VALUES (77, 'gem')`)).toBeUndefined();
        const refused: Record<string, string | undefined> = {};
        for (const statement of [
          'DROP TABLE inventory',
          'ALTER TABLE wallets ADD COLUMN gems int',
          'TRUNCATE wallets',
          `COMMENT ON TABLE inventory IS 'shardline:local'`,
          'SELECT * FROM shardline_app_migrations',
          `INSERT INTO shardline_app_migrations (name, batch, migration_time) VALUES ('9999_fake', 9, now())`,
          'DELETE FROM shardline_app_migrations',
          'UPDATE shardline_app_migrations_lock SET is_locked = 1',
          'DROP FUNCTION shardline_applied_app_migrations()',
        ]) {
          refused[statement] = await refusal(c, statement);
        }
        await c.query('ROLLBACK');
        expect(Object.entries(refused).filter(([, code]) => code !== '42501')).toEqual([]);
        expect(await functionRights(c, 'shardline_applied_app_migrations')).toEqual([
          { owner: OWNER, definer: true, config: ['search_path=pg_catalog, pg_temp'], public_execute: false, app_execute: true },
        ]);
      });
      const gated = new ShardSet(appMap, { ...opts, appMigrations: dir });
      try {
        for (const s of appMap.shards) await gated.db(s.id);
      } finally {
        await gated.close();
      }
    } finally {
      for (let i = 0; i < 2; i++) await migrateShards(ownerMap.shards, 'rollback', { ...opts, appRole: APP_ROLE, appMigrations: dir });
    }
  });

  it('the migrations refuse an application role that is the owner, a superuser, or one the owner may not create', async () => {
    await server.admin(async (c) => {
      await c.query(`CREATE ROLE plain_owner LOGIN PASSWORD '${OWNER_PW}'`); // no CREATEROLE
      await c.query(`CREATE DATABASE lp_self OWNER ${OWNER}`);
      await c.query(`CREATE DATABASE lp_nocreate OWNER plain_owner`);
      await c.query(`CREATE DATABASE lp_super OWNER ${OWNER}`);
      await c.query(`CREATE ROLE super_app NOLOGIN SUPERUSER`);
    });
    const one = (db: string, user: string) =>
      validateShardMap(
        { version: 1, buckets: 4096, regions: ['r'], shards: [{ id: 'x-1', region: 'r', connection: 'env:X', buckets: ['0-4095'] }] },
        { env: { X: server.urlFor(db, { user, password: OWNER_PW }) } },
      ).shards;
    const [self] = await migrateShards(one('lp_self', OWNER), 'latest', { ...opts, appRole: OWNER });
    expect(self?.error).toMatch(/is the role running the migrations/);
    const [nocreate] = await migrateShards(one('lp_nocreate', 'plain_owner'), 'latest', { ...opts, appRole: 'nobody_app' });
    expect(nocreate?.error).toMatch(/role "nobody_app" does not exist and "plain_owner" may not create it/);
    const [superApp] = await migrateShards(one('lp_super', OWNER), 'latest', { ...opts, appRole: 'super_app' });
    expect(superApp?.error).toMatch(/"super_app" is a superuser or bypasses row security/);
    expect(() => new ShardMigrator(one('lp_self', OWNER)[0]!, { appRole: 'Robert"; DROP ROLE x; --' })).toThrow(ValidationError);
  });
});

// ---- every library operation, and the CLI, as the application role --------------------------

const silent = pino({ level: 'silent' });

function matchOf(matchId: string, gameId: string, endedAt: Date, results: readonly (readonly [Player, number, 'win' | 'loss' | 'draw'])[]): SettlementInput {
  return {
    matchId,
    gameId,
    endedAt: endedAt.toISOString(),
    results: results.map(([p, scoreDelta, outcome]) => ({ playerId: String(p.id), scoreDelta, outcome })),
  };
}

const partStates = (s: SettlementStatus | null) => s?.shards.map((p) => [p.shardId, p.state]);
const byMatchAndShard = (a: { matchId: string | null; shardId: string }, b: { matchId: string | null; shardId: string }) =>
  `${a.matchId}/${a.shardId}` < `${b.matchId}/${b.shardId}` ? -1 : 1;

/** Deletes a player as the application role does when an account goes; the row comes back with restorePlayer. */
const deletePlayer = (p: Player) => asApp((c) => c.query('DELETE FROM players WHERE player_id = $1', [String(p.id)]), DBS[p.region === 'shenzhen' ? 0 : 1]);
const restorePlayer = (p: Player) =>
  asApp(
    (c) => c.query('INSERT INTO players (player_id, region, nickname) VALUES ($1, $2, $3)', [String(p.id), p.region, p.nickname]),
    DBS[p.region === 'shenzhen' ? 0 : 1],
  );

/** Long-running `shardline` processes this file started, so afterAll can end exactly these. */
const children = new Set<ChildProcess>();

/** `shardline worker ...args` (the real bin) with `env` added to this process's environment. */
function startWorkerCli(args: readonly string[], env: Record<string, string>, limitMs = 180_000) {
  const worker = startCli(['worker', ...args], { env, timeoutMs: limitMs });
  const { child } = worker;
  children.add(child);
  child.once('close', () => children.delete(child));
  const alive = () => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`shardline worker exited early:\n${worker.output().slice(-3000)}`);
  };
  return { ...worker, alive };
}

describe('least privilege: every library operation as the application role', () => {
  afterAll(() => {
    for (const child of children) child.kill('SIGKILL');
  });

  it('dead-letters, lists, retries and reconciles settlements; ranks, pages history, reads partially, updates profiles', async () => {
    const prefix = `slsec_${randomBytes(4).toString('hex')}`;
    const tag = randomBytes(4).toString('hex');
    const game = 'poker';
    const accounts = new Accounts(app);
    const boards = new Leaderboards(app);
    const client = new SettlementClient({ shards: app, connection: redisOptions(), prefix, logger: silent });
    let worker: SettlementWorker | undefined;
    let half: ShardSet | undefined;
    try {
      const a = await accounts.createPlayer({ region: 'shenzhen', nickname: 'lp-a' });
      const d = await accounts.createPlayer({ region: 'shenzhen', nickname: 'lp-d' });
      const b = await accounts.createPlayer({ region: 'sichuan', nickname: 'lp-b' });
      const lost = await accounts.createPlayer({ region: 'sichuan', nickname: 'lp-lost' });
      const t0 = Date.now() - 60_000;
      const m1 = matchOf(`${tag}-m1`, game, new Date(t0), [
        [a, 10, 'win'],
        [b, -10, 'loss'],
      ]);
      const m2 = matchOf(`${tag}-m2`, game, new Date(t0 + 1000), [
        [a, 5, 'win'],
        [d, -5, 'loss'],
      ]);
      const m3 = matchOf(`${tag}-m3`, game, new Date(t0 + 2000), [
        [a, 1, 'win'],
        [b, -1, 'loss'],
      ]);
      const bad = matchOf(`${tag}-bad`, game, new Date(t0 + 3000), [
        [d, 7, 'win'],
        [lost, -7, 'loss'],
      ]);
      for (const m of [m1, m2, m3, bad]) expect((await client.submitSettlement(m)).state).toBe('pending');
      // The account goes before its match is settled: that part can never apply as it stands.
      await deletePlayer(lost);

      // Redis loses every job (restart without persistence): reconcile re-enqueues from the inbox.
      await deleteKeys(prefix);
      const reconciled = await client.reconcile({ olderThanMs: 0 });
      expect(reconciled.unreachable).toEqual([]);
      expect(reconciled.checked).toBe(7);
      expect([...reconciled.requeued].sort(byMatchAndShard)).toEqual(
        [
          [m1, 'lp-1'],
          [m1, 'lp-2'],
          [m2, 'lp-1'],
          [m3, 'lp-1'],
          [m3, 'lp-2'],
          [bad, 'lp-1'],
          [bad, 'lp-2'],
        ]
          .map(([m, shardId]) => ({ matchId: (m as SettlementInput).matchId, shardId: shardId as string }))
          .sort(byMatchAndShard),
      );

      // The worker, as the app role, applies the rest and writes the dead letter of the lost player's part.
      worker = new SettlementWorker({ shards: app, connection: redisOptions(), prefix, logger: silent, lingerMs: 5 });
      await worker.start();
      await within(
        waitFor(
          "the matches to settle and the lost player's part to fail",
          async () => {
            const states = await Promise.all([m1, m2, m3, bad].map(async (m) => (await client.settlementStatus(m.matchId))?.state));
            return states.join() === 'applied,applied,applied,failed';
          },
          60_000,
        ),
        65_000,
        'settlement',
      );
      const badStatus = await client.settlementStatus(bad.matchId);
      expect(partStates(badStatus)).toEqual([
        ['lp-1', 'applied'],
        ['lp-2', 'failed'],
      ]);
      const reason = `player not found on this shard: ${lost.id}`;
      expect(badStatus?.shards[1]).toMatchObject({ shardId: 'lp-2', state: 'failed', attempts: 1, reason });
      expect(
        (await asApp((c) => c.query('SELECT status, attempts, last_error FROM settlement_inbox WHERE match_id = $1', [bad.matchId]), DBS[1])).rows,
      ).toEqual([{ status: 'failed', attempts: 1, last_error: reason }]);

      // The dead letters: one inbox part (the failed BullMQ job is accounted for by it).
      const expectedFailed = { source: 'inbox', matchId: bad.matchId, shardId: 'lp-2', gameId: game, reason, attempts: 1, jobId: jobIdFor(bad.matchId) };
      const failed = await client.listFailed();
      expect(failed.unreachable).toEqual([]);
      expect(failed.failed).toEqual([{ ...expectedFailed, failedAt: expect.any(Date) }]);
      expect((await client.listFailed({ shardIds: ['lp-1'] })).failed).toEqual([]);
      expect((await client.listFailed({ shardIds: ['lp-2'], matchId: bad.matchId, limit: 5 })).failed).toHaveLength(1);

      // Match history, a page at a time, newest first.
      const page1 = await accounts.getMatchHistory(a.id, { gameId: game, limit: 2 });
      expect(page1.items.map((i) => [i.matchId, i.scoreDelta, i.outcome])).toEqual([
        [m3.matchId, 1, 'win'],
        [m2.matchId, 5, 'win'],
      ]);
      expect(page1.nextCursor).not.toBeNull();
      const page2 = await accounts.getMatchHistory(a.id, { gameId: game, limit: 2, before: page1.nextCursor! });
      expect(page2).toEqual({ items: [expect.objectContaining({ matchId: m1.matchId, scoreDelta: 10 })], nextCursor: null });

      // Ranks: a 16, d 2, b -11 (the lost player has no row at all).
      expect(await boards.rankOf(a.id, game)).toEqual({ playerId: a.id, gameId: game, score: 16n, rank: 1, region: null });
      expect(await boards.rankOf(b.id, game)).toMatchObject({ score: -11n, rank: 3, region: null });
      expect(await boards.rankOf(d.id, game, { region: 'shenzhen' })).toEqual({ playerId: d.id, gameId: game, score: 2n, rank: 2, region: 'shenzhen' });
      expect(await boards.rankOf(b.id, game, { region: 'sichuan' })).toMatchObject({ score: -11n, rank: 1, region: 'sichuan' });
      await expect(boards.rankOf(lost.id, game)).rejects.toBeInstanceOf(PlayerNotFoundError);

      // Several players at once: one no longer exists; then with a shard down, the partial answer.
      const many = await accounts.getPlayers([a.id, lost.id, b.id], { gameId: game });
      expect([many.players.map((p) => [p.nickname, p.stats?.score]), many.missing, many.unavailable]).toEqual([
        [
          ['lp-a', 16n],
          ['lp-b', -11n],
        ],
        [lost.id],
        [],
      ]);
      half = new ShardSet(validateShardMap(MAP_JSON, { env: { ...envAs(LOGIN, LOGIN_PW), LP_2: `postgres://${LOGIN}@127.0.0.1:1/${DBS[1]}` } }), {
        ...opts,
        connectionTimeoutMs: 3000,
      });
      const partial = await new Accounts(half).getPlayers([b.id, a.id, d.id], { partial: true, gameId: game });
      expect(partial.players.map((p) => [p.nickname, p.stats?.score])).toEqual([
        ['lp-a', 16n],
        ['lp-d', 2n],
      ]);
      expect(partial.missing).toEqual([]);
      expect(partial.unavailable.map((u) => [u.shardId, u.playerIds])).toEqual([['lp-2', [b.id]]]);

      // Profiles.
      expect(await accounts.updateProfile(b.id, { nickname: 'lp-b2', status: 'suspended' })).toMatchObject({ nickname: 'lp-b2', status: 'suspended' });
      expect(await accounts.getPlayer(b.id)).toMatchObject({ nickname: 'lp-b2', status: 'suspended' });
      expect(await accounts.updateProfile(b.id, { status: 'active' })).toMatchObject({ nickname: 'lp-b2', status: 'active' });

      // The account is restored: retry re-drives the dead letter and the worker applies it.
      await restorePlayer(lost);
      const retried = await client.retry(bad.matchId);
      expect(retried).toEqual({ parts: [{ matchId: bad.matchId, shardId: 'lp-2' }], notRetryable: [], unreachable: [] });
      await within(
        waitFor('the retried part to apply', async () => (await client.settlementStatus(bad.matchId))?.state === 'applied', 60_000),
        65_000,
        'retry',
      );
      expect((await client.listFailed()).failed).toEqual([]);
      expect(await client.retry({ all: true })).toEqual({ parts: [], notRetryable: [], unreachable: [] });
      expect(await boards.rankOf(lost.id, game)).toMatchObject({ score: -7n, rank: 3 });
      expect(await boards.rankOf(lost.id, game, { region: 'sichuan' })).toMatchObject({ score: -7n, rank: 1 });
      expect(await boards.rankOf(b.id, game, { region: 'sichuan' })).toMatchObject({ score: -11n, rank: 2 });
    } finally {
      await worker?.stop(5000);
      await client.close();
      await half?.close();
      await deleteKeys(prefix);
    }
  }, 180_000);

  it('runs `shardline worker` and `shardline settlements status|failed|retry|reconcile` with the app login in the environment', async () => {
    const prefix = `slsec_${randomBytes(4).toString('hex')}`;
    const tag = randomBytes(4).toString('hex');
    const game = 'gomoku';
    // Only the app login's URLs: the owner's password is in no environment the subprocesses see.
    const env = { ...envAs(LOGIN, LOGIN_PW), REDIS_URL, SHARDLINE_MAP: '' };
    const common = ['--map', writeMapFile(MAP_JSON), '--prefix', prefix];
    const cli = async (args: readonly string[]) => {
      const r = await runCli(args, { env, timeoutMs: 120_000 });
      expect(r.stderr).not.toMatch(/permission denied|42501/);
      return r;
    };
    const accounts = new Accounts(app);
    const client = new SettlementClient({ shards: app, connection: redisOptions(), prefix, logger: silent });
    let worker: ReturnType<typeof startWorkerCli> | undefined;
    try {
      const a = await accounts.createPlayer({ region: 'shenzhen', nickname: 'cli-a' });
      const b = await accounts.createPlayer({ region: 'sichuan', nickname: 'cli-b' });
      const lost = await accounts.createPlayer({ region: 'sichuan', nickname: 'cli-lost' });
      const good = matchOf(`${tag}-good`, game, new Date(Date.now() - 5000), [
        [a, 3, 'win'],
        [b, -3, 'loss'],
      ]);
      const bad = matchOf(`${tag}-bad`, game, new Date(Date.now() - 4000), [
        [a, 2, 'draw'],
        [lost, 2, 'draw'],
      ]);
      await client.submitSettlement(good);
      await client.submitSettlement(bad);
      await deletePlayer(lost);

      // Each `shardline` process starts tsx: seconds apiece on a loaded machine, hence the timeouts.
      worker = startWorkerCli([...common, '--concurrency', '4', '--batch-size', '2', '--grace-ms', '5000'], env);
      const w = worker;
      await waitFor(
        'the worker process to settle one match and dead-letter the other',
        async () => {
          w.alive();
          return [(await client.settlementStatus(good.matchId))?.state, (await client.settlementStatus(bad.matchId))?.state].join() === 'applied,failed';
        },
        150_000,
      );
      w.child.kill('SIGTERM');
      const ended = await w.done;
      expect({ code: ended.code, signal: ended.signal, permissionDenied: /permission denied|42501/.test(w.output()) }, w.output()).toEqual({
        code: 0,
        signal: null,
        permissionDenied: false,
      });
      expect(w.output()).toContain('settlement worker started');
      expect(w.output()).toContain('settlement part failed permanently');
      const reason = `player not found on this shard: ${lost.id}`;
      expect((await asApp((c) => c.query('SELECT status, last_error FROM settlement_inbox WHERE match_id = $1', [bad.matchId]), DBS[1])).rows).toEqual([
        { status: 'failed', last_error: reason },
      ]);

      const shown = await cli(['settlements', 'status', bad.matchId, ...common]);
      expect(shown.code, shown.stderr).toBe(0);
      const status = JSON.parse(shown.stdout) as SettlementStatus;
      expect([status.state, partStates(status)]).toEqual([
        'failed',
        [
          ['lp-1', 'applied'],
          ['lp-2', 'failed'],
        ],
      ]);
      expect(status.shards[1]?.reason).toBe(reason);

      const failed = await cli(['settlements', 'failed', '--json', ...common]);
      expect(failed.code, failed.stderr).toBe(0);
      expect(JSON.parse(failed.stdout)).toEqual([
        {
          source: 'inbox',
          matchId: bad.matchId,
          shardId: 'lp-2',
          gameId: game,
          reason,
          attempts: 1,
          failedAt: expect.any(String),
          jobId: jobIdFor(bad.matchId),
        },
      ]);
      const table = await cli(['settlements', 'failed', '--shard', 'lp-2', ...common]);
      expect(table.code, table.stderr).toBe(0);
      expect(table.stdout).toContain(bad.matchId);

      await restorePlayer(lost);
      const retried = await cli(['settlements', 'retry', bad.matchId, ...common]);
      expect(retried.code, retried.stderr).toBe(0);
      expect(retried.stdout).toContain(`re-enqueued ${bad.matchId} on lp-2`);
      expect(retried.stdout).toContain('1 part re-enqueued');

      // Redis loses the re-driven job before any worker takes it: reconcile finds the pending part.
      await deleteKeys(prefix);
      const reconciled = await cli(['settlements', 'reconcile', '--older-than-ms', '0', ...common]);
      expect(reconciled.code, reconciled.stderr).toBe(0);
      expect(reconciled.stdout).toContain('checked 1 pending parts, re-enqueued 1');

      worker = startWorkerCli([...common, '--grace-ms', '5000'], env);
      const w2 = worker;
      await waitFor(
        'the worker process to apply the retried part',
        async () => {
          w2.alive();
          return (await client.settlementStatus(bad.matchId))?.state === 'applied';
        },
        150_000,
      );
      w2.child.kill('SIGTERM');
      const ended2 = await w2.done;
      expect({ code: ended2.code, signal: ended2.signal, permissionDenied: /permission denied|42501/.test(w2.output()) }, w2.output()).toEqual({
        code: 0,
        signal: null,
        permissionDenied: false,
      });
      expect([(await accounts.getStats(lost.id, game)).score, (await accounts.getStats(a.id, game)).score]).toEqual([2n, 5n]);

      const after = await cli(['settlements', 'failed', ...common]);
      expect(after).toMatchObject({ code: 0, stdout: 'no failed settlements\n' });
    } finally {
      if (worker && worker.child.exitCode === null && worker.child.signalCode === null) {
        worker.child.kill('SIGTERM');
        await worker.done;
      }
      await client.close();
      await deleteKeys(prefix);
    }
  }, 420_000);
});
