import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlayerId } from '../../src/routing/index.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { killStarted, spawnCli } from './support/processes.js';
import { writeMapFile } from '../support/maps.js';
import { createPlayers } from '../support/players.js';
import { faultPrefix, keysUnder, rowsOfMatch, sharedRedis } from './support/settlement.js';

type ShardJson = { id: string; region: string; connection: string; buckets: string[] };

/**
 * Bad shard maps given to the processes that write: the worker and `settle`. The unit tests check
 * the validator and the migrate tests the identity guard; here the point is that the real
 * commands stop with a typed error naming the fault before anything reaches Redis or a shard.
 */
describe('bad shard maps given to the worker and settle commands', () => {
  let t: TestShards;
  let byShard: Map<string, PlayerId[]>;

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    byShard = await createPlayers(t.shardSet, 1);
  });
  afterAll(async () => {
    await killStarted();
    await t?.cleanup();
  });

  function variant(edit: (shards: ShardJson[]) => void): string {
    const json = structuredClone(t.mapJson) as { shards: ShardJson[] };
    edit(json.shards);
    return writeMapFile(json);
  }
  const shard = (shards: ShardJson[], id: string) => shards.find((s) => s.id === id) as ShardJson;
  const respell = (url: string) => url.replace('127.0.0.1', 'localhost');

  it('stop with the typed error naming the fault, and leave nothing in Redis or on any shard', async () => {
    // `settle` only where its path differs from the worker's: map validation is the same code for both.
    const cases: { name: string; map: string; error: RegExp; settle?: true }[] = [
      {
        name: 'overlap',
        map: variant((s) => void (shard(s, 'sz-2').buckets = ['1000-2047'])),
        error: /error \[SHARD_MAP_INVALID\]: invalid shard map [^\n]*\n\s+- shards\[1\]\.buckets\[0\]: buckets 1000-1023 are owned by both "sz-1" and "sz-2"/,
      },
      {
        name: 'gap',
        map: variant((s) => void (shard(s, 'na-1').buckets = ['3072-4000'])),
        error: /error \[SHARD_MAP_INVALID\][^]*buckets: 4001-4095 owned by no shard/,
      },
      {
        name: 'missing env',
        map: variant((s) => void (shard(s, 'na-1').connection = 'env:SHARDLINE_FAULTS_NEVER_SET_URL')),
        error: /error \[SHARD_MAP_INVALID\][^]*shards\[3\]\.connection: environment variable SHARDLINE_FAULTS_NEVER_SET_URL is not set/,
      },
      {
        name: "another shard's database (other spelling)",
        map: variant((s) => void (shard(s, 'sz-2').connection = respell(shard(s, 'sz-1').connection))),
        error: /error \[SHARD_IDENTITY_MISMATCH\]: shard "sz-2" expected at localhost:5432\/\S+, but that database is shard "sz-1"/,
        settle: true,
      },
      {
        name: 'two shards, one database',
        map: variant((s) => void (shard(s, 'na-1').connection = shard(s, 'sc-1').connection)),
        error: /error \[SHARD_IDENTITY_MISMATCH\][^]*the map points shards "sc-1" and "na-1" at the same database/,
        settle: true,
      },
    ];
    const on = (id: string) => ((byShard.get(id) as PlayerId[])[0] as PlayerId).toString();
    const runs = cases.map((c) => {
      const prefix = faultPrefix();
      const match = {
        matchId: uniqueName('badmap'),
        gameId: 'chess',
        endedAt: '2025-03-01T12:00:00Z',
        results: ['sz-1', 'sz-2', 'sc-1', 'na-1'].map((id, i) => ({ playerId: on(id), scoreDelta: i, outcome: 'draw' })),
      };
      const file = path.join(path.dirname(c.map), 'match.json');
      writeFileSync(file, JSON.stringify(match));
      const env = { REDIS_URL };
      return {
        ...c,
        prefix,
        match,
        worker: spawnCli(['worker', '--map', c.map, '--prefix', prefix, '--grace-ms', '1000'], env, 90_000),
        settle: c.settle ? spawnCli(['settle', '--file', file, '--map', c.map, '--prefix', prefix], env, 90_000) : undefined,
      };
    });
    for (const r of runs) {
      for (const [cmd, p] of [
        ['worker', r.worker],
        ['settle', r.settle],
      ] as const) {
        if (!p) continue;
        const ended = await p.done;
        expect({ case: r.name, cmd, ...ended }, p.output()).toEqual({ case: r.name, cmd, code: 1, signal: null });
        expect(p.output(), `${r.name} / ${cmd}`).toMatch(r.error);
        expect(p.output(), 'no stack trace, no password').not.toMatch(/\n\s+at |password/i);
      }
      expect(await keysUnder(sharedRedis(), r.prefix), `${r.name}: nothing in Redis`).toEqual([]);
      expect(await rowsOfMatch(t.shardSet, r.match.matchId), `${r.name}: nothing on a shard`).toBe(0);
    }
  }, 150_000);
});
