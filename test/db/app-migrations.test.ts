import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AppSchemaVersionError,
  MigrationError,
  SelfClosureError,
  ShardSet,
  migrateShards,
  schemaCheck,
  schemaStatus,
  type SelfClosureFault,
} from '../../src/index.js';
import { appSchemaStanding } from '../../src/migrate/app-schema-version.js';
import { migrationNames } from '../../src/migrate/migration-source.js';
import { SHARDLINE_TABLES, judgeTables } from '../../src/migrate/self-closure.js';
import { urlFor } from '../support/env.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';

const GOOD = fileURLToPath(new URL('../fixtures/app-migrations/good/', import.meta.url));

/** A migrations folder: the good fixture's first `keep` files plus `extra` files (ESM, a package.json saying so). */
function appDir(extra: Record<string, string> = {}, keep = 2): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'shardline-app-mig-'));
  writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}');
  for (const f of ['0001_inventory.ts', '0002_wallet.js'].slice(0, keep)) cpSync(path.join(GOOD, f), path.join(dir, f));
  for (const [name, body] of Object.entries(extra)) writeFileSync(path.join(dir, name), body);
  return dir;
}

/** An app migration whose up() runs `sql` and whose down() drops `table`. */
const migration = (sql: string, table: string) => `
export async function up(knex) { await knex.raw(${JSON.stringify(sql)}); }
export async function down(knex) { await knex.raw('DROP TABLE IF EXISTS ${table}'); }
`;

/** Table names of the shard's public schema. */
async function tablesOf(t: TestShards, i: number): Promise<string[]> {
  const c = new pg.Client({ connectionString: urlFor(t.databases[i]!) });
  await c.connect();
  try {
    const r = await c.query<{ t: string }>(`SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`);
    return r.rows.map((row) => row.t);
  } finally {
    await c.end();
  }
}

async function sql(t: TestShards, i: number, text: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: urlFor(t.databases[i]!) });
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
}

describe('self-closure rules (pure)', () => {
  const base = { comment: null, primaryKey: { name: 't_pkey', columns: ['player_id', 'id'] }, foreignKeys: [] };
  const col = (name: string, type = 'bigint', def: string | null = null, identity = '') => ({ name, type, default: def, identity });
  it('names the table, column or constraint and the rule', () => {
    const faults = judgeTables([
      { ...base, table: 'ok', columns: [col('player_id'), col('id', 'uuid', 'gen_random_uuid()')] },
      { ...base, table: 'local', comment: 'shardline:local', columns: [col('id', 'integer', "nextval('local_id_seq'::regclass)")] },
      { ...base, table: 'nolocal', comment: 'local', primaryKey: null, columns: [col('id')] },
      { ...base, table: 'pk', primaryKey: { name: 'pk_pkey', columns: ['id', 'player_id'] }, columns: [col('player_id'), col('id')] },
      { ...base, table: 'ty', columns: [col('player_id', 'integer'), col('id')] },
      { ...base, table: 'seq', columns: [col('player_id'), col('id', 'bigint', null, 'a')] },
      {
        ...base,
        table: 'fk',
        columns: [col('player_id'), col('id')],
        foreignKeys: [{ name: 'fk_friend', columns: ['id'], references: 'players', referencedColumns: ['player_id'] }],
      },
    ]);
    expect(faults.map((f) => [f.table, f.rule, f.column ?? f.constraint ?? null])).toEqual([
      ['nolocal', 'declared-local', null],
      ['pk', 'primary-key', 'pk_pkey'],
      ['ty', 'player-id-type', 'player_id'],
      ['seq', 'no-sequence', 'id'],
      ['fk', 'foreign-key', 'fk_friend'],
    ]);
    expect(faults.find((f) => f.rule === 'no-sequence')?.message).toMatch(/use a uuid/);
    expect(faults.find((f) => f.rule === 'declared-local')?.message).toMatch(/COMMENT ON TABLE nolocal IS 'shardline:local'/);
  });
});

describe('app schema standing (pure)', () => {
  it('is current, behind, ahead or out of order against the folder', () => {
    const known = ['0001_a', '0002_b', '0003_c'];
    expect(appSchemaStanding(known, known)).toEqual({ kind: 'current' });
    expect(appSchemaStanding(['0001_a'], known)).toEqual({ kind: 'behind', pending: ['0002_b', '0003_c'] });
    expect(appSchemaStanding(['0001_a', '0002_b', '0003_c', '0004_d'], known)).toEqual({ kind: 'ahead', unknown: ['0004_d'] });
    expect(appSchemaStanding(['0001_a', '0003_c'], known)).toEqual({ kind: 'out-of-order' });
    expect(appSchemaStanding([], [])).toEqual({ kind: 'current' });
  });
});

describe.each(LAYOUTS)('app migrations (%s)', (layout) => {
  let t: TestShards;
  beforeAll(async () => {
    t = await createTestShards(layout);
  });
  afterAll(() => t?.cleanup());

  it("a fresh shard holds shardline's tables only, and they are exactly the list the rules skip", async () => {
    expect((await tablesOf(t, 0)).sort()).toEqual([...SHARDLINE_TABLES].sort());
    const report = await schemaCheck(t.map.shards);
    expect(report.faulty).toEqual([]);
    expect(report.unreachable).toEqual([]);
  });

  it('applies, reports, gates, rolls back one at a time and resumes', async () => {
    const dir = appDir();
    const progress: string[] = [];
    const up = await migrateShards(t.map.shards, 'latest', {
      appMigrations: dir,
      onProgress: (p) => progress.push(`${p.shardId} ${p.set} ${p.step}/${p.of} ${p.migration}`),
    });
    expect(up.map((r) => [r.ok, r.appChanged, r.appVersion])).toEqual(t.map.shards.map(() => [true, ['0001_inventory', '0002_wallet'], '0002_wallet']));
    expect(progress).toContain(`${t.map.shards[0]!.id} app 2/2 0002_wallet`);
    for (let i = 0; i < t.databases.length; i++) expect(await tablesOf(t, i)).toEqual(expect.arrayContaining(['inventory', 'wallets', 'wallet_audit_runs']));

    const again = await migrateShards(t.map.shards, 'latest', { appMigrations: dir });
    expect(again.map((r) => r.appChanged)).toEqual(t.map.shards.map(() => []));

    const status = await schemaStatus(t.map.shards, { appMigrations: dir });
    expect(status.app).toEqual({ checked: true, expected: '0002_wallet', drift: false });
    expect(status.drift).toBe(false);
    const unchecked = await schemaStatus(t.map.shards);
    expect(unchecked.app).toEqual({ checked: false, expected: null, drift: false });
    expect(unchecked.shards.map((s) => [s.app.checked, s.app.version])).toEqual(t.map.shards.map(() => [false, '0002_wallet']));

    // shardline's own migrations are not undone from under the app's tables.
    const refused = await migrateShards(t.map.shards, 'rollback');
    expect(refused.map((r) => [r.ok, r.errorCode])).toEqual(t.map.shards.map(() => [false, 'MIGRATION_FAILED']));
    expect(refused[0]!.error).toMatch(/app migrations are applied on top of shardline's \(newest 0002_wallet\)/);
    expect((await schemaStatus(t.map.shards)).drift).toBe(false);

    // One shard missing the newest app migration: drift, and a gated ShardSet refuses that shard only.
    const last = t.map.shards.at(-1)!;
    const back = await migrateShards([last], 'rollback', { appMigrations: dir, mapShards: t.map.shards });
    expect(back[0]).toMatchObject({ ok: true, appChanged: ['0002_wallet'], appVersion: '0001_inventory', changed: [] });
    const drifted = await schemaStatus(t.map.shards, { appMigrations: dir });
    expect(drifted.app.drift).toBe(true);
    expect(drifted.shards.find((s) => s.shardId === last.id)?.app).toMatchObject({ version: '0001_inventory', pending: ['0002_wallet'] });
    expect((await schemaStatus(t.map.shards)).app.drift).toBe(false); // not checked, not drift

    const gated = new ShardSet(t.map, { appMigrations: dir });
    const warnings: string[] = [];
    const ungated = new ShardSet(t.map, { logger: { warn: (_f, m) => warnings.push(m ?? '') } });
    try {
      await expect(gated.db(last.id)).rejects.toThrow(AppSchemaVersionError);
      await expect(gated.db(last.id)).rejects.toThrow(/app schema 0001_inventory, the app migrations folder is at 0002_wallet: 1 app migration\(s\) pending/);
      if (t.map.shards.length > 1) await gated.db(t.map.shards[0]!.id);
      for (const s of t.map.shards) await ungated.db(s.id);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/has app migrations up to 0\d{3}_\w+, not checked/);
    } finally {
      await gated.close();
      await ungated.close();
    }
    // Ahead: a folder that lacks the shards' newest migration.
    const older = appDir({}, 1);
    const ahead = new ShardSet(t.map, { appMigrations: older });
    try {
      if (t.map.shards.length > 1) await expect(ahead.db(t.map.shards[0]!.id)).rejects.toThrow(/ahead of this code/);
    } finally {
      await ahead.close();
    }

    const resumed = await migrateShards(t.map.shards, 'latest', { appMigrations: dir });
    expect(resumed.map((r) => r.appChanged)).toEqual(t.map.shards.map((s) => (s.id === last.id ? ['0002_wallet'] : [])));

    // Undone newest first, one per run, down to none; then shardline's own may roll back again.
    const r1 = await migrateShards(t.map.shards, 'rollback', { appMigrations: dir });
    expect(r1.map((r) => r.appChanged)).toEqual(t.map.shards.map(() => ['0002_wallet']));
    const r2 = await migrateShards(t.map.shards, 'rollback', { appMigrations: dir });
    expect(r2.map((r) => [r.appChanged, r.appVersion])).toEqual(t.map.shards.map(() => [['0001_inventory'], null]));
    const r3 = await migrateShards(t.map.shards, 'rollback', { appMigrations: dir });
    expect(r3.map((r) => [r.ok, r.appChanged])).toEqual(t.map.shards.map(() => [true, []]));
    expect((await tablesOf(t, 0)).sort()).toEqual([...SHARDLINE_TABLES].sort());

    // With the app's undone, shardline's own rolls back; below 0006 an app rollback has nothing to undo and creates nothing.
    for (const name of migrationNames()
      .filter((n) => n >= '0006')
      .reverse()) {
      const own = await migrateShards(t.map.shards, 'rollback');
      expect(own.map((r) => [r.ok, r.changed])).toEqual(t.map.shards.map(() => [true, [name]]));
    }
    const none = await migrateShards(t.map.shards, 'rollback', { appMigrations: dir });
    expect(none.map((r) => [r.ok, r.appChanged])).toEqual(t.map.shards.map(() => [true, []]));
    expect(await tablesOf(t, 0)).not.toContain('shardline_app_migrations');
  });

  it('gives the application role DML on app tables, never DDL, and nothing on the app migrations table', async () => {
    await migrateShards(t.map.shards, 'latest', { appMigrations: appDir() });
    const r = await sql(
      t,
      0,
      `SELECT has_table_privilege('shardline_app', 'inventory', 'SELECT, INSERT, UPDATE, DELETE') AS dml,
              has_table_privilege('shardline_app', 'inventory', 'TRUNCATE') OR has_table_privilege('shardline_app', 'inventory', 'REFERENCES')
                OR has_table_privilege('shardline_app', 'inventory', 'TRIGGER') AS extra,
              has_table_privilege('shardline_app', 'shardline_app_migrations', 'SELECT') OR has_table_privilege('shardline_app', 'shardline_app_migrations', 'INSERT')
                OR has_table_privilege('shardline_app', 'shardline_app_migrations_lock', 'UPDATE') AS bookkeeping,
              has_function_privilege('shardline_app', 'shardline_applied_app_migrations()', 'EXECUTE') AS fn,
              pg_get_userbyid(relowner) <> 'shardline_app' AS not_owner
         FROM pg_class WHERE relname = 'inventory'`,
    );
    expect(r.rows[0]).toEqual({ dml: true, extra: false, bookkeeping: false, fn: true, not_owner: true });
    const c = new pg.Client({ connectionString: urlFor(t.databases[0]!) });
    await c.connect();
    try {
      await c.query('SET ROLE shardline_app');
      expect((await c.query('SELECT shardline_applied_app_migrations() AS n')).rows[0].n).toEqual(['0001_inventory', '0002_wallet']);
      await expect(c.query('DROP TABLE inventory')).rejects.toMatchObject({ code: '42501' });
      await expect(c.query('ALTER TABLE wallets ADD COLUMN gems int')).rejects.toMatchObject({ code: '42501' });
      await expect(c.query('SELECT * FROM shardline_app_migrations')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await c.end();
    }
    for (let i = 0; i < 2; i++) await migrateShards(t.map.shards, 'rollback', { appMigrations: appDir() });
  });
});

describe('self-closure enforced on four shards', () => {
  let t: TestShards;
  beforeAll(async () => {
    t = await createTestShards('several-shards');
    const first = await migrateShards(t.map.shards, 'latest', { appMigrations: appDir({}, 1) });
    expect(first.every((r) => r.ok)).toBe(true);
  });
  afterAll(() => t?.cleanup());

  const cases: { rule: string; sql: string; table: string; at: Partial<SelfClosureFault> }[] = [
    {
      rule: 'primary-key',
      table: 'achievements',
      sql: 'CREATE TABLE achievements (achievement text PRIMARY KEY, player_id bigint NOT NULL)',
      at: { constraint: 'achievements_pkey' },
    },
    {
      rule: 'foreign-key',
      table: 'friends',
      sql: 'CREATE TABLE friends (player_id bigint REFERENCES players (player_id), friend_id bigint REFERENCES players (player_id), PRIMARY KEY (player_id, friend_id))',
      at: { constraint: 'friends_friend_id_fkey' },
    },
    {
      rule: 'no-sequence',
      table: 'quests',
      sql: 'CREATE TABLE quests (player_id bigint, quest_id serial, PRIMARY KEY (player_id, quest_id))',
      at: { column: 'quest_id' },
    },
    {
      rule: 'no-sequence',
      table: 'mail',
      sql: 'CREATE TABLE mail (player_id bigint, mail_id bigint GENERATED ALWAYS AS IDENTITY, PRIMARY KEY (player_id, mail_id))',
      at: { column: 'mail_id' },
    },
    { rule: 'declared-local', table: 'shop_items', sql: 'CREATE TABLE shop_items (sku text PRIMARY KEY)', at: {} },
    {
      rule: 'player-id-type',
      table: 'badges',
      sql: 'CREATE TABLE badges (player_id integer, badge text, PRIMARY KEY (player_id, badge))',
      at: { column: 'player_id' },
    },
  ];

  it('runs the good migrations of a folder everywhere and stops at the first refused one, which runs nowhere', async () => {
    const dir = appDir({
      '0003_ledger.js': migration('CREATE TABLE coin_ledger (entry_id bigserial PRIMARY KEY, player_id bigint NOT NULL, coins int)', 'coin_ledger'),
    });
    const results = await migrateShards(t.map.shards, 'latest', { appMigrations: dir });
    expect(results.map((r) => [r.ok, r.appChanged, r.appVersion])).toEqual([
      [false, ['0002_wallet'], '0002_wallet'],
      [false, ['0002_wallet'], '0002_wallet'],
      [false, ['0002_wallet'], '0002_wallet'],
      [false, ['0002_wallet'], '0002_wallet'],
    ]);
    expect(results[0]!.errorCode).toBe('SELF_CLOSURE_VIOLATION');
    for (let i = 0; i < 4; i++) expect(await tablesOf(t, i)).toEqual(expect.arrayContaining(['wallets']));
    for (let i = 0; i < 4; i++) expect(await tablesOf(t, i)).not.toContain('coin_ledger');
    const back = await migrateShards(t.map.shards, 'rollback', { appMigrations: dir });
    expect(back.map((r) => r.appChanged)).toEqual([['0002_wallet'], ['0002_wallet'], ['0002_wallet'], ['0002_wallet']]);
  });

  it.each(cases)('a migration breaking $rule ($table) is refused on the first shard and runs on no other', async ({ rule, sql: text, table, at }) => {
    const dir = appDir({ [`0002_${table}.js`]: migration(text, table) }, 1);
    const results = await migrateShards(t.map.shards, 'latest', { appMigrations: dir });
    const [canary, ...others] = results;
    expect(canary).toMatchObject({ ok: false, errorCode: 'SELF_CLOSURE_VIOLATION', appChanged: [], appVersion: '0001_inventory' });
    expect(canary!.error).toMatch(new RegExp(`app migration 0002_${table} would break the self-closed record set, so it was rolled back`));
    expect(canary!.error).toContain(`[${rule}]`);
    for (const r of others) {
      expect(r).toMatchObject({ ok: false, errorCode: 'MIGRATION_FAILED', appChanged: [], appVersion: '0001_inventory' });
      expect(r.error).toMatch(new RegExp(`app migration 0002_${table} was refused on shard "sz-1"`));
    }
    for (let i = 0; i < 4; i++) expect(await tablesOf(t, i)).not.toContain(table);
    const status = await schemaStatus(t.map.shards, { appMigrations: appDir({}, 1) });
    expect(status.app.drift).toBe(false);
    // The fault itself, as the error carries it.
    const shard = new (await import('../../src/migrate/shard-migrator.js')).ShardMigrator(t.map.shards[0]!, { appMigrations: dir });
    const err = await shard.appUp(`0002_${table}`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SelfClosureError);
    expect((err as SelfClosureError).faults).toEqual([expect.objectContaining({ table, rule, ...at })]);
  });

  it('refuses a migration that opts out of its transaction, and a failing migration stops the run the same way', async () => {
    const noTrx = appDir({ '0002_x.js': `export const config = { transaction: false };\n${migration('SELECT 1', 'x')}` }, 1);
    const r = await migrateShards(t.map.shards, 'latest', { appMigrations: noTrx });
    expect(r[0]!.error).toMatch(/sets config.transaction = false/);
    const broken = appDir({ '0002_x.js': migration('CREATE TABLE x (player_id bigint PRIMARY KEY); SELECT nonsense()', 'x') }, 1);
    const b = await migrateShards(t.map.shards, 'latest', { appMigrations: broken });
    expect(b.map((x) => x.errorCode)).toEqual(['MIGRATION_FAILED', 'MIGRATION_FAILED', 'MIGRATION_FAILED', 'MIGRATION_FAILED']);
    expect(b[0]!.error).toMatch(/app migration 0002_x failed/);
    for (let i = 0; i < 4; i++) expect(await tablesOf(t, i)).not.toContain('x');
    expect(MigrationError).toBeDefined();
  });
  it('a declared shard-local table passes; a shard altered by hand is refused before migrating, and schema check names the fault', async () => {
    const local = appDir(
      {
        '0002_counters.js': migration(
          "CREATE TABLE shard_counters (name text PRIMARY KEY); COMMENT ON TABLE shard_counters IS 'shardline:local'",
          'shard_counters',
        ),
      },
      1,
    );
    expect((await migrateShards(t.map.shards, 'latest', { appMigrations: local })).every((r) => r.ok)).toBe(true);

    await sql(t, 2, 'CREATE TABLE scratch (id serial PRIMARY KEY)');
    const check = await schemaCheck(t.map.shards);
    expect(check.faulty).toEqual(['sc-1']);
    expect(check.shards[2]!.faults).toEqual([expect.objectContaining({ table: 'scratch', rule: 'declared-local' })]);

    const next = appDir(
      {
        '0002_counters.js': migration(
          "CREATE TABLE shard_counters (name text PRIMARY KEY); COMMENT ON TABLE shard_counters IS 'shardline:local'",
          'shard_counters',
        ),
        '0003_titles.js': migration('CREATE TABLE titles (player_id bigint REFERENCES players, title text, PRIMARY KEY (player_id, title))', 'titles'),
      },
      1,
    );
    const results = await migrateShards(t.map.shards, 'latest', { appMigrations: next });
    expect(results.map((r) => [r.shardId, r.ok, r.errorCode ?? null, r.appVersion])).toEqual([
      ['sz-1', true, null, '0003_titles'],
      ['sz-2', true, null, '0003_titles'],
      ['sc-1', false, 'SELF_CLOSURE_VIOLATION', '0002_counters'],
      ['na-1', true, null, '0003_titles'],
    ]);
    expect(results[2]!.error).toMatch(/the app tables would break the self-closed record set, so no app migration was applied/);
    await sql(t, 2, `COMMENT ON TABLE scratch IS 'shardline:local'`);
    expect((await schemaCheck(t.map.shards)).faulty).toEqual([]);
    const resumed = await migrateShards(t.map.shards, 'latest', { appMigrations: next });
    expect(resumed.map((r) => r.appChanged)).toEqual([[], [], ['0003_titles'], []]);
  });
});
