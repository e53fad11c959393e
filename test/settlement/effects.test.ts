import { createHash } from 'node:crypto';
import { Queue } from 'bullmq';
import { sql, type Kysely } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Accounts } from '../../src/accounts/index.js';
import { SettlementConflictError, ValidationError } from '../../src/errors/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import {
  SettlementClient,
  SettlementWorker,
  queueNameFor,
  type AppliedResult,
  type SettlementInput,
  type SettlementWorkerOptions,
} from '../../src/settlement/index.js';
import { DEFAULT_LIMITS } from '../../src/settlement/types.js';
import { normalizeMatch } from '../../src/settlement/validate.js';
import { errorOf } from '../support/errors.js';
import { uniqueName } from '../support/env.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';
import type { ShardSet } from '../../src/db/index.js';
import { WALLET_DDL, creditWallets, type WalletDb, type WalletTable } from './fixtures/wallet-effects.js';

type WalletApp = { wallet: WalletTable };
import { countKeys, countRows, createPlayers, deleteKeys, interleave, redisOptions, silent, testPrefix, waitFor } from './helpers.js';

const coinsSchema = z.strictObject({ coins: z.number().int().min(0).max(1000), drops: z.array(z.string()).optional() });

describe.each(LAYOUTS)('settlement data and effects (%s)', (layout) => {
  let t: TestShards;
  let players: PlayerId[];
  const open: { stop(): Promise<void> }[] = [];
  const prefixes: string[] = [];

  beforeAll(async () => {
    t = await createTestShards(layout);
    for (const s of t.shardSet.shards) await sql.raw(WALLET_DDL).execute(await t.shardSet.db(s.id));
    players = interleave(await createPlayers(t.shardSet, 6));
  });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.stop();
    for (const p of prefixes.splice(0)) await deleteKeys(p);
  });
  afterAll(() => t?.cleanup());

  function client(prefix: string): SettlementClient {
    const c = new SettlementClient({
      shards: t.shardSet,
      connection: redisOptions(),
      prefix,
      logger: silent,
      games: { coins: { data: coinsSchema }, plain: {} },
    });
    open.push({ stop: () => c.close() });
    return c;
  }

  function worker(prefix: string, options: Partial<SettlementWorkerOptions<WalletApp>> = {}): SettlementWorker<WalletApp> {
    const w = new SettlementWorker<WalletApp>({
      shards: t.shardSet as unknown as ShardSet<WalletApp>,
      connection: redisOptions(),
      prefix,
      logger: silent,
      concurrency: 16,
      batchSize: 8,
      lingerMs: 5,
      effects: { coins: creditWallets },
      ...options,
    });
    open.push({ stop: () => w.stop(5000) });
    return w;
  }

  function setup(): { prefix: string; client: SettlementClient } {
    const prefix = testPrefix();
    prefixes.push(prefix);
    return { prefix, client: client(prefix) };
  }

  let next = 0;
  /** A match of 3 players (across shards) in game "coins", each given `coins(i)`. */
  function match(coins: (i: number) => number, overrides: Partial<SettlementInput> = {}): SettlementInput {
    const start = (next += 3) % (players.length - 3);
    const ps = players.slice(start, start + 3);
    return {
      matchId: uniqueName('fx'),
      gameId: 'coins',
      endedAt: new Date('2025-03-01T12:00:00.000Z'),
      results: ps.map((playerId, i) => ({ playerId: playerId.toString(), scoreDelta: 10 - i, outcome: i === 0 ? 'win' : 'loss', data: { coins: coins(i) } })),
      ...overrides,
    };
  }

  async function wallets(): Promise<Map<string, { coins: bigint; credits: number }>> {
    const out = new Map<string, { coins: bigint; credits: number }>();
    for (const s of t.shardSet.shards) {
      const db = (await t.shardSet.db(s.id)) as unknown as Kysely<WalletDb>;
      for (const r of await db.selectFrom('wallet').selectAll().execute()) out.set(r.player_id.toString(), { coins: BigInt(r.coins), credits: r.credits });
    }
    return out;
  }

  /** Every wallet as the matches credited exactly once would leave it, added to `before`. */
  function expected(before: Map<string, { coins: bigint; credits: number }>, ms: readonly SettlementInput[]) {
    const out = new Map([...before].map(([k, v]) => [k, { ...v }]));
    for (const m of ms)
      for (const r of m.results) {
        const w = out.get(r.playerId.toString()) ?? { coins: 0n, credits: 0 };
        w.coins += BigInt((r.data as { coins: number }).coins);
        w.credits += 1;
        out.set(r.playerId.toString(), w);
      }
    return out;
  }

  describe('data at submit', () => {
    it('refuses invalid data naming the spot, and writes nothing (inbox, claims, ledger, Redis)', async () => {
      const { prefix, client: c } = setup();
      const m = match(() => 5);
      (m.results[2] as { data: unknown }).data = { coins: 'lots' };
      const err = await errorOf(c.submitSettlement(m));
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field).toBe('results.2.data.coins');
      const unknownKey = match(() => 5);
      (unknownKey.results[1] as { data: unknown }).data = { coins: 1, gems: 3 };
      expect(((await errorOf(c.submitSettlement(unknownKey))) as ValidationError).field).toBe('results.1.data.gems');
      const notObject = match(() => 5);
      (notObject.results[0] as { data: unknown }).data = [1, 2];
      expect(((await errorOf(c.submitSettlement(notObject))) as ValidationError).field).toBe('results.0.data');
      for (const x of [m, unknownKey, notObject]) expect(await countRows(t.shardSet, x.matchId)).toMatchObject({ inbox: 0, claims: 0, ledger: 0 });
      expect(await countKeys(prefix)).toBe(0);
    });

    it('refuses data for a game without a schema, and names it', async () => {
      const { prefix, client: c } = setup();
      for (const gameId of ['plain', 'unlisted']) {
        const m = match(() => 1, { gameId });
        const err = await errorOf(c.submitSettlement(m));
        expect(err).toBeInstanceOf(ValidationError);
        expect((err as ValidationError).field).toBe('results.0.data');
        expect((err as Error).message).toMatch(new RegExp(`game "${gameId}" takes no data`));
        expect(await countRows(t.shardSet, m.matchId)).toMatchObject({ inbox: 0, claims: 0 });
      }
      expect(await countKeys(prefix)).toBe(0);
    });

    it('takes any schema with parse(), reporting its error', () => {
      const games = {
        g: {
          data: {
            parse: (v: unknown) =>
              typeof (v as { n?: unknown }).n === 'number'
                ? v
                : (() => {
                    throw new Error('n must be a number');
                  })(),
          },
        },
      };
      const base = {
        matchId: 'm',
        gameId: 'g',
        endedAt: '2025-03-01T12:00:00Z',
        results: [{ playerId: '1', scoreDelta: 1, outcome: 'win', data: { n: 'x' } }],
      };
      expect(() => normalizeMatch(base, null, DEFAULT_LIMITS, games)).toThrow(/results\.0\.data: n must be a number/);
      expect(normalizeMatch({ ...base, results: [{ ...base.results[0], data: { n: 1 } }] }, null, DEFAULT_LIMITS, games).results[0]?.data).toEqual({ n: 1 });
    });

    it('keeps data as JSON: keys sorted, a "__proto__" key a key, non-JSON values refused at their spot', () => {
      const games = { g: { data: { parse: (v: unknown) => v } } };
      const of = (data: unknown) =>
        normalizeMatch(
          { matchId: 'm', gameId: 'g', endedAt: '2025-03-01T12:00:00Z', results: [{ playerId: '1', scoreDelta: 1, outcome: 'win', data }] },
          null,
          DEFAULT_LIMITS,
          games,
        );
      expect(JSON.stringify(of(JSON.parse('{"b":1,"__proto__":{"x":1},"a":[true,null]}')).results[0]?.data)).toBe(
        '{"__proto__":{"x":1},"a":[true,null],"b":1}',
      );
      expect(() => of({ a: { b: [1, new Date()] } })).toThrow(/results\.0\.data\.a\.b\.1: must be JSON/);
      expect(() => of({ n: Number.NaN })).toThrow(/results\.0\.data\.n: must be a finite number/);
      let deep: unknown = {};
      for (let i = 0; i < 40; i++) deep = { d: deep };
      expect(() => of(deep)).toThrow(/nests deeper than 32 levels/);
    });

    it('refuses a games option whose schema has no parse', () => {
      expect(() => new SettlementClient({ shards: t.shardSet, connection: redisOptions(), logger: silent, games: { g: { data: {} as never } } })).toThrow(
        /games\.g\.data/,
      );
    });

    it('hashes a match without data exactly as before data existed, and data into the hash', () => {
      const base = { matchId: 'm-1', gameId: 'coins', endedAt: '2025-03-01T12:00:00Z', results: [{ playerId: '7', scoreDelta: 3, outcome: 'win' as const }] };
      const before = createHash('sha256')
        .update(JSON.stringify([1, 'm-1', 'coins', '2025-03-01T12:00:00.000Z', [['7', 3, 'win']]]))
        .digest('hex');
      const games = { coins: { data: coinsSchema } };
      expect(normalizeMatch(base, null, DEFAULT_LIMITS, games).contentHash).toBe(before);
      const withData = (data: object) => normalizeMatch({ ...base, results: [{ ...base.results[0], data }] }, null, DEFAULT_LIMITS, games).contentHash;
      expect(withData({ coins: 1 })).not.toBe(before);
      expect(withData({ coins: 1 })).not.toBe(withData({ coins: 2 }));
      expect(withData({ coins: 1, drops: ['a'] })).toBe(withData({ drops: ['a'], coins: 1 }));
    });

    it('a resubmission with other data is a conflict; with the same data (keys in any order) a duplicate', async () => {
      const { client: c } = setup();
      const m = match((i) => i + 1);
      await c.submitSettlement(m);
      const reordered = { ...m, results: m.results.map((r) => ({ ...r, data: { drops: undefined, ...(r.data as object) } })) };
      expect((await c.submitSettlement(reordered)).duplicate).toBe(true);
      const other = { ...m, results: m.results.map((r, i) => (i === 1 ? { ...r, data: { coins: 99 } } : r)) };
      expect(await errorOf(c.submitSettlement(other))).toBeInstanceOf(SettlementConflictError);
      const none = { ...m, results: m.results.map(({ data: _data, ...r }) => r) };
      expect(await errorOf(c.submitSettlement(none))).toBeInstanceOf(SettlementConflictError);
    });
  });

  describe('effects', () => {
    it('credit once per result; status, history and the ledger show the data; the same job again changes nothing', async () => {
      const { prefix, client: c } = setup();
      const before = await wallets();
      const calls: AppliedResult<{ coins: number }>[][] = [];
      const w = worker(prefix, {
        effects: {
          coins: async (trx, applied: readonly AppliedResult<{ coins: number }>[]) => {
            calls.push([...applied]);
            await creditWallets(trx, applied);
          },
        },
      });
      await w.start();
      const m = match((i) => 10 * (i + 1), {});
      (m.results[0] as { data: unknown }).data = { coins: 10, drops: ['gem'] };
      await c.submitSettlement(m);
      const status = await c.waitFor(m.matchId, { timeoutMs: 20_000 });
      expect(status.state).toBe('applied');
      expect(await wallets()).toEqual(expected(before, [m]));
      const rows = calls.flat();
      expect(rows.map((r) => r.playerId.toString()).sort()).toEqual(m.results.map((r) => r.playerId.toString()).sort());
      expect(rows.find((r) => r.playerId.toString() === m.results[0]?.playerId)).toMatchObject({
        matchId: m.matchId,
        gameId: 'coins',
        outcome: 'win',
        scoreDelta: 10,
        endedAt: new Date('2025-03-01T12:00:00.000Z'),
        data: { coins: 10, drops: ['gem'] },
      });

      const shown = Object.assign({}, ...status.shards.map((s) => s.data ?? {})) as Record<string, unknown>;
      expect(shown).toEqual(Object.fromEntries(m.results.map((r) => [r.playerId.toString(), r.data])));
      const history = await new Accounts(t.shardSet).getMatchHistory(m.results[0]?.playerId as string, { gameId: 'coins' });
      expect(history.items.find((i) => i.matchId === m.matchId)?.data).toEqual({ coins: 10, drops: ['gem'] });

      // The same job again (a retried or duplicated job): a duplicate, the effect not called.
      const callsBefore = calls.length;
      let dups = 0;
      w.on('committed', (e) => (dups += e.duplicates.length));
      for (const s of status.shards) {
        const q = new Queue(queueNameFor(s.shardId), { connection: redisOptions(), prefix });
        await q.add('settle', { matchId: m.matchId, shardId: s.shardId }, { jobId: `again-${s.shardId}` });
        await q.close();
      }
      await waitFor('the jobs again, as duplicates', async () => dups >= status.shards.length, 20_000);
      expect(calls.length).toBe(callsBefore);
      expect(await wallets()).toEqual(expected(before, [m]));
    });

    it('a concurrent duplicate submission to two clients and two workers credits once', async () => {
      const { prefix, client: c1 } = setup();
      const c2 = client(prefix);
      const before = await wallets();
      const ms = Array.from({ length: 12 }, () => match((i) => i + 2));
      await Promise.all([worker(prefix).start(), worker(prefix).start()]);
      await Promise.all(ms.flatMap((m) => [c1.submitSettlement(m), c2.submitSettlement(structuredClone(m))]));
      for (const m of ms) expect((await c1.waitFor(m.matchId, { timeoutMs: 30_000 })).state).toBe('applied');
      expect(await wallets()).toEqual(expected(before, ms));
    });

    it('a throwing effect dead-letters its part only; the other parts of its batch apply', async () => {
      const { prefix, client: c } = setup();
      const before = await wallets();
      const batches: number[] = [];
      const w = worker(prefix, {
        lingerMs: 300,
        effects: {
          coins: async (trx, applied: readonly AppliedResult<{ coins: number }>[]) => {
            batches.push(new Set(applied.map((r) => r.matchId)).size);
            await creditWallets(trx, applied);
            if (applied.some((r) => r.data?.coins === 13)) throw new Error('thirteen is unlucky');
          },
        },
      });
      const good = Array.from({ length: 5 }, () => match(() => 4));
      const bad = match((i) => (i === 1 ? 13 : 4));
      await Promise.all([...good, bad].map((m) => c.submitSettlement(m)));
      await w.start();
      for (const m of good) expect((await c.waitFor(m.matchId, { timeoutMs: 30_000 })).state).toBe('applied');
      const failed = await c.waitFor(bad.matchId, { timeoutMs: 30_000 });
      expect(failed.state).toBe('failed');
      const deadShard = failed.shards.find((s) => s.state === 'failed');
      expect(deadShard?.reason).toMatch(/effect of game "coins" failed: thirteen is unlucky/);
      // The part shared a transaction with others at least once before failing alone.
      expect(Math.max(...batches)).toBeGreaterThan(1);
      const applied = failed.shards.filter((s) => s.state === 'applied').map((s) => s.shardId);
      const appliedOfBad = bad.results.filter((r) => applied.includes(t.shardSet.router.shardFor(BigInt(r.playerId) as PlayerId).id));
      expect(await wallets()).toEqual(expected(before, [...good, { ...bad, results: appliedOfBad }]));
      const dead = (await c.listFailed({ matchId: bad.matchId })).failed;
      expect(dead).toHaveLength(1);
      expect(dead[0]).toMatchObject({ source: 'inbox', matchId: bad.matchId, reason: expect.stringMatching(/thirteen is unlucky/) as unknown });
      const deadData = dead[0]?.source === 'inbox' ? dead[0].data : undefined;
      expect(Object.values(deadData ?? {})).toContainEqual({ coins: 13 });
      expect(await countRows(t.shardSet, bad.matchId)).toMatchObject({ ledger: appliedOfBad.length });
    });

    it('a transient database error in an effect retries as today', async () => {
      const { prefix, client: c } = setup();
      const before = await wallets();
      let thrown = 0;
      const w = worker(prefix, {
        effects: {
          coins: async (trx, applied: readonly AppliedResult<{ coins: number }>[]) => {
            if (thrown++ < 2) throw Object.assign(new Error('could not serialize access'), { code: '40001' });
            await creditWallets(trx, applied);
          },
        },
      });
      const m = match(() => 7);
      await c.submitSettlement(m);
      await w.start();
      expect((await c.waitFor(m.matchId, { timeoutMs: 30_000 })).state).toBe('applied');
      expect(await wallets()).toEqual(expected(before, [m]));
    });

    it('refuses effects that are not functions', () => {
      expect(() => worker('x', { effects: { coins: 5 as never } })).toThrow(/effects\.coins/);
    });
  });
});
