import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { writeMapFile } from '../support/maps.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { uniqueName } from '../support/env.js';
import { deleteKeys } from '../settlement/helpers.js';
import { Accounts } from '../../src/accounts/index.js';

/** What Node and pino print for an error with its stack: the CLI must never show either. */
const STACK = /^\s+at |"stack"|"err":/m;

describe('the CLI front door (subprocesses)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'shardline-front-'));
  const matchFile = path.join(dir, 'match.json');
  writeFileSync(
    matchFile,
    JSON.stringify({ matchId: 'front-1', gameId: 'ddz', endedAt: '2025-01-01T00:00:00Z', results: [{ playerId: '1', scoreDelta: 1, outcome: 'win' }] }),
  );
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    const r = await runCli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });

  it('route reports every bad id, still routes the good ones, and exits 1', async () => {
    const r = await runCli(['route', '123456789', 'abc', '0', '99999999999999999999999']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/123456789\s+shenzhen\s+sz-2/);
    expect(r.stderr).toMatch(/invalid player id "abc"/);
    expect(r.stderr).toMatch(/invalid player id "0"/);
    expect(r.stderr).toMatch(/invalid player id "99999999999999999999999"/);
    expect(r.stderr).not.toMatch(STACK);
  });

  it('route without --map outside a checkout refuses, naming --map and SHARDLINE_MAP', async () => {
    // From another working directory (a project that is not this checkout); runCli unsets SHARDLINE_MAP.
    const r = await runCli(['route', '123456789'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--map/);
    expect(r.stderr).toMatch(/SHARDLINE_MAP/);
    expect(r.stdout).toBe('');
  });

  it('settle --wait abc is refused naming the flag', async () => {
    const r = await runCli(['settle', '--file', matchFile, '--wait', 'abc']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error \[VALIDATION_FAILED\]: --wait: .*"abc"/);
    expect(r.stderr).not.toMatch(STACK);
  });

  it('an unreachable Redis is named with its host:port and REDIS_URL within seconds, with no stack', async () => {
    const t0 = Date.now();
    const r = await runCli(['settle', '--file', matchFile], { env: { REDIS_URL: 'redis://127.0.0.1:1/0' } });
    expect(Date.now() - t0).toBeLessThan(10_000); // mostly tsx starting up; ioredis alone took 14 s
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error \[REDIS_UNAVAILABLE\]: Redis at 127\.0\.0\.1:1 is unreachable/);
    expect(r.stderr).toMatch(/REDIS_URL/);
    expect(r.stderr).not.toMatch(STACK);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  describe('with migrated shards', () => {
    let t: TestShards;
    let mapFile: string;
    beforeAll(async () => {
      t = await createTestShards('one-shard');
      mapFile = writeMapFile(t.mapJson);
    });
    afterAll(async () => {
      await t?.cleanup();
      rmSync(path.dirname(mapFile), { recursive: true, force: true });
    });

    it('settle --wait that runs out prints the last status and exits 1', async () => {
      const prefix = uniqueName('front');
      try {
        const player = await new Accounts(t.shardSet).createPlayer({ region: 'shenzhen', nickname: 'front' });
        const file = path.join(path.dirname(mapFile), 'wait.json');
        const matchId = uniqueName('front-wait');
        writeFileSync(
          file,
          JSON.stringify({
            matchId,
            gameId: 'ddz',
            endedAt: '2025-01-01T00:00:00Z',
            results: [{ playerId: String(player.id), scoreDelta: 1, outcome: 'win' }],
          }),
        );
        // No worker runs: the match stays pending for the whole --wait.
        const r = await runCli(['settle', '--file', file, '--map', mapFile, '--prefix', prefix, '--wait', '300']);
        expect(r.code, r.stderr).toBe(1);
        expect(JSON.parse(r.stdout)).toMatchObject({ matchId, state: 'pending', duplicate: false });
        expect(r.stderr).not.toMatch(STACK);
      } finally {
        await deleteKeys(prefix);
      }
    });

    it('settlements retry of a match no shard knows exits 1 and says so', async () => {
      const r = await runCli(['settlements', 'retry', uniqueName('no-such-match'), '--map', mapFile]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no shard knows match/);
      expect(r.stderr).not.toMatch(STACK);
    });
  });
});
