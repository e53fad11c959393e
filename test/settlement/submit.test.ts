import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SettlementConflictError, ValidationError } from '../../src/errors/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, homeShardOf, jobIdFor, queueNameFor, type SettlementInput } from '../../src/settlement/index.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';
import { countKeys, countRows, createPlayers, deleteKeys, interleave, makeMatch, redisOptions, silent, testPrefix } from './helpers.js';

describe.each(LAYOUTS)('submitSettlement (%s)', (layout) => {
  let t: TestShards;
  let players: PlayerId[];
  let byShard: Map<string, PlayerId[]>;
  let prefix: string;
  let client: SettlementClient;

  beforeAll(async () => {
    t = await createTestShards(layout);
    byShard = await createPlayers(t.shardSet, 8);
    players = interleave(byShard);
    prefix = testPrefix();
    client = new SettlementClient({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
  });
  afterAll(async () => {
    await client?.close();
    await deleteKeys(prefix);
    await t?.cleanup();
  });

  async function jobIds(shardId: string): Promise<string[]> {
    const q = new Queue(queueNameFor(shardId), { connection: redisOptions(), prefix });
    try {
      const jobs = await q.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed', 'prioritized']);
      return jobs.map((j) => j.id as string);
    } finally {
      await q.close();
    }
  }

  it('records each shard part durably, claims the match on its home shard, and enqueues one job per shard', async () => {
    const match = makeMatch(players.slice(0, 6));
    const status = await client.submitSettlement(match);
    const touched = [...new Set(players.slice(0, 6).map((p) => t.shardSet.router.shardFor(p).id))].sort();
    expect(status).toMatchObject({ matchId: match.matchId, state: 'pending', duplicate: false });
    expect(status.shards.map((s) => s.shardId).sort()).toEqual(touched);
    expect(status.shards.every((s) => s.state === 'pending')).toBe(true);
    expect(status.shards.reduce((n, s) => n + s.players, 0)).toBe(6);

    const rows = await countRows(t.shardSet, match.matchId);
    expect(rows).toMatchObject({ inbox: touched.length, claims: 1, ledger: 0 });
    const home = await t.shardSet.db(homeShardOf(t.map, match.matchId).id);
    expect(await home.selectFrom('settlement_inbox_claims').select('shard_ids').where('match_id', '=', match.matchId).executeTakeFirst()).toEqual({
      shard_ids: touched,
    });
    for (const id of touched) expect(await jobIds(id)).toContain(jobIdFor(match.matchId));

    expect(await client.settlementStatus(match.matchId)).toMatchObject({ state: 'pending', contentHash: status.contentHash });
  });

  it('treats the same match again (any result order, any time zone) as a no-op that reports the status', async () => {
    const match = makeMatch(players.slice(2, 7), { endedAt: '2025-03-01T20:00:00+08:00' });
    const first = await client.submitSettlement(match);
    const again = await client.submitSettlement({ ...match, endedAt: new Date('2025-03-01T12:00:00Z'), results: [...match.results].reverse() });
    expect(again).toMatchObject({ matchId: match.matchId, state: 'pending', duplicate: true, contentHash: first.contentHash });
    expect(await countRows(t.shardSet, match.matchId)).toMatchObject({ inbox: first.shards.length, claims: 1 });
    for (const s of first.shards) expect((await jobIds(s.shardId)).filter((id) => id === jobIdFor(match.matchId))).toHaveLength(1);
  });

  it('refuses other content under the same matchId, even when it touches other shards; the first stands', async () => {
    const match = makeMatch(players.slice(0, 3));
    const first = await client.submitSettlement(match);
    const changedDelta = { ...match, results: match.results.map((r, i) => (i === 1 ? { ...r, scoreDelta: r.scoreDelta + 1 } : r)) };
    await expect(client.submitSettlement(changedDelta)).rejects.toBeInstanceOf(SettlementConflictError);
    // Entirely different players (on other shards when there are several): only the home claim can tell.
    const others = makeMatch(players.slice(-2), { matchId: match.matchId });
    await expect(client.submitSettlement(others)).rejects.toMatchObject({ code: 'SETTLEMENT_CONFLICT', matchId: match.matchId });
    await expect(client.submitSettlement({ ...match, gameId: 'go' })).rejects.toBeInstanceOf(SettlementConflictError);
    expect(await client.settlementStatus(match.matchId)).toMatchObject({ contentHash: first.contentHash });
    expect((await countRows(t.shardSet, match.matchId)).inbox).toBe(first.shards.length);
  });

  it('lets concurrent submissions of the same match all succeed, recording it once', async () => {
    const match = makeMatch(players.slice(1, 8));
    const all = await Promise.all(Array.from({ length: 6 }, () => client.submitSettlement(match)));
    expect(new Set(all.map((s) => s.contentHash)).size).toBe(1);
    expect(all.every((s) => s.state === 'pending')).toBe(true);
    const rows = await countRows(t.shardSet, match.matchId);
    expect(rows.claims).toBe(1);
    expect(rows.inbox).toBe(all[0]?.shards.length);
  });

  it('lets exactly one of several concurrent different submissions win, never mixing their parts', async () => {
    for (let round = 0; round < 4; round++) {
      const base = makeMatch(players.slice(0, 4));
      const variants: SettlementInput[] = [
        base,
        makeMatch(players.slice(4, 8), { matchId: base.matchId }),
        { ...base, results: base.results.map((r) => ({ ...r, scoreDelta: r.scoreDelta * 2 })) },
      ];
      const settled = await Promise.allSettled(variants.map((v) => client.submitSettlement(v)));
      const won = settled.filter((s) => s.status === 'fulfilled');
      expect(won).toHaveLength(1);
      for (const s of settled) if (s.status === 'rejected') expect(s.reason).toBeInstanceOf(SettlementConflictError);
      const winner = (won[0] as PromiseFulfilledResult<{ contentHash: string | null; shards: unknown[] }>).value;
      for (const shard of t.shardSet.shards) {
        const db = await t.shardSet.db(shard.id);
        const rows = await db.selectFrom('settlement_inbox').select('content_hash').where('match_id', '=', base.matchId).execute();
        for (const r of rows) expect(r.content_hash).toBe(winner.contentHash);
      }
      expect((await countRows(t.shardSet, base.matchId)).inbox).toBe(winner.shards.length);
    }
  });

  it('rejects invalid input with a ValidationError naming the field, leaving no trace in Postgres or Redis', async () => {
    const freshPrefix = testPrefix();
    const c = new SettlementClient({
      shards: t.shardSet,
      connection: redisOptions(),
      prefix: freshPrefix,
      logger: silent,
      limits: { maxResults: 20, maxPayloadBytes: 4096 },
    });
    const before = await countRows(t.shardSet);
    const ok = makeMatch(players.slice(0, 3));
    const ghost = t.shardSet.router.newPlayerId(t.shardSet.router.regions[0] as string); // routable, never created
    const cases: [string, unknown][] = [
      ['results', { ...ok, results: [] }],
      ['results', { ...ok, results: Array.from({ length: 21 }, () => ok.results[0]) }],
      ['results.3.playerId', { ...ok, results: [...ok.results, ok.results[0]] }],
      ['results.1.playerId', { ...ok, results: [ok.results[0], { ...ok.results[1], playerId: '0' }] }],
      ['results.0.playerId', { ...ok, results: [{ ...ok.results[0], playerId: '9223372036854775808' }] }],
      ['results.0.playerId', { ...ok, results: [{ ...ok.results[0], playerId: 12345 }] }],
      ['results.3.playerId', { ...ok, results: [...ok.results, { playerId: ghost.toString(), scoreDelta: 1, outcome: 'win' }] }],
      ['results.1.scoreDelta', { ...ok, results: [ok.results[0], { ...ok.results[1], scoreDelta: 1.5 }] }],
      ['results.1.scoreDelta', { ...ok, results: [ok.results[0], { ...ok.results[1], scoreDelta: 1_000_001 }] }],
      ['results.0.outcome', { ...ok, results: [{ ...ok.results[0], outcome: 'forfeit' }] }],
      ['results.0.bonus', { ...ok, results: [{ ...ok.results[0], bonus: 3 }] }],
      ['matchId', { ...ok, matchId: '' }],
      ['matchId', { ...ok, matchId: 'has space' }],
      ['gameId', { ...ok, gameId: undefined }],
      ['endedAt', { ...ok, endedAt: '2025-03-01 12:00' }],
      ['endedAt', { ...ok, endedAt: new Date(Date.now() + 24 * 3600 * 1000) }],
      ['(input)', { ...ok, results: [{ ...ok.results[0], playerId: ok.results[0]?.playerId }], gameId: 'x'.repeat(5000) }],
    ];
    try {
      for (const [field, input] of cases) {
        const err = await c.submitSettlement(input as SettlementInput).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err, `expected a ValidationError on ${field}`).toBeInstanceOf(ValidationError);
        expect({ field: (err as ValidationError).field }).toEqual({ field });
      }
      expect(await countRows(t.shardSet)).toEqual(before);
      expect(await countKeys(freshPrefix)).toBe(0);
    } finally {
      await c.close();
      await deleteKeys(freshPrefix);
    }
  });

  it('answers null for a match nobody submitted', async () => {
    expect(await client.settlementStatus('never-submitted')).toBeNull();
  });
});
