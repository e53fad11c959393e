import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SettlementConflictError, Table, ValidationError, type PlayerId } from '../../src/index.js';
import { SettlementClient, SettlementWorker, type SettlementInput, type SettlementStatus } from '../../src/settlement/index.js';
import { uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { createPlayers } from '../support/players.js';
import { waitFor } from '../support/wait.js';
import { countRows, deleteKeys, expectedStats, interleave, redisOptions, silent, statsOf, testPrefix } from '../settlement/helpers.js';

/** A table's game end through the real SettlementClient and SettlementWorker (Postgres shards, Redis). */
describe('Table.end through settlement', () => {
  let t: TestShards;
  let players: PlayerId[];
  let client: SettlementClient;
  let worker: SettlementWorker;
  const prefix = testPrefix();

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    players = interleave(await createPlayers(t.shardSet, 2));
    client = new SettlementClient({
      shards: t.shardSet,
      connection: redisOptions(),
      prefix,
      logger: silent,
      limits: { minScoreDelta: -100, maxScoreDelta: 100 },
    });
    worker = new SettlementWorker({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent, concurrency: 4, batchSize: 2 });
    await worker.start();
  });
  afterAll(async () => {
    await worker?.stop(5000);
    await client?.close();
    await deleteKeys(prefix);
    await t?.cleanup();
  });

  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('applies a game end once when it is retried with the same matchId and no endedAt', async () => {
    const gameId = uniqueName('tbl');
    const seated = players.slice(0, 3);
    const table = new Table({ tableId: 'hall-1/t1', gameId, settlement: client });
    for (const p of seated) table.sit(p);
    const matchId = uniqueName('table-match');
    const results = seated.map((playerId, i) => ({ playerId, scoreDelta: i === 0 ? 20 : -10, outcome: i === 0 ? ('win' as const) : ('loss' as const) }));

    const first: SettlementStatus = await table.end({ matchId, results });
    expect(first).toMatchObject({ matchId, duplicate: false });
    expect(new Set(first.shards.map((s) => s.shardId)).size).toBeGreaterThan(1); // a cross-shard match

    // The game server did not hear back (timeout) and ends the game again, a few ms later.
    await pause(5);
    const retried = await table.end({ matchId, results });
    expect(retried).toMatchObject({ matchId, duplicate: true, contentHash: first.contentHash });

    await waitFor('applied', async () => (await client.settlementStatus(matchId))?.state === 'applied', 30_000);
    // Retried once more after it applied: still a duplicate, nothing moves.
    await pause(5);
    expect(await table.end({ matchId, results })).toMatchObject({ state: 'applied', duplicate: true });

    const endedAt = (
      await t.shardSet.withShard(first.shards[0]!.shardId, (db) =>
        db.selectFrom('settlement_inbox').select('ended_at').where('match_id', '=', matchId).executeTakeFirstOrThrow(),
      )
    ).ended_at;
    const applied: SettlementInput = { matchId, gameId, endedAt, results: results.map((r) => ({ ...r, playerId: r.playerId.toString() })) };
    await pause(300); // a duplicate job, had one been enqueued, would have run by now
    expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats([applied]));
    expect(await countRows(t.shardSet, matchId)).toMatchObject({ inbox: first.shards.length, claims: 1, ledger: 3 });

    // A new Table object (the game server restarted) has no memory of the instant: without endedAt
    // it is other content, refused as a conflict as documented; with the stored endedAt, a duplicate.
    const restarted = new Table({ tableId: 'hall-1/t1', gameId, settlement: client });
    for (const p of seated) restarted.sit(p);
    await expect(restarted.end({ matchId, results })).rejects.toBeInstanceOf(SettlementConflictError);
    expect(await restarted.end({ matchId, results, endedAt })).toMatchObject({ duplicate: true });
    expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats([applied]));
  });

  it("refuses, before anything is written, what the client's limits refuse", async () => {
    const gameId = uniqueName('tbl');
    const table = new Table({ tableId: 'hall-1/t2', gameId, settlement: client });
    const [a, b] = players as [PlayerId, PlayerId];
    table.sit(a);
    table.sit(b);
    const matchId = uniqueName('table-limits');
    const over = [
      { playerId: a, scoreDelta: 101, outcome: 'win' as const },
      { playerId: b, scoreDelta: -101, outcome: 'loss' as const },
    ];
    const err = await table.end({ matchId, results: over }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect(err).toMatchObject({ field: 'results.0.scoreDelta', message: expect.stringContaining('between -100 and 100') });
    await expect(table.end({ matchId: 'has space', results: over.map((r) => ({ ...r, scoreDelta: 1 })) })).rejects.toMatchObject({ field: 'matchId' });
    expect(await countRows(t.shardSet, matchId)).toMatchObject({ inbox: 0, claims: 0, ledger: 0 });
    expect(await client.settlementStatus(matchId)).toBeNull();
  });
});
