import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient } from '../../src/settlement/index.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import {
  createPlayers,
  deleteKeys,
  expectedStats,
  interleave,
  makeMatch,
  redisOptions,
  shardline,
  silent,
  startShardline,
  statsOf,
  testPrefix,
  waitFor,
  writeMapFile,
} from './helpers.js';

describe('shardline settle, worker and settlements (subprocesses)', () => {
  let t: TestShards;
  let players: PlayerId[];
  let prefix: string;
  let mapFile: string;
  let client: SettlementClient;

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    players = interleave(await createPlayers(t.shardSet, 3));
    prefix = testPrefix();
    // The prefix sits in the map: commands without --prefix use it, not the default queues.
    mapFile = writeMapFile({ ...t.mapJson, prefix });
    client = new SettlementClient({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
  });
  afterAll(async () => {
    await client?.close();
    await deleteKeys(prefix);
    await t?.cleanup();
  });

  it('settles a match file through a worker process exactly once, and stops on SIGTERM with exit 0', async () => {
    const match = makeMatch(players.slice(0, 6), { endedAt: '2025-03-01T12:00:00Z' });
    const file = path.join(path.dirname(mapFile), 'match.json');
    writeFileSync(file, JSON.stringify(match));
    const common = ['--map', mapFile];

    // --prefix overrides the map's (here with the same name, so the worker below finds the job).
    const settled = await shardline(['settle', '--file', file, ...common, '--prefix', prefix]);
    expect(settled.code, settled.stderr).toBe(0);
    const status = JSON.parse(settled.stdout) as { state: string; duplicate: boolean; shards: { shardId: string }[] };
    expect(status).toMatchObject({ matchId: match.matchId, state: 'pending', duplicate: false });
    expect(status.shards).toHaveLength(4);

    const bad = path.join(path.dirname(mapFile), 'bad.json');
    writeFileSync(bad, JSON.stringify({ ...match, matchId: 'other', results: [...match.results, match.results[0]] }));
    const refused = await shardline(['settle', '--file', bad, ...common]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/VALIDATION_FAILED.*results\.6\.playerId/);

    // Each `shardline` process starts tsx: seconds apiece on a loaded 2-core machine, hence the timeouts.

    const worker = startShardline(['worker', ...common, '--concurrency', '8', '--batch-size', '4', '--metrics-port', '0', '--grace-ms', '5000'], 180_000);
    try {
      const port = await waitFor('metrics port in the log', async () => Number(/"port":(\d+)/.exec(worker.output())?.[1] ?? 0), 120_000);
      await waitFor('applied', async () => (await client.settlementStatus(match.matchId))?.state === 'applied', 30_000);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/shardline_settlement_results_applied_total\{shard="sz-1"\} \d+/);
      expect(metrics).toContain('shardline_settlement_batch_size_bucket');
      expect(worker.output()).toMatch(/no persistence|settlement worker started/);
    } finally {
      worker.child.kill('SIGTERM');
    }
    const ended = await worker.done;
    expect({ code: ended.code, signal: ended.signal }, ended.stdout + ended.stderr).toEqual({ code: 0, signal: null });
    expect(ended.stdout).toContain('settlement worker stopped');
    expect(await statsOf(t.shardSet, match.gameId)).toEqual(expectedStats([match]));

    const again = await shardline(['settle', '--file', file, ...common]);
    expect(JSON.parse(again.stdout)).toMatchObject({ state: 'applied', duplicate: true });
    const shown = await shardline(['settlements', 'status', match.matchId, ...common]);
    expect(JSON.parse(shown.stdout)).toMatchObject({ matchId: match.matchId, state: 'applied' });
    const failed = await shardline(['settlements', 'failed', ...common]);
    expect(failed).toMatchObject({ code: 0, stdout: 'no failed settlements\n' });
    expect((await shardline(['settlements', 'retry', ...common])).code).toBe(1);
    const retried = await shardline(['settlements', 'retry', '--all', ...common]);
    expect(retried).toMatchObject({ code: 0, stdout: expect.stringContaining('0 parts re-enqueued') });
  }, 300_000);

  it('worker --effects: a missing module, or one without effects of functions, is refused in one line before connecting', async () => {
    const missing = await shardline(['worker', '--map', mapFile, '--effects', 'no/such-effects.ts']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/effects module "no\/such-effects\.ts": no such file/);
    const bad = await shardline(['worker', '--map', mapFile, '--effects', 'test/settlement/fixtures/bad-effects.ts']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/effects\.coins: must be a function/);
    const none = await shardline(['worker', '--map', mapFile, '--effects', 'test/settlement/fixtures/no-effects.ts']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/exports no `effects`/);
  }, 180_000);
});
