import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SettlementConflictError, ValidationError } from '../../src/errors/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import { claimMatches, type ClaimRequest } from '../../src/settlement/inbox-store.js';
import { SettlementClient } from '../../src/settlement/index.js';
import { uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { countRows, createPlayers, deleteKeys, makeMatch, redisOptions, silent, testPrefix } from './helpers.js';

/**
 * The submit path's statements (issue 18): a match whose home shard is its only shard is read,
 * checked and claimed with its part in one statement, and a lost claim says which content holds
 * the match id without another read.
 */
describe('submit statements (one shard)', () => {
  let t: TestShards;
  let players: PlayerId[];
  let prefix: string;
  let client: SettlementClient;

  beforeAll(async () => {
    t = await createTestShards('one-shard');
    players = (await createPlayers(t.shardSet, 8)).get('sz-1') as PlayerId[];
    prefix = testPrefix();
    client = new SettlementClient({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
  });
  afterAll(async () => {
    await client?.close();
    await deleteKeys(prefix);
    await t?.cleanup();
  });

  /** `fn`'s result and how many statements it sent to the shards. */
  async function counted<T>(fn: () => Promise<T>): Promise<{ value: T | Error; statements: number }> {
    const calls = vi.spyOn(t.shardSet, 'withShard');
    try {
      return { value: await fn().catch((err: unknown) => err as Error), statements: calls.mock.calls.length };
    } finally {
      calls.mockRestore();
    }
  }

  it('records a new match in one statement, answers its resubmission in one, and refuses other content in one', async () => {
    const m = makeMatch(players.slice(0, 3));
    const first = await counted(() => client.submitSettlement(m));
    expect(first.statements).toBe(1);
    expect(first.value).toMatchObject({ matchId: m.matchId, state: 'pending', duplicate: false });
    expect(await countRows(t.shardSet, m.matchId)).toMatchObject({ inbox: 1, claims: 1, ledger: 0 });

    const again = await counted(() => client.submitSettlement(m));
    expect(again.statements).toBe(1);
    expect(again.value).toMatchObject({ matchId: m.matchId, state: 'pending', duplicate: true });

    const other = await counted(() => client.submitSettlement({ ...m, results: m.results.map((r, i) => (i === 0 ? { ...r, scoreDelta: 99 } : r)) }));
    expect(other.statements).toBe(1);
    expect(other.value).toBeInstanceOf(SettlementConflictError);
    expect(await countRows(t.shardSet, m.matchId)).toMatchObject({ inbox: 1, claims: 1, ledger: 0 });
  });

  it('writes nothing when a player does not exist', async () => {
    const m = makeMatch([players[4]!, '4611686018427387903' as unknown as PlayerId]);
    const r = await counted(() => client.submitSettlement(m));
    expect(r.value).toBeInstanceOf(ValidationError);
    expect((r.value as ValidationError).message).toContain('4611686018427387903');
    expect(r.statements).toBe(1);
    expect(await countRows(t.shardSet, m.matchId)).toMatchObject({ inbox: 0, claims: 0, ledger: 0 });
  });

  it('records the part with the claim once a failed submission is fixed', async () => {
    const m = makeMatch(players.slice(5, 7));
    const bad = await counted(() =>
      client.submitSettlement({ ...m, results: [...m.results, { playerId: '4611686018427387901', scoreDelta: 1, outcome: 'loss' }] }),
    );
    expect(bad.value).toBeInstanceOf(ValidationError);
    const good = await counted(() => client.submitSettlement(m));
    expect(good.value).toMatchObject({ state: 'pending', duplicate: false });
    expect(await countRows(t.shardSet, m.matchId)).toMatchObject({ inbox: 1, claims: 1 });
  });

  const request = (matchId: string, hash: string, checkPlayers?: string[]): ClaimRequest => ({
    claim: { matchId, contentHash: hash, gameId: 'chess', shardIds: ['sz-1'], playerCount: 1 },
    part: {
      matchId,
      contentHash: hash,
      gameId: 'chess',
      endedAt: new Date('2026-01-01T00:00:00Z'),
      results: [{ playerId: players[0]!.toString(), scoreDelta: 1, outcome: 'win' }],
      shardIds: ['sz-1'],
    },
    ...(checkPlayers ? { checkPlayers } : {}),
  });
  const claim = (reqs: ClaimRequest[]) => t.shardSet.withShard('sz-1', (db) => claimMatches(db, reqs));

  it('says which content holds a claim it lost, and what the shard held when asked to check', async () => {
    const id = uniqueName('m');
    const [won] = await claim([request(id, 'a'.repeat(64))]);
    expect(won).toEqual({ claimed: true, inserted: true });
    const [lost] = await claim([request(id, 'b'.repeat(64))]);
    expect(lost).toEqual({ claimed: false, inserted: false, heldHash: 'a'.repeat(64) });

    // Checked: nothing is written when the shard knows the match, and the view says what it holds.
    const [checked] = await claim([request(id, 'b'.repeat(64), [players[0]!.toString()])]);
    expect(checked).toMatchObject({ claimed: false, inserted: false, heldHash: 'a'.repeat(64) });
    expect(checked?.view?.claim?.hash).toBe('a'.repeat(64));
    expect(checked?.view?.inbox?.hash).toBe('a'.repeat(64));
    expect([...(checked?.view?.found ?? [])]).toEqual([players[0]!.toString()]);

    // Checked and new, beside an unchecked one in the same statement: both claimed.
    const [fresh, plain] = await claim([request(uniqueName('m'), 'c'.repeat(64), [players[0]!.toString()]), request(uniqueName('m'), 'd'.repeat(64))]);
    expect(fresh).toMatchObject({ claimed: true, inserted: true, view: { claim: null, inbox: null, ledger: [] } });
    expect(plain).toEqual({ claimed: true, inserted: true });

    // Checked with a missing player: nothing written.
    const missingId = uniqueName('m');
    const [missing] = await claim([request(missingId, 'e'.repeat(64), [players[0]!.toString(), '4611686018427387903'])]);
    expect(missing).toMatchObject({ claimed: false, inserted: false });
    expect(missing?.heldHash).toBeUndefined();
    expect(await countRows(t.shardSet, missingId)).toMatchObject({ inbox: 0, claims: 0 });
  });
});
