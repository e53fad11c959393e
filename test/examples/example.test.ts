import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killStarted, spawnCli, spawnScript } from '../faults/support/processes.js';
import { runCli } from '../support/cli.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { writeMapFile } from '../support/maps.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { deleteKeys, waitFor } from '../settlement/helpers.js';

const EXAMPLE = 'examples/wallet-inventory';

describe('examples/wallet-inventory, as its README runs it', () => {
  let t: TestShards;
  let mapFile: string;
  const prefix = uniqueName('slexample');

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    mapFile = writeMapFile({ ...t.mapJson, prefix });
  });
  afterAll(async () => {
    await killStarted();
    await deleteKeys(prefix);
    await t?.cleanup();
  });

  it('migrates the app tables, runs a worker with the effects, and the script prints the credited wallets', async () => {
    const migrated = await runCli(['migrate', 'latest', '--map', mapFile, '--app-migrations', `${EXAMPLE}/migrations`]);
    expect(migrated.code, migrated.stdout + migrated.stderr).toBe(0);

    const worker = spawnCli(
      ['worker', '--map', mapFile, '--app-migrations', `${EXAMPLE}/migrations`, '--effects', `${EXAMPLE}/effects.ts`, '--grace-ms', '5000'],
      { REDIS_URL },
      170_000,
    );
    await waitFor('worker started', async () => /settlement worker started/.test(worker.output()), 120_000, 200);
    expect(worker.output()).toMatch(/"games":\["doudizhu"\],"msg":"settlement effects loaded"/);

    const script = spawnScript(`${EXAMPLE}/settle-a-match.ts`, [mapFile], 120_000);
    const ended = await script.done;
    const out = script.output();
    expect(ended, out).toEqual({ code: 0, signal: null });
    expect(out).toMatch(/match example-\S+: applied/);
    const lines = out.split('\n').filter((l) => l.startsWith('player '));
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/coins 30, xp 120, inventory gem x1$/);
    expect(lines[1]).toMatch(/coins 5, xp 40, inventory \(empty\)$/);
    expect(lines[2]).toMatch(/coins 5, xp 40, inventory feather x2$/);

    worker.kill('SIGTERM');
    expect(await worker.done, worker.output().slice(-2000)).toEqual({ code: 0, signal: null });
  }, 300_000);
});
