import { mkdtempSync, cpSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppSchemaVersionError, ShardSet, migrateShards } from '../../src/index.js';
import { SettlementWorker } from '../../src/settlement/index.js';
import { deleteKeys, redisOptions, silent, testPrefix } from '../settlement/helpers.js';
import { runCli, startCli } from '../support/cli.js';
import { waitFor } from '../support/wait.js';
import { writeMapFile } from '../support/maps.js';
import { createTestShards, type TestShards } from '../support/shards.js';

const GOOD = fileURLToPath(new URL('../fixtures/app-migrations/good/', import.meta.url));

/** The good fixture without its newest migration: the shards are ahead of it. */
function olderFolder(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'shardline-app-mig-'));
  writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}');
  cpSync(path.join(GOOD, '0001_inventory.ts'), path.join(dir, '0001_inventory.ts'));
  return dir;
}

let t: TestShards;
const prefix = testPrefix();
beforeAll(async () => {
  t = await createTestShards('several-shards');
  expect((await migrateShards(t.map.shards, 'latest', { appMigrations: GOOD })).every((r) => r.ok)).toBe(true);
});
afterAll(async () => {
  await t?.cleanup();
  await deleteKeys(prefix);
});

describe('the worker and the app schema', () => {
  it('refuses to start on shards whose app schema is not its folder, and starts on the right one', async () => {
    const shards = new ShardSet(t.map);
    try {
      const wrong = new SettlementWorker({ shards, connection: redisOptions(), prefix, logger: silent, appMigrations: olderFolder() });
      await expect(wrong.start()).rejects.toThrow(AppSchemaVersionError);
      const right = new SettlementWorker({ shards, connection: redisOptions(), prefix, logger: silent, appMigrations: GOOD });
      await right.start();
      expect(right.activeShards).toHaveLength(4);
      await right.stop(0);
    } finally {
      await shards.close();
    }
  });

  it('shardline worker --app-migrations refuses the wrong folder; without one it runs and logs the unchecked app version once', async () => {
    const mapFile = writeMapFile(t.mapJson);
    const refused = await runCli(['worker', '--map', mapFile, '--prefix', prefix, '--app-migrations', olderFolder()], { timeoutMs: 30_000 });
    expect(refused.code).toBe(1);
    expect(refused.stdout + refused.stderr).toMatch(/APP_SCHEMA_VERSION_MISMATCH|ahead of this code/);

    const unchecked = startCli(['worker', '--map', mapFile, '--prefix', prefix, '--grace-ms', '2000'], { timeoutMs: 60_000 });
    await waitFor('worker started', async () => unchecked.output().includes('settlement worker started') || unchecked.child.exitCode !== null, 45_000);
    unchecked.child.kill('SIGTERM');
    const done = await unchecked.done;
    expect(done.code).toBe(0);
    const warnings = done.stdout.split('\n').filter((l) => l.includes('not checked'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/has app migrations up to 0002_wallet, not checked/);
  });
});
