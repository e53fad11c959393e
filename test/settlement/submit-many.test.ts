import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SettlementConflictError, ValidationError } from '../../src/errors/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, SettlementWorker, MAX_SUBMIT_MATCHES, type SettlementInput, type SubmitSettlementResult } from '../../src/settlement/index.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';
import { countRows, createPlayers, deleteKeys, expectedStats, interleave, makeMatch, redisOptions, silent, statsOf, testPrefix, waitFor } from './helpers.js';

function okStatus(r: SubmitSettlementResult | undefined) {
  if (!r?.ok) throw new Error(`expected ok, got ${r ? r.error.message : 'nothing'}`);
  return r.status;
}

function errorOf(r: SubmitSettlementResult | undefined): Error {
  if (!r || r.ok) throw new Error('expected a refusal');
  return r.error;
}

describe.each(LAYOUTS)('submitSettlements (%s)', (layout) => {
  let t: TestShards;
  let players: PlayerId[];
  let prefix: string;
  let client: SettlementClient;

  beforeAll(async () => {
    t = await createTestShards(layout);
    players = interleave(await createPlayers(t.shardSet, 12));
    prefix = testPrefix();
    client = new SettlementClient({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
  });
  afterAll(async () => {
    await client?.close();
    await deleteKeys(prefix);
    await t?.cleanup();
  });

  /** The match's rows as submitSettlement alone would leave them: one part per touched shard, one claim. */
  async function expectRecorded(match: SettlementInput): Promise<void> {
    const touched = new Set(match.results.map((r) => t.shardSet.router.shardFor(BigInt(r.playerId) as PlayerId).id));
    expect(await countRows(t.shardSet, match.matchId)).toMatchObject({ inbox: touched.size, claims: 1, ledger: 0 });
  }

  it('resolves to results aligned with the input, and shares the statements of each step per shard', async () => {
    const matches = Array.from({ length: 24 }, (_, i) => makeMatch(players.slice(i % 8, (i % 8) + 4)));
    const calls = vi.spyOn(t.shardSet, 'withShard');
    let results: SubmitSettlementResult[];
    let statements: number;
    try {
      results = await client.submitSettlements(matches);
    } finally {
      statements = calls.mock.calls.length;
      calls.mockRestore();
    }
    expect(results).toHaveLength(matches.length);
    results.forEach((r, i) => expect(okStatus(r)).toMatchObject({ matchId: matches[i]?.matchId, state: 'pending', duplicate: false }));
    for (const m of matches) await expectRecorded(m);
    if (layout === 'one-shard') {
      // One statement: the only shard is every match's home, so each is read, checked and claimed
      // with its part at once (submit.ts, a match on its home shard alone).
      expect(statements).toBe(1);
    } else {
      // One by one these 24 matches take over 200 statements; together a few per step per shard.
      expect(statements).toBeGreaterThan(0);
      expect(statements).toBeLessThanOrEqual(3 * t.map.shards.length * 4);
    }
  });

  it('refuses a bad match without refusing the rest, and leaves no trace of it', async () => {
    const good1 = makeMatch(players.slice(0, 3));
    const badDelta = makeMatch(players.slice(3, 5), { results: [{ playerId: players[3]!.toString(), scoreDelta: 2 ** 40, outcome: 'win' }] });
    const noSuchPlayer = makeMatch([...players.slice(5, 7), (players[0]! + 1_000_000n) as PlayerId]);
    const good2 = makeMatch(players.slice(6, 10));
    const results = await client.submitSettlements([good1, badDelta, noSuchPlayer, good2]);
    expect(okStatus(results[0]).matchId).toBe(good1.matchId);
    expect(errorOf(results[1])).toBeInstanceOf(ValidationError);
    expect(errorOf(results[2])).toBeInstanceOf(ValidationError);
    expect(errorOf(results[2]).message).toMatch(/does not exist/);
    expect(okStatus(results[3]).matchId).toBe(good2.matchId);
    for (const m of [good1, good2]) await expectRecorded(m);
    for (const m of [badDelta, noSuchPlayer]) expect(await countRows(t.shardSet, m.matchId)).toMatchObject({ inbox: 0, claims: 0 });
    // Not a match at all: refused in its place too.
    const odd = await client.submitSettlements([null as unknown as SettlementInput, makeMatch(players.slice(1, 3))]);
    expect(errorOf(odd[0])).toBeInstanceOf(ValidationError);
    expect(odd[1]?.ok).toBe(true);
  });

  it('records a match given twice in one batch once; other content under its id in the same batch is a conflict', async () => {
    const match = makeMatch(players.slice(2, 8));
    const [a, b] = await client.submitSettlements([match, { ...match, results: [...match.results].reverse() }]);
    expect([okStatus(a).duplicate, okStatus(b).duplicate].sort()).toEqual([false, true]);
    expect(okStatus(a).contentHash).toBe(okStatus(b).contentHash);
    await expectRecorded(match);

    const other = makeMatch(players.slice(0, 2));
    const changed = { ...other, results: other.results.map((r, i) => (i === 0 ? { ...r, scoreDelta: r.scoreDelta + 1 } : r)) };
    const [c, d] = await client.submitSettlements([other, changed]);
    const outcomes = [c, d].map((r) => (r?.ok ? 'ok' : r?.error instanceof SettlementConflictError ? 'conflict' : String(r?.error)));
    expect(outcomes.sort()).toEqual(['conflict', 'ok']);
    await expectRecorded(other);
  });

  it('is idempotent: the same batch again answers each match as a duplicate and records nothing more', async () => {
    const matches = Array.from({ length: 6 }, (_, i) => makeMatch(players.slice(i, i + 3)));
    const first = await client.submitSettlements(matches);
    expect(first.every((r) => r.ok && !r.status.duplicate)).toBe(true);
    const before = await countRows(t.shardSet);
    const again = await client.submitSettlements([...matches].reverse());
    again.forEach((r, i) => {
      const status = okStatus(r);
      expect(status).toMatchObject({ matchId: matches[matches.length - 1 - i]?.matchId, duplicate: true, state: 'pending' });
    });
    expect(await countRows(t.shardSet)).toEqual(before);
    // One at a time agrees with the batch.
    expect(await client.submitSettlement(matches[0]!)).toMatchObject({ duplicate: true, contentHash: okStatus(first[0]).contentHash });
  });

  it('applies every match of a batch exactly once: the worker settles them as it does matches submitted one by one', async () => {
    const gameId = `batch-${layout}`;
    const matches = Array.from({ length: 16 }, (_, i) => makeMatch(players.slice(i % 9, (i % 9) + 3), { gameId }));
    const bad = makeMatch(players.slice(0, 2), { gameId, results: [] });
    const results = await client.submitSettlements([...matches.slice(0, 8), bad, ...matches.slice(8)]);
    expect(results.filter((r) => r.ok)).toHaveLength(16);
    expect(errorOf(results[8])).toBeInstanceOf(ValidationError);
    // Submitted again while applying: nothing is counted twice.
    const w = new SettlementWorker({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent, concurrency: 16, batchSize: 8, lingerMs: 5 });
    try {
      await w.start();
      expect((await client.submitSettlements(matches)).every((r) => r.ok && r.status.duplicate)).toBe(true);
      await waitFor(
        'every match applied',
        async () => {
          const states = await Promise.all(matches.map((m) => client.settlementStatus(m.matchId)));
          return states.every((st) => st?.state === 'applied') || undefined;
        },
        30_000,
      );
    } finally {
      await w.stop(5000);
    }
    expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats(matches));
  });

  it('throws only for a batch that is not an array of at most MAX_SUBMIT_MATCHES', async () => {
    await expect(client.submitSettlements({} as unknown as SettlementInput[])).rejects.toBeInstanceOf(ValidationError);
    const many = Array.from({ length: MAX_SUBMIT_MATCHES + 1 }, () => makeMatch(players.slice(0, 1)));
    await expect(client.submitSettlements(many)).rejects.toBeInstanceOf(ValidationError);
    expect(await client.submitSettlements([])).toEqual([]);
  });
});
