import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, type SettlementInput } from '../../src/settlement/index.js';
import type { WorkerFixtureConfig } from '../faults/fixtures/worker.js';
import { killStarted, spawnWorker } from '../faults/support/processes.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { WALLET_DDL, type WalletDb } from './fixtures/wallet-effects.js';
import { createPlayers, deleteKeys, interleave, redisOptions, silent, testPrefix, waitFor, writeMapFile } from './helpers.js';

describe('an effect with a worker SIGKILLed between commit and acknowledge', () => {
  let t: TestShards;
  let players: PlayerId[];
  let client: SettlementClient;
  const prefix = testPrefix();

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    for (const s of t.shardSet.shards) await sql.raw(WALLET_DDL).execute(await t.shardSet.db(s.id));
    players = interleave(await createPlayers(t.shardSet, 4));
    client = new SettlementClient({
      shards: t.shardSet,
      connection: redisOptions(),
      prefix,
      logger: silent,
      games: { coins: { data: z.object({ coins: z.number().int() }) } },
    });
  });
  afterAll(async () => {
    await killStarted();
    await client?.close();
    await deleteKeys(prefix);
    await t?.cleanup();
  });

  async function wallets(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const s of t.shardSet.shards) {
      const db = (await t.shardSet.db(s.id)) as unknown as Kysely<WalletDb>;
      for (const r of await db.selectFrom('wallet').select(['player_id', 'coins', 'credits']).execute())
        out[r.player_id.toString()] = `${String(r.coins)}/${r.credits}`;
    }
    return out;
  }

  it('credits every result once: the jobs run again after the kill and find their parts applied', async () => {
    const matches: SettlementInput[] = Array.from({ length: 24 }, (_, k) => ({
      matchId: uniqueName('kill-fx'),
      gameId: 'coins',
      endedAt: new Date('2025-03-01T12:00:00Z'),
      results: [0, 1, 2].map((i) => ({
        playerId: (players[(k * 3 + i) % players.length] as PlayerId).toString(),
        scoreDelta: 5 - i,
        outcome: i === 0 ? ('win' as const) : ('loss' as const),
        data: { coins: k + i + 1 },
      })),
    }));
    for (const m of matches) await client.submitSettlement(m);
    const want: Record<string, [bigint, number]> = {};
    for (const m of matches)
      for (const r of m.results) {
        const w = (want[r.playerId.toString()] ??= [0n, 0]);
        w[0] += BigInt((r.data as { coins: number }).coins);
        w[1] += 1;
      }

    const config: WorkerFixtureConfig = {
      mapFile: writeMapFile(t.mapJson),
      redisUrl: REDIS_URL,
      prefix,
      graceMs: 5000,
      logLevel: 'warn',
      effectsModule: 'test/settlement/fixtures/wallet-effects.ts',
      worker: { concurrency: 8, batchSize: 4, lingerMs: 20, lockDurationMs: 2000, stalledIntervalMs: 500, reconcileIntervalMs: 1000, reconcileAfterMs: 5000 },
    };
    const first = spawnWorker({ ...config, killAtCommitted: 2 });
    expect(await first.done).toEqual({ code: null, signal: 'SIGKILL' });
    const committed = first.events().filter((e) => e.evt === 'committed');
    expect(committed.length).toBe(2);
    expect(committed.reduce((n, e) => n + Number(e.applied), 0)).toBeGreaterThan(0);

    const last = spawnWorker(config);
    await last.waitForEvent('worker ready', (e) => e.evt === 'ready', 90_000);
    for (const m of matches) expect((await client.waitFor(m.matchId, { timeoutMs: 60_000 })).state).toBe('applied');
    // The killed worker's jobs came back (lock expired) and were duplicates: nothing applied twice.
    await waitFor('the killed jobs re-run', async () => last.events().some((e) => e.evt === 'committed' && Number(e.duplicates) > 0), 30_000, 100);
    last.kill('SIGTERM');
    expect(await last.done, last.output().slice(-2000)).toEqual({ code: 0, signal: null });
    expect(await wallets()).toEqual(Object.fromEntries(Object.entries(want).map(([k, [c, n]]) => [k, `${c}/${n}`])));
  }, 180_000);
});
