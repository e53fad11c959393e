import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SettlementTimeoutError, ValidationError } from '../../src/errors/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, SettlementWorker } from '../../src/settlement/index.js';
import { uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { createPlayers, deleteKeys, interleave, makeMatch, redisOptions, silent, testPrefix } from './helpers.js';

describe('SettlementClient.waitFor', () => {
  let t: TestShards;
  let players: PlayerId[];
  let prefix: string;
  let client: SettlementClient;
  const workers: SettlementWorker[] = [];

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    players = interleave(await createPlayers(t.shardSet, 4));
    prefix = testPrefix();
    client = new SettlementClient({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
  });
  afterEach(async () => {
    for (const w of workers.splice(0)) await w.stop(5000);
  });
  afterAll(async () => {
    await client?.close();
    await deleteKeys(prefix);
    await t?.cleanup();
  });

  const logged: string[] = [];
  function startWorker(): Promise<void> {
    // Not pino: any logger of the Logger shape fits, and one without debug() is fine.
    const logger = {
      info: (_: object, m?: string) => void logged.push(`info: ${m}`),
      warn: (_: object, m?: string) => void logged.push(`warn: ${m}`),
      error: (_: object, m?: string) => void logged.push(`error: ${m}`),
    };
    const w = new SettlementWorker({ shards: t.shardSet, connection: redisOptions(), prefix, logger, lingerMs: 1 });
    workers.push(w);
    return w.start();
  }

  it('refuses bad options before reading anything', async () => {
    await expect(client.waitFor('m-x', { timeoutMs: -1 })).rejects.toThrow(ValidationError);
    await expect(client.waitFor('m-x', { timeoutMs: 10, intervalMs: 0 })).rejects.toThrow(/intervalMs/);
    await expect(client.waitFor('', { timeoutMs: 10 })).rejects.toThrow(/matchId/);
  });

  it('times out with a null last status when no shard knows the match', async () => {
    const started = Date.now();
    const err = await client.waitFor(uniqueName('never-submitted'), { timeoutMs: 150, intervalMs: 20 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SettlementTimeoutError);
    expect(err).toMatchObject({ code: 'SETTLEMENT_TIMEOUT', timeoutMs: 150, lastStatus: null, message: expect.stringMatching(/no shard knows/) });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('times out with the pending status while no worker runs, then resolves once a worker applies it', async () => {
    const m = makeMatch(players.slice(0, 4));
    await client.submitSettlement(m);
    const err = (await client.waitFor(m.matchId, { timeoutMs: 100, intervalMs: 20 }).catch((e: unknown) => e)) as SettlementTimeoutError;
    expect(err).toBeInstanceOf(SettlementTimeoutError);
    expect(err.lastStatus).toMatchObject({ matchId: m.matchId, state: 'pending' });
    expect(err.lastStatus?.shards.length).toBeGreaterThan(1);
    expect(err.message).toMatch(/still pending on/);

    await startWorker();
    const done = await client.waitFor(m.matchId, { timeoutMs: 20_000, intervalMs: 20 });
    expect(done.state).toBe('applied');
    expect(done.shards.every((s) => s.state === 'applied')).toBe(true);
    expect(logged).toContain('info: settlement worker started');
  });

  it('resolves with a failed status once every part is applied or failed', async () => {
    const m = makeMatch(players.slice(4, 8));
    await client.submitSettlement(m);
    // The player vanishes between submit and apply: its part can never apply as it stands.
    const victim = BigInt(m.results[1]!.playerId) as PlayerId;
    const victimShard = t.shardSet.router.shardFor(victim).id;
    const db = await t.shardSet.db(victimShard);
    await db.deleteFrom('players').where('player_id', '=', victim).execute();
    await startWorker();
    const done = await client.waitFor(m.matchId, { timeoutMs: 20_000, intervalMs: 20 });
    expect(done.state).toBe('failed');
    for (const s of done.shards) expect(s.state).toBe(s.shardId === victimShard ? 'failed' : 'applied');
  });
});
