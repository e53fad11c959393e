import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ShardSet } from '../../src/db/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, SettlementWorker, type BatchCommitted, type SettlementInput, type SettlementWorkerOptions } from '../../src/settlement/index.js';
import { forwardMovedParts } from '../../src/settlement/forwarding.js';
import { applyParts } from '../../src/settlement/apply.js';
import { mergeForwarded } from '../../src/settlement/inbox-store.js';
import { uniqueName } from '../support/env.js';
import { deleteKeys, redisOptions, silent, testPrefix, waitFor } from '../settlement/helpers.js';
import { createForwardShards, playerInBucket, simulateMove, type ForwardShards } from './settlement-support.js';

/**
 * Settlement in flight across a bucket move (docs/settlement.md, "Moves"): parts recorded on the old
 * owner before the cut-over, their worker paused, are forwarded to the new owner and applied there
 * exactly once; the part on the old owner keeps only its own players and says where the rest went.
 */
describe('a part pending on the old owner at cut-over', () => {
  let s: ForwardShards;
  let shards: ShardSet;
  const prefixes: string[] = [];
  const open: { stop(): Promise<void> }[] = [];
  const MOVED: [number, number] = [0, 1023];
  let n = 0;
  const moved = () => playerInBucket(10 + (n % 900), n++) as PlayerId;
  const kept = () => playerInBucket(2000 + (n % 900), n++) as PlayerId;

  beforeAll(async () => {
    s = await createForwardShards();
    shards = new ShardSet(s.map, { poolMax: 4, logger: silent });
  });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.stop();
    for (const p of prefixes.splice(0)) await deleteKeys(p);
  });
  afterAll(async () => {
    await shards?.close();
    await s?.cleanup();
  });

  async function addPlayers(ids: readonly bigint[]): Promise<void> {
    await s.query(0, `INSERT INTO players (player_id, region, nickname) SELECT id, 'shenzhen', 'p' || id FROM unnest($1::bigint[]) id`, [ids.map(String)]);
  }

  function match(ids: readonly bigint[], gameId: string): SettlementInput {
    return {
      matchId: uniqueName('fwd'),
      gameId,
      endedAt: new Date('2026-03-01T12:00:00.000Z'),
      results: ids.map((id, i) => ({ playerId: id.toString(), scoreDelta: 10 + i, outcome: i === 0 ? 'win' : 'loss' })),
    };
  }

  function clientAndWorker(options: Partial<SettlementWorkerOptions> = {}): {
    client: SettlementClient;
    worker: SettlementWorker;
    events: BatchCommitted[];
    prefix: string;
  } {
    const prefix = testPrefix();
    prefixes.push(prefix);
    const client = new SettlementClient({ shards, connection: redisOptions(), prefix, logger: silent });
    open.push({ stop: () => client.close() });
    const worker = new SettlementWorker({ shards, connection: redisOptions(), prefix, logger: silent, concurrency: 8, batchSize: 4, lingerMs: 2, ...options });
    open.push({ stop: () => worker.stop(5000) });
    const events: BatchCommitted[] = [];
    worker.on('committed', (e) => events.push(e));
    return { client, worker, events, prefix };
  }

  interface Ledger {
    shard: string;
    match_id: string;
    player_id: string;
    score_delta: number;
  }
  async function ledgerOf(matchIds: readonly string[]): Promise<Ledger[]> {
    const out: Ledger[] = [];
    for (const i of [0, 1]) {
      const rows = await s.query<Ledger>(
        i,
        `SELECT $2::text AS shard, match_id, player_id::text, score_delta FROM settlement_ledger WHERE match_id = ANY($1::text[]) ORDER BY match_id, player_id`,
        [matchIds, i === 0 ? 'sz-1' : 'sz-2'],
      );
      out.push(...rows);
    }
    return out;
  }

  async function statsOn(i: number, gameId: string): Promise<Map<string, [number, number]>> {
    const rows = await s.query<{ id: string; score: string; games: number }>(
      i,
      `SELECT player_id::text AS id, score::text, games_played AS games FROM player_stats WHERE game_id = $1`,
      [gameId],
    );
    return new Map(rows.map((x) => [x.id, [Number(x.score), x.games]]));
  }

  it('forwards the moved players’ results, applies them once on the new owner, and the status follows', async () => {
    const gameId = uniqueName('g');
    const a = [moved(), moved(), moved(), moved()];
    const b = [kept(), kept()];
    await addPlayers([...a, ...b]);
    const { client, worker, events } = clientAndWorker();
    const mixed = match([a[0] as bigint, b[0] as bigint], gameId); // one moved player, one kept
    const allMoved = match([a[1] as bigint, a[2] as bigint], gameId); // only moved players
    const both = [mixed, allMoved];
    for (const m of both) expect((await client.submitSettlement(m)).state).toBe('pending');

    // The cut-over happens while the parts wait on sz-1 (no worker yet).
    await simulateMove(s, MOVED);
    await worker.start();

    for (const m of both) expect((await client.waitFor(m.matchId, { timeoutMs: 20_000 })).state).toBe('applied');
    const ledger = await ledgerOf(both.map((m) => m.matchId));
    // Every result once, each on the shard that owns its player now.
    expect(ledger.map((l) => `${l.match_id}/${l.player_id}@${l.shard}`).sort()).toEqual(
      [`${mixed.matchId}/${a[0]}@sz-2`, `${mixed.matchId}/${b[0]}@sz-1`, `${allMoved.matchId}/${a[1]}@sz-2`, `${allMoved.matchId}/${a[2]}@sz-2`].sort(),
    );
    // The old owner's part keeps its own players and names where the rest went.
    const parts = await s.query<{ match_id: string; status: string; n: number; forwarded_to: string[] }>(
      0,
      `SELECT match_id, status, jsonb_array_length(results) AS n, forwarded_to FROM settlement_inbox WHERE match_id = ANY($1::text[])`,
      [both.map((m) => m.matchId)],
    );
    const byMatch = new Map(parts.map((p) => [p.match_id, p]));
    expect(byMatch.get(mixed.matchId)).toMatchObject({ status: 'applied', n: 1, forwarded_to: ['sz-2'] });
    expect(byMatch.get(allMoved.matchId)).toMatchObject({ status: 'forwarded', n: 0, forwarded_to: ['sz-2'] });
    expect(events.some((e) => e.forwarded.some((f) => f.matchId === allMoved.matchId && f.to.includes('sz-2')))).toBe(true);

    // Status follows the forward: both shards listed, the old one forwarded or applied.
    const st = await client.settlementStatus(allMoved.matchId);
    expect(st?.state).toBe('applied');
    expect(st?.shards.map((x) => [x.shardId, x.state])).toEqual([
      ['sz-1', 'forwarded'],
      ['sz-2', 'applied'],
    ]);
    expect(st?.shards[0]?.forwardedTo).toEqual(['sz-2']);

    // Stats moved on the new owner only (the old owner's copy, to be purged, is untouched).
    expect(await statsOn(1, gameId)).toEqual(
      new Map([
        [String(a[0]), [10, 1]],
        [String(a[1]), [10, 1]],
        [String(a[2]), [11, 1]],
      ]),
    );
    expect(await statsOn(0, gameId)).toEqual(new Map([[String(b[0]), [11, 1]]]));
  });

  it('a forward repeated after a crash between its two commits changes nothing', async () => {
    const gameId = uniqueName('g');
    const a = [playerInBucket(1400, 70_000 + n++), playerInBucket(1401, 70_000 + n++)];
    const b = [kept()];
    await addPlayers([...a, ...b]);
    const { client, worker } = clientAndWorker();
    const m = match([a[0] as bigint, a[1] as bigint, b[0] as bigint], gameId);
    await client.submitSettlement(m);
    await simulateMove(s, [1400, 1500], { epoch: 4 });
    await worker.start();
    await client.waitFor(m.matchId, { timeoutMs: 20_000 });
    // The target took the results and applied them; the source recorded it. Now the merge comes
    // again, as after a crash before the source's commit, and the target's part is re-applied.
    const t = await shards.db('sz-2');
    const merged = await mergeForwarded(t, [
      {
        matchId: m.matchId,
        contentHash: (await client.settlementStatus(m.matchId))?.contentHash as string,
        gameId,
        endedAt: new Date(m.endedAt),
        results: m.results.slice(0, 2).map((r) => ({ playerId: String(r.playerId), scoreDelta: r.scoreDelta, outcome: r.outcome })),
        shardIds: ['sz-1', 'sz-2'],
      },
    ]);
    expect(merged.has(m.matchId)).toBe(true);
    const again = await applyParts(t, [m.matchId]);
    expect(again.get(m.matchId)).toMatchObject({ kind: 'applied', inserted: 0 });
    const ledger = await ledgerOf([m.matchId]);
    expect(ledger).toHaveLength(3);
    const stats = await sql<{ n: number; s: string }>`SELECT count(*)::int AS n, sum(score)::text AS s FROM player_stats WHERE game_id = ${gameId}`.execute(t);
    expect(stats.rows[0]).toEqual({ n: 2, s: String(10 + 11) });
  });

  it('a merge with other content under the same match id is refused', async () => {
    const t = await shards.db('sz-2');
    const id = uniqueName('conf');
    const row = (hash: string, pid: bigint) => ({
      matchId: id,
      contentHash: hash,
      gameId: 'g',
      endedAt: new Date('2026-03-01T00:00:00Z'),
      results: [{ playerId: pid.toString(), scoreDelta: 1, outcome: 'win' as const }],
      shardIds: ['sz-1'],
    });
    expect((await mergeForwarded(t, [row('h1', moved())])).has(id)).toBe(true);
    expect((await mergeForwarded(t, [row('h2', moved())])).has(id)).toBe(false);
    const r = await sql<{ n: number }>`SELECT jsonb_array_length(results) AS n FROM settlement_inbox WHERE match_id = ${id}`.execute(t);
    expect(r.rows[0]?.n).toBe(1);
  });

  it('the forward sweep moves pending parts without a worker, and the worker then applies them once', async () => {
    const gameId = uniqueName('g');
    // A second range moves: the parts are recorded first, on sz-1, with nobody working them.
    const range: [number, number] = [1024, 1100];
    let k = 0;
    const inRange = () => playerInBucket(1024 + (k++ % 70), 50_000 + n++);
    const a = [inRange(), inRange(), inRange()];
    const b = [kept()];
    await addPlayers([...a, ...b]);
    const { client, worker, prefix } = clientAndWorker();
    const ms = [match([a[0] as bigint, b[0] as bigint], gameId), match([a[1] as bigint, a[2] as bigint], gameId)];
    for (const m of ms) await client.submitSettlement(m);
    await simulateMove(s, range, { epoch: 2 });
    const swept = await forwardMovedParts(shards, 'sz-1', { connection: redisOptions(), prefix });
    expect(swept.forwarded.map((f) => f.matchId).sort()).toEqual(ms.map((m) => m.matchId).sort());
    expect(swept.left).toEqual([]);
    // A second sweep finds nothing more to do.
    expect((await forwardMovedParts(shards, 'sz-1')).forwarded).toEqual([]);
    await worker.start();
    for (const m of ms) expect((await client.waitFor(m.matchId, { timeoutMs: 20_000 })).state).toBe('applied');
    const ledger = await ledgerOf(ms.map((m) => m.matchId));
    expect(ledger.map((l) => `${l.player_id}@${l.shard}`).sort()).toEqual([`${a[0]}@sz-2`, `${b[0]}@sz-1`, `${a[1]}@sz-2`, `${a[2]}@sz-2`].sort());
  });

  it('a forwarded part whose job was never enqueued is re-driven by the new shard’s reconciler', async () => {
    const gameId = uniqueName('g');
    const range: [number, number] = [1600, 1700];
    const a = [playerInBucket(1650, 95_000 + n++), playerInBucket(1651, 95_000 + n++)];
    await addPlayers(a);
    const { client, worker } = clientAndWorker({ reconcileAfterMs: 0, reconcileIntervalMs: 200 });
    const m = match(a, gameId);
    await client.submitSettlement(m);
    await simulateMove(s, range, { epoch: 5 });
    // Swept without Redis: the part is pending on sz-2 and no queue holds a job for it there.
    const swept = await forwardMovedParts(shards, 'sz-1');
    expect(swept.forwarded).toEqual([{ matchId: m.matchId, to: ['sz-2'] }]);
    await worker.start();
    expect((await client.waitFor(m.matchId, { timeoutMs: 20_000 })).state).toBe('applied');
    expect((await ledgerOf([m.matchId])).map((l) => l.shard)).toEqual(['sz-2', 'sz-2']);
  });

  it('a part with a player in a frozen range waits, and applies once the range is owned again', async () => {
    const gameId = uniqueName('g');
    const range: [number, number] = [1200, 1300];
    const a = [playerInBucket(1250, 90_000 + n++), playerInBucket(1251, 90_000 + n++)];
    const b = [kept()];
    await addPlayers([...a, ...b]);
    const { client, worker, events } = clientAndWorker();
    const m = match([a[0] as bigint, b[0] as bigint], gameId);
    await client.submitSettlement(m);
    await simulateMove(s, range, {
      epoch: 3,
      whileFrozen: async () => {
        await worker.start();
        await waitFor('the part deferred', async () => events.some((e) => e.deferred.some((d) => d.matchId === m.matchId)));
        const st = await client.settlementStatus(m.matchId);
        expect(st?.state).toBe('pending');
        expect(await ledgerOf([m.matchId])).toEqual([]);
      },
    });
    expect((await client.waitFor(m.matchId, { timeoutMs: 20_000 })).state).toBe('applied');
    const ledger = await ledgerOf([m.matchId]);
    expect(ledger.map((l) => `${l.player_id}@${l.shard}`).sort()).toEqual([`${a[0]}@sz-2`, `${b[0]}@sz-1`].sort());
  });
});
