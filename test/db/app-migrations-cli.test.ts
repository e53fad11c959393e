import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { urlFor } from '../support/env.js';
import { writeMapFile } from '../support/maps.js';
import { createTestShards, type TestShards } from '../support/shards.js';

const GOOD = fileURLToPath(new URL('../fixtures/app-migrations/good/', import.meta.url));

let t: TestShards;
let mapFile: string;
beforeAll(async () => {
  t = await createTestShards('several-shards');
  mapFile = writeMapFile(t.mapJson);
});
afterAll(() => t?.cleanup());

async function onDb(i: number, text: string): Promise<void> {
  const c = new pg.Client({ connectionString: urlFor(t.databases[i]!) });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

describe('shardline migrate --app-migrations and schema check (subprocess)', () => {
  it('applies, shows both versions, reports drift, rolls back, and refuses a rule-breaking migration everywhere', async () => {
    const up = await runCli(['migrate', 'latest', '--map', mapFile, '--app-migrations', GOOD]);
    expect(up.code).toBe(0);
    expect(up.stdout).toMatch(/shard\s+region\s+schema version\s+app version\s+result/);
    expect(up.stdout).toMatch(/\[sz-2\] app 2\/2 0002_wallet/);
    expect(up.stdout).toMatch(/na-1\s+north-america\s+\d{4}_\w+\s+0002_wallet\s+applied app 0001_inventory, 0002_wallet/);

    // The folder from the environment, and status with it: both versions, no drift.
    const status = await runCli(['migrate', 'status', '--map', mapFile], { env: { SHARDLINE_APP_MIGRATIONS: GOOD } });
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/sz-1\s+shenzhen\s+\d{4}_\w+\s+0\s+0002_wallet\s+ok\s+ok/);
    const unchecked = await runCli(['migrate', 'status', '--map', mapFile]);
    expect(unchecked.code).toBe(0);
    expect(unchecked.stdout).toMatch(/sz-1\s+shenzhen\s+\d{4}_\w+\s+0\s+0002_wallet \(not checked\)\s+ok\s+ok/);

    // shardline's own rollback waits for the app's.
    const own = await runCli(['migrate', 'rollback', '--map', mapFile, '--shard', 'sc-1']);
    expect(own.code).toBe(1);
    expect(own.stderr).toMatch(/sc-1: shard "sc-1": app migrations are applied on top of shardline's \(newest 0002_wallet\)/);

    const back = await runCli(['migrate', 'rollback', '--map', mapFile, '--shard', 'sc-1', '--app-migrations', GOOD]);
    expect(back.code).toBe(0);
    expect(back.stdout).toMatch(/sc-1\s+sichuan\s+\d{4}_\w+\s+0001_inventory\s+rolled back app 0002_wallet/);
    const drift = await runCli(['migrate', 'status', '--map', mapFile, '--app-migrations', GOOD]);
    expect(drift.code).toBe(1);
    expect(drift.stdout).toMatch(/sc-1\s+sichuan\s+\d{4}_\w+\s+0\s+0001_inventory \(1 pending\)\s+ok\s+APP DRIFT: expected 0002_wallet/);
    expect(drift.stderr).toMatch(/app drift: sc-1 not at 0002_wallet/);
    expect((await runCli(['migrate', 'status', '--map', mapFile])).code).toBe(0); // not checked: not drift

    const again = await runCli(['migrate', 'latest', '--map', mapFile, '--app-migrations', GOOD]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/sc-1\s+sichuan\s+\d{4}_\w+\s+0002_wallet\s+applied app 0002_wallet/);
    expect(again.stdout).toMatch(/sz-1\s+shenzhen\s+\d{4}_\w+\s+0002_wallet\s+up to date/);

    // An ESM app's folder: its package.json says so.
    const bad = mkdtempSync(path.join(tmpdir(), 'shardline-app-mig-'));
    writeFileSync(path.join(bad, 'package.json'), '{"type":"module"}');
    for (const f of ['0001_inventory.ts', '0002_wallet.js']) cpSync(path.join(GOOD, f), path.join(bad, f));
    writeFileSync(
      path.join(bad, '0003_friends.ts'),
      `import type { Knex } from 'knex';
export async function up(knex: Knex): Promise<void> {
  await knex.raw('CREATE TABLE friends (player_id bigint REFERENCES players, friend_id bigint REFERENCES players (player_id), PRIMARY KEY (player_id, friend_id))');
}
export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE friends');
}
`,
    );
    const refused = await runCli(['migrate', 'latest', '--map', mapFile, '--app-migrations', bad]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/sz-1: shard "sz-1": app migration 0003_friends would break the self-closed record set, so it was rolled back/);
    expect(refused.stderr).toMatch(/\[foreign-key\] foreign key friends_friend_id_fkey of player table friends/);
    expect(refused.stderr).toMatch(/na-1: .*not migrated further: app migration 0003_friends was refused on shard "sz-1"/);
    expect(refused.stderr).toMatch(/a self-closure rule was broken/);
    expect(refused.stdout).not.toMatch(/migration file .* failed/); // knex's own log is kept quiet
    expect((await runCli(['migrate', 'status', '--map', mapFile, '--app-migrations', GOOD])).code).toBe(0);

    const missing = await runCli(['migrate', 'latest', '--map', mapFile, '--app-migrations', path.join(bad, 'nope')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/error \[VALIDATION_FAILED\]: --app-migrations: ".*nope" is not a folder/);
  });

  it('schema check: ok on every shard, then names a table altered by hand and exits 1', async () => {
    const ok = await runCli(['schema', 'check', '--map', mapFile]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/sz-1\s+shenzhen\s+ok/);

    await onDb(1, 'ALTER TABLE inventory DROP CONSTRAINT inventory_pkey');
    await onDb(1, 'ALTER TABLE inventory ADD PRIMARY KEY (item_id)');
    await onDb(3, 'CREATE TABLE scratch (n int)');
    const faulty = await runCli(['schema', 'check', '--map', mapFile]);
    expect(faulty.code).toBe(1);
    expect(faulty.stdout).toMatch(/sz-2\s+shenzhen\s+1 FAULT\(S\) \(see below\)/);
    expect(faulty.stdout).toMatch(/shard\s+table\s+column \/ constraint\s+rule\s+problem/);
    expect(faulty.stdout).toMatch(/sz-2\s+inventory\s+inventory_pkey\s+primary-key\s+the primary key inventory_pkey of player table inventory is \(item_id\)/);
    expect(faulty.stdout).toMatch(/na-1\s+scratch\s+-\s+declared-local/);
    expect(faulty.stderr).toMatch(/self-closure faults on sz-2, na-1/);
  });
});
