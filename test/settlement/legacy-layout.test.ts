import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, SettlementWorker } from '../../src/settlement/index.js';
import { jobIdFor, legacyQueueOf } from '../../src/settlement/keys.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { countKeys, countRows, createPlayers, deleteKeys, expectedStats, interleave, makeMatch, redisOptions, silent, statsOf, testPrefix } from './helpers.js';

// Before per-queue hash tags, every shard's queue sat under one prefix `{<name>}` (queue
// `settle-<shard>`). The inbox rows are the same in both layouts; only where the job sits changed.
describe('jobs queued under the old key layout', () => {
  let t: TestShards;
  let players: PlayerId[];
  const prefix = testPrefix();

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    players = interleave(await createPlayers(t.shardSet, 6));
  });
  afterAll(async () => {
    await deleteKeys(prefix);
    await deleteKeys(`{${prefix}}`);
    await t?.cleanup();
  });

  it('are not stranded: a new worker re-enqueues their parts from the inboxes and applies each exactly once', async () => {
    const client = new SettlementClient({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
    const matches = [makeMatch(players.slice(0, 4)), makeMatch(players.slice(4, 9)), makeMatch(players.slice(9, 12))];
    const legacyQueues = new Map<string, Queue>();
    try {
      // What the old code left behind: inbox rows (recorded just now, so not yet stale for the
      // reconciler's usual 60 s) and one job per part in the old layout, none in the new one.
      for (const m of matches) await client.submitSettlement(m);
      expect(await deleteKeys(prefix)).toBeGreaterThan(0);
      for (const m of matches) {
        const status = await client.settlementStatus(m.matchId);
        for (const part of status?.shards ?? []) {
          const old = legacyQueueOf(prefix, part.shardId);
          let q = legacyQueues.get(part.shardId);
          if (!q) {
            q = new Queue(old.name, { connection: redisOptions(), prefix: old.prefix });
            legacyQueues.set(part.shardId, q);
          }
          await q.add('settle', { matchId: m.matchId, shardId: part.shardId }, { jobId: jobIdFor(m.matchId), attempts: 8 });
        }
      }
      expect(await countKeys(`{${prefix}}`)).toBeGreaterThan(0);

      // Default options: the worker notices the old layout and does not wait for the parts to go stale.
      const worker = new SettlementWorker({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
      await worker.start();
      try {
        for (const m of matches) expect((await client.waitFor(m.matchId, { timeoutMs: 20_000, intervalMs: 50 })).state).toBe('applied');
      } finally {
        await worker.stop(5000);
      }
      const rows = await countRows(t.shardSet);
      expect(rows.ledger).toBe(matches.reduce((n, m) => n + m.results.length, 0));
      expect(await statsOf(t.shardSet, matches[0]!.gameId)).toEqual(expectedStats(matches));
      // The old jobs are left where they were, for the operator to delete (an older worker may still run).
      expect(await legacyQueues.values().next().value?.getJobCountByTypes('wait')).toBeGreaterThan(0);
    } finally {
      for (const q of legacyQueues.values()) await q.close();
      await client.close();
    }
  });
});
