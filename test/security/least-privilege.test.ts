import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Accounts,
  Leaderboards,
  ShardMigrator,
  SchemaVersionError,
  ShardSet,
  ValidationError,
  expectedVersion,
  migrateShards,
  schemaStatus,
  validateShardMap,
  type ShardMap,
} from '../../src/index.js';
import { SettlementClient, SettlementWorker } from '../../src/settlement/index.js';
import { startEmbeddedPg, within, type EmbeddedPg } from '../support/embedded-pg.js';
import { REDIS_URL } from '../support/env.js';

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

function mapAs(user: string, password: string): ShardMap {
  return validateShardMap(
    {
      version: 1,
      buckets: 4096,
      regions: ['shenzhen', 'sichuan'],
      shards: [
        { id: 'lp-1', region: 'shenzhen', connection: 'env:LP_1', buckets: ['0-2047'] },
        { id: 'lp-2', region: 'sichuan', connection: 'env:LP_2', buckets: ['2048-4095'] },
      ],
    },
    { env: { LP_1: server.urlFor(DBS[0]!, { user, password }), LP_2: server.urlFor(DBS[1]!, { user, password }) } },
  );
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
    await db.insertInto('settlement_ledger').values({ match_id: 'm-1', player_id: sc.id, game_id: 'chess', score_delta: 12, outcome: 'win', ended_at: new Date() }).execute();
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
    const prefix = `{slsec_${randomBytes(4).toString('hex')}}`;
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
          { playerId: String(a!.id), scoreDelta: 5, outcome: 'win' },
          { playerId: String(b!.id), scoreDelta: -5, outcome: 'loss' },
        ],
      });
      await within(
        (async () => {
          while ((await client.settlementStatus(matchId))?.state !== 'applied') await new Promise((r) => setTimeout(r, 100));
        })(),
        60_000,
        'settlement of the match',
      );
      expect([(await accounts.getStats(a!.id, 'go')).score, (await accounts.getStats(b!.id, 'go')).score]).toEqual([5n, -5n]);
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
      const fn = await c.query<{ owner: string; definer: boolean; config: string[] | null; public_execute: boolean; app_execute: boolean }>(
        `SELECT pg_get_userbyid(p.proowner) AS owner, p.prosecdef AS definer, p.proconfig AS config,
                EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS public_execute,
                has_function_privilege(current_user, p.oid, 'EXECUTE') AS app_execute
         FROM pg_proc p WHERE p.proname = 'shardline_applied_migrations'`,
      );
      expect(fn.rows).toEqual([{ owner: OWNER, definer: true, config: ['search_path=pg_catalog, pg_temp'], public_execute: false, app_execute: true }]);
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

  it('rolling the function back restores SELECT on knex_migrations, and the check still works either way', async () => {
    const shard = appMap.shards[1]!;
    const canRead = () => asApp(async (c) => (await c.query<{ ok: boolean }>(`SELECT has_table_privilege(current_user, 'knex_migrations', 'SELECT') AS ok`)).rows[0]?.ok, DBS[1]);
    // Another --app-role than the one 0003 granted to is refused, in both directions.
    const [wrongDown] = await migrateShards(ownerMap.shards.slice(1), 'rollback', { ...opts, appRole: 'other_app' });
    expect(wrongDown?.error).toMatch(/role "other_app" is not the application role migration 0003 granted to/);

    const [down] = await migrateShards(ownerMap.shards.slice(1), 'rollback', { ...opts, appRole: APP_ROLE });
    expect(down).toMatchObject({ ok: true, changed: [expectedVersion()] });
    expect(await canRead()).toBe(true);
    // An older schema: the app role's check falls back to the table, and sees it is behind.
    await expect(new ShardMigrator(shard, opts).assertCurrent()).rejects.toBeInstanceOf(SchemaVersionError);
    expect((await schemaStatus([shard], opts)).shards[0]).toMatchObject({ reachable: true, pending: [expectedVersion()] });

    const [wrongUp] = await migrateShards(ownerMap.shards.slice(1), 'latest', { ...opts, appRole: 'other_app' });
    expect(wrongUp?.error).toMatch(/role "other_app" is not the application role migration 0003 granted to/);
    const [up] = await migrateShards(ownerMap.shards.slice(1), 'latest', { ...opts, appRole: APP_ROLE });
    expect(up).toMatchObject({ ok: true, changed: [expectedVersion()] });
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
