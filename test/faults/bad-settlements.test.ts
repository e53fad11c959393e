import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SettlementConflictError, ShardlineError, ValidationError } from '../../src/errors/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, SettlementWorker, jobIdFor, queueNameFor, type SettlementInput } from '../../src/settlement/index.js';
import { uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { createPlayers } from '../support/players.js';
import { waitFor } from '../support/wait.js';
import { deleteKeysUnder, exactlyOnceProblems, faultPrefix, keysUnder, prng, randomMatch, rowsOfMatch, sharedRedis, silent } from './support/settlement.js';

const LIMITS = { maxResults: 12, minScoreDelta: -500, maxScoreDelta: 500, maxPayloadBytes: 8192 };

/** One way to spoil a valid match, and the field the ValidationError must name. */
interface Corruption {
  name: string;
  apply(m: SettlementInput, at: number): { input: unknown; field: string };
}

const set = (m: SettlementInput, at: number, patch: Record<string, unknown>) => ({
  ...m,
  results: m.results.map((r, i) => (i === at ? { ...r, ...patch } : r)),
});

function corruptions(ghost: string): Corruption[] {
  const badIds: unknown[] = ['abc', '-5', '0', '', '1.5', ' 12', '0x1F', '1e3', '9223372036854775808', '12345678901234567890123', 12345, null, true, {}];
  const badDeltas: unknown[] = [1.5, -0.25, Number.NaN, Number.POSITIVE_INFINITY, '5', null, 2 ** 53, LIMITS.maxScoreDelta + 1, LIMITS.minScoreDelta - 1, 1e9];
  return [
    ...badIds.map((v): Corruption => ({
      name: `playerId ${JSON.stringify(v)}`,
      apply: (m, at) => ({ input: set(m, at, { playerId: v }), field: `results.${at}.playerId` }),
    })),
    ...badDeltas.map((v): Corruption => ({
      name: `scoreDelta ${String(v)}`,
      apply: (m, at) => ({ input: set(m, at, { scoreDelta: v }), field: `results.${at}.scoreDelta` }),
    })),
    {
      name: 'duplicate player',
      apply: (m, at) => ({ input: { ...m, results: [...m.results, m.results[at]] }, field: `results.${m.results.length}.playerId` }),
    },
    { name: 'unknown player', apply: (m, at) => ({ input: set(m, at, { playerId: ghost }), field: `results.${at}.playerId` }) },
    { name: 'empty results', apply: (m) => ({ input: { ...m, results: [] }, field: 'results' }) },
    { name: 'results not a list', apply: (m) => ({ input: { ...m, results: { 0: m.results[0] } }, field: 'results' }) },
    {
      name: 'too many results',
      apply: (m) => ({ input: { ...m, results: Array.from({ length: LIMITS.maxResults + 1 }, (_, i) => m.results[i % m.results.length]) }, field: 'results' }),
    },
    { name: 'oversized payload', apply: (m) => ({ input: { ...m, gameId: 'g'.repeat(LIMITS.maxPayloadBytes) }, field: '(input)' }) },
    { name: 'oversized field', apply: (m, at) => ({ input: set(m, at, { outcome: 'w'.repeat(64 * 1024) }), field: '(input)' }) },
    { name: 'unknown outcome', apply: (m, at) => ({ input: set(m, at, { outcome: 'forfeit' }), field: `results.${at}.outcome` }) },
    { name: 'unknown field', apply: (m, at) => ({ input: set(m, at, { bonus: 1 }), field: `results.${at}.bonus` }) },
    { name: 'matchId too long', apply: (m) => ({ input: { ...m, matchId: 'm'.repeat(129) }, field: 'matchId' }) },
    { name: 'endedAt without zone', apply: (m) => ({ input: { ...m, endedAt: '2025-03-01T12:00:00' }, field: 'endedAt' }) },
  ];
}

describe('bad settlement input: a typed error naming the field, and no trace anywhere', () => {
  let t: TestShards;
  let byShard: Map<string, PlayerId[]>;
  let players: PlayerId[];
  const prefixes: string[] = [];

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    byShard = await createPlayers(t.shardSet, 6);
    players = [...byShard.values()].flat();
  });
  afterAll(async () => {
    for (const p of prefixes) await deleteKeysUnder(sharedRedis(), p);
    await t?.cleanup();
  });

  function client(): { prefix: string; client: SettlementClient } {
    const prefix = faultPrefix();
    prefixes.push(prefix);
    return { prefix, client: new SettlementClient({ shards: t.shardSet, connection: sharedRedis(), prefix, logger: silent, limits: LIMITS }) };
  }

  it('property: any one spoilt part of a valid match is refused with ValidationError on that field, leaving nothing behind', async () => {
    const { prefix, client: c } = client();
    const ghost = t.shardSet.router.newPlayerId(t.shardSet.router.regions[0] as string).toString(); // routable, never created
    const catalogue = corruptions(ghost);
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: catalogue.length - 1 }), fc.integer({ min: 1, max: 2 ** 31 }), fc.nat(), async (which, seed, pos) => {
          const base = randomMatch(players, uniqueName('bad'), prng(seed), 6);
          const at = pos % base.results.length;
          const corruption = catalogue[which] as Corruption;
          const { input, field } = corruption.apply(base, at);
          const err = await c.submitSettlement(input as SettlementInput).then(
            () => null,
            (e: unknown) => e,
          );
          expect(err, corruption.name).toBeInstanceOf(ValidationError);
          expect({ case: corruption.name, code: (err as ShardlineError).code, field: (err as ValidationError).field }).toEqual({
            case: corruption.name,
            code: 'VALIDATION_FAILED',
            field,
          });
          expect(await rowsOfMatch(t.shardSet, base.matchId), `${corruption.name}: rows left`).toBe(0);
        }),
        { numRuns: 80 },
      );
      // Every case once more, at a fixed place, so none is left to chance.
      for (const corruption of catalogue) {
        const base = randomMatch(players, uniqueName('bad'), prng(7), 6);
        const { input, field } = corruption.apply(base, 1);
        await expect(c.submitSettlement(input as SettlementInput), corruption.name).rejects.toMatchObject({ code: 'VALIDATION_FAILED', field });
        expect(await rowsOfMatch(t.shardSet, base.matchId)).toBe(0);
      }
      expect(await keysUnder(sharedRedis(), prefix), 'nothing reached Redis').toEqual([]);
    } finally {
      await c.close();
    }
  }, 120_000);

  it('the same match id with other content is refused, before and after it applied, and changes nothing', async () => {
    const { prefix, client: c } = client();
    const gameId = uniqueName('conflict');
    const on = (shardId: string, i: number) => ((byShard.get(shardId) as PlayerId[])[i] as PlayerId).toString();
    const first: SettlementInput = {
      matchId: uniqueName('dup'),
      gameId,
      endedAt: '2025-03-01T12:00:00Z',
      results: [
        { playerId: on('sz-1', 0), scoreDelta: 10, outcome: 'win' },
        { playerId: on('sz-2', 0), scoreDelta: -10, outcome: 'loss' },
      ],
    };
    const others: SettlementInput[] = [
      { ...first, results: [first.results[0]!, { ...first.results[1]!, scoreDelta: -11 }] },
      { ...first, results: [first.results[0]!, { ...first.results[1]!, outcome: 'draw' }] },
      { ...first, endedAt: '2025-03-01T12:00:01Z' },
      { ...first, gameId: `${gameId}-other` },
      { ...first, results: [first.results[0]!] },
      { ...first, results: [...first.results, { playerId: on('sc-1', 0), scoreDelta: 0, outcome: 'draw' }] },
      // Entirely other shards: only the home shard's claim can tell.
      {
        ...first,
        results: [
          { playerId: on('sc-1', 1), scoreDelta: 1, outcome: 'win' },
          { playerId: on('na-1', 1), scoreDelta: -1, outcome: 'loss' },
        ],
      },
    ];
    const jobKeys = async () => (await keysUnder(sharedRedis(), prefix)).filter((k) => k.endsWith(`:${jobIdFor(first.matchId)}`));
    try {
      await c.submitSettlement(first);
      const jobs = await jobKeys();
      expect(jobs.map((k) => k.split(':')[1]).sort()).toEqual([queueNameFor('sz-1'), queueNameFor('sz-2')]);
      const refuse = async () => {
        const rows = await rowsOfMatch(t.shardSet, first.matchId);
        for (const o of others) {
          const err = await c.submitSettlement(o).then(
            () => null,
            (e: unknown) => e,
          );
          expect(err).toBeInstanceOf(SettlementConflictError);
          expect(err).toMatchObject({ code: 'SETTLEMENT_CONFLICT', matchId: first.matchId });
          expect(await rowsOfMatch(t.shardSet, first.matchId)).toBe(rows);
          expect(await jobKeys()).toEqual(jobs); // no job on sc-1 or na-1
        }
      };
      await refuse();

      const w = new SettlementWorker({ shards: t.shardSet, connection: sharedRedis(), prefix, logger: silent });
      try {
        await w.start();
        await waitFor('applied', async () => (await c.settlementStatus(first.matchId))?.state === 'applied', 30_000);
      } finally {
        await w.stop(5000);
      }
      await refuse();
      expect(await exactlyOnceProblems(t.shardSet, gameId, [first])).toEqual([]);
      expect(await c.submitSettlement(first)).toMatchObject({ state: 'applied', duplicate: true });
    } finally {
      await c.close();
    }
  }, 120_000);
});
