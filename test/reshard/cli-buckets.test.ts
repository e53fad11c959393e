import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { writeMapFile } from '../support/maps.js';
import { waitFor } from '../support/wait.js';
import { createMoveShards, seedBuckets, type MoveShards } from './move-support.js';

describe('shardline buckets (CLI, as a subprocess)', { timeout: 240_000 }, () => {
  let s: MoveShards;
  let mapFile: string;
  beforeAll(async () => {
    s = await createMoveShards();
    await seedBuckets(s, 200, 215, 3);
    mapFile = writeMapFile(s.mapJson);
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  it('plans with --dry-run and changes nothing', async () => {
    const r = await runCli(['buckets', 'move', '200-207', '--to', 'sz-2', '--dry-run', '--map', mapFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/plan: move 200-207 sz-1 → sz-2 \(freeze, 2 batches/);
    expect(r.stdout).toMatch(/players\s+24/);
    expect((await s.query(1, `SELECT count(*)::int AS n FROM players`))[0]).toEqual({ n: 0 });
  });

  it('moves, lists, verifies (a tampered row fails), writes the live map and purges', async () => {
    const moved = await runCli([
      'buckets',
      'move',
      '200-207',
      '--to',
      'sz-2',
      '--batch',
      '4',
      '--no-purge',
      '--json',
      '--map',
      mapFile,
      '--write-map',
      `${mapFile}.live`,
    ]);
    expect(moved.code, moved.stderr).toBe(0);
    const report = JSON.parse(moved.stdout.trim()) as { id: string; state: string; rowsCopied: number; freezes: number[] };
    expect(report).toMatchObject({ state: 'moved' });
    expect(report.freezes).toHaveLength(2);
    const live = JSON.parse((await import('node:fs')).readFileSync(`${mapFile}.live`, 'utf8')) as {
      epoch: number;
      shards: { id: string; buckets: string[] }[];
    };
    expect(live.epoch).toBeGreaterThan(0);
    expect(live.shards.find((x) => x.id === 'sz-2')?.buckets).toEqual(['200-207']);
    expect(live.shards.find((x) => x.id === 'sz-1')?.buckets).toEqual(['0-199', '208-4095']);

    const moves = await runCli(['buckets', 'moves', '--json', '--map', mapFile]);
    expect(moves.code).toBe(0);
    const list = JSON.parse(moves.stdout) as Record<string, unknown>[];
    expect(list[0]).toMatchObject({ id: report.id, range: [200, 207], from: 'sz-1', to: 'sz-2', mode: 'freeze', state: 'moved', lagBytes: null });
    expect(Object.keys(list[0]!)).toEqual(
      expect.arrayContaining(['id', 'range', 'from', 'to', 'mode', 'state', 'rowsCopied', 'lagBytes', 'frozenMs', 'artifacts']),
    );

    const listed = await runCli(['buckets', 'list', '--map', mapFile]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/sz-1 .*0-199@0,208-4095@0/);
    expect(listed.stdout).toMatch(/200-203→sz-2@\d+/);

    expect((await runCli(['buckets', 'verify', '200-207', '--map', mapFile])).code).toBe(0);
    await s.query(
      1,
      `UPDATE settlement_ledger SET score_delta = score_delta + 1 WHERE player_id = (SELECT min(player_id) FROM players WHERE ((player_id >> 10) & 4095) = 205)`,
    );
    const bad = await runCli(['buckets', 'verify', '200-207', '--map', mapFile]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/settlement_ledger bucket 205/);

    const purged = await runCli(['buckets', 'purge', report.id, '--map', mapFile]);
    expect(purged.code, purged.stderr).toBe(0);
    expect(purged.stdout).toMatch(/done .*source copy purged/);
    expect((await s.query(0, `SELECT count(*)::int AS n FROM players WHERE ((player_id >> 10) & 4095) BETWEEN 200 AND 207`))[0]).toEqual({ n: 0 });
  });

  it('reports errors on one line with their code', async () => {
    const r = await runCli(['buckets', 'move', '0-5000', '--to', 'sz-2', '--map', mapFile]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^error \[VALIDATION_FAILED\]: range: /);
    const two = await runCli(['buckets', 'move', '200-203', '--to', 'sz-2', '--map', mapFile]);
    expect(two.code).toBe(1);
    expect(two.stderr.trim()).toMatch(/^error \[MOVE_REFUSED\]: bucket move of 200-203 refused: shard sz-2 already owns 200-203/);
    const none = await runCli(['buckets', 'move', '--resume', 'nosuchmove', '--map', mapFile]);
    expect(none.stderr.trim()).toMatch(/^error \[MOVE_NOT_FOUND\]/);
  });

  it('shards check exits 1 on a move left frozen; re-running the move resumes it', async () => {
    const cli = startCli(['buckets', 'move', '208-215', '--to', 'sz-2', '--no-purge', '--map', mapFile], { env: { SHARDLINE_MOVE_PAUSE_AT: 'fenced' } });
    const id = await waitFor('the pause', async () => /paused at fenced \(move ([a-z0-9]+)\)/.exec(cli.stderr())?.[1], 60_000);
    cli.child.kill('SIGKILL');
    await cli.done;
    const check = await runCli(['shards', 'check', '--map', mapFile]);
    expect(check.code).toBe(1);
    expect(check.stderr).toMatch(new RegExp(`sz-1: buckets 208-211 left frozen by move ${id}`));
    const resumed = await runCli(['buckets', 'move', '208-215', '--to', 'sz-2', '--no-purge', '--map', mapFile]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(new RegExp(`move ${id}: 208-215 sz-1 → sz-2 \\(freeze\\) moved`));
    const again = await runCli(['shards', 'check', '--map', mapFile]);
    expect(again.stderr).not.toMatch(/left frozen/);
  });
});
