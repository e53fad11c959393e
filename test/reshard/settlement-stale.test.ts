import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardSet } from '../../src/db/index.js';
import { SettlementConflictError } from '../../src/errors/index.js';
import { moveBuckets, purgeMove } from '../../src/reshard/index.js';
import { bucketOfKey } from '../../src/routing/key-bucket.js';
import { SettlementClient, SettlementWorker, type BatchCommitted, type SettlementInput } from '../../src/settlement/index.js';
import { uniqueName } from '../support/env.js';
import { deleteKeys, redisOptions, silent, testPrefix } from '../settlement/helpers.js';
import { createForwardShards, playerInBucket, type ForwardShards } from './settlement-support.js';

/**
 * A game server and a worker that never refresh routing on a timer (`routingRefreshMs: 0`) across a
 * real freeze-mode move (moveBuckets): each write they aim at the old owner is refused by its fence,
 * then redirected (submit) or forwarded (a part recorded there), and every match applies once, on
 * the shard that owns its player now.
 */
describe('stale game servers and workers across a bucket move', () => {
  const RANGE: [number, number] = [0, 255];
  let s: ForwardShards;
  const sets: ShardSet[] = [];
  const clients: SettlementClient[] = [];
  let worker: SettlementWorker;
  const events: BatchCommitted[] = [];
  const prefix = testPrefix();
  let moveId = '';
  let n = 0;
  const moved = () => playerInBucket(n % 256, 300_000 + n++);
  const kept = () => playerInBucket(3000 + (n % 900), 300_000 + n++);
  const submitted: SettlementInput[] = [];

  /** A ShardSet and client that read routing at start and never again unless refused. */
  async function staleClient(): Promise<SettlementClient> {
    const set = new ShardSet(s.map, { poolMax: 3, routingRefreshMs: 0, logger: silent });
    sets.push(set);
    await set.routerReady(); // the first-use checks read routing now, before the move: never again by timer
    const c = new SettlementClient({ shards: set, connection: redisOptions(), prefix, logger: silent });
    clients.push(c);
    return c;
  }

  function matchId(homeMoved: boolean): string {
    for (;;) {
      const id = uniqueName('stale');
      const b = bucketOfKey(id);
      if ((b >= RANGE[0] && b <= RANGE[1]) === homeMoved) return id;
    }
  }

  function match(id: string, players: readonly bigint[], delta = 5): SettlementInput {
    return {
      matchId: id,
      gameId: 'chess',
      endedAt: new Date('2026-04-01T10:00:00.000Z'),
      results: players.map((p, i) => ({ playerId: p.toString(), scoreDelta: delta + i, outcome: i === 0 ? 'win' : 'loss' })),
    };
  }

  let staleA: SettlementClient;
  let staleB: SettlementClient;
  let staleC: SettlementClient;
  let staleD: SettlementClient;
  const players = { moved: [] as bigint[], kept: [] as bigint[] };

  beforeAll(async () => {
    s = await createForwardShards();
    for (let i = 0; i < 12; i++) players.moved.push(moved());
    for (let i = 0; i < 6; i++) players.kept.push(kept());
    await s.query(0, `INSERT INTO players (player_id, region, nickname) SELECT id, 'shenzhen', 'p' || id FROM unnest($1::bigint[]) id`, [
      [...players.moved, ...players.kept].map(String),
    ]);
    [staleA, staleB, staleC, staleD] = [await staleClient(), await staleClient(), await staleClient(), await staleClient()];
    const workerSet = new ShardSet(s.map, { poolMax: 4, routingRefreshMs: 0, logger: silent });
    sets.push(workerSet);
    worker = new SettlementWorker({ shards: workerSet, connection: redisOptions(), prefix, logger: silent, concurrency: 8, batchSize: 4, lingerMs: 2 });
    worker.on('committed', (e) => events.push(e));
    await worker.start();
    // Settled before the move: these rows move with their players.
    const before = match(matchId(true), [players.moved[0] as bigint, players.kept[0] as bigint]);
    submitted.push(before);
    await staleA.submitSettlement(before);
    await staleA.waitFor(before.matchId, { timeoutMs: 20_000 });
    const report = await moveBuckets({ map: s.map, range: RANGE, to: 'sz-2', batchBuckets: 64, purge: 'never', logger: silent });
    expect(report.state).toBe('moved');
    moveId = report.id;
  });
  afterAll(async () => {
    await worker?.stop(5000);
    for (const c of clients) await c.close();
    for (const set of sets) await set.close();
    await deleteKeys(prefix);
    await s?.cleanup();
  });

  it('a claim on the old home is refused, and the submit goes to the new home', async () => {
    const m = match(matchId(true), [players.moved[1] as bigint, players.kept[1] as bigint]);
    submitted.push(m);
    expect((await staleA.submitSettlement(m)).state).toBe('pending');
    expect((await staleA.waitFor(m.matchId, { timeoutMs: 20_000 })).state).toBe('applied');
    const claims = await s.query<{ n: number }>(1, `SELECT count(*)::int AS n FROM settlement_inbox_claims WHERE match_id = $1`, [m.matchId]);
    expect(claims[0]?.n).toBe(1);
    const old = await s.query<{ n: number }>(0, `SELECT count(*)::int AS n FROM settlement_inbox_claims WHERE match_id = $1`, [m.matchId]);
    expect(old[0]?.n).toBe(0);
  });

  it('a part recorded on the old owner before the purge is forwarded by the stale worker', async () => {
    const m = match(matchId(false), [players.moved[2] as bigint, players.moved[3] as bigint, players.kept[2] as bigint]);
    submitted.push(m);
    await staleB.submitSettlement(m);
    const st = await staleB.waitFor(m.matchId, { timeoutMs: 20_000 });
    expect(st.state).toBe('applied');
    // The stale routing put every player on sz-1; the moved ones' results were forwarded to sz-2.
    expect(st.shards.map((x) => [x.shardId, x.state, x.players])).toEqual([
      ['sz-1', 'applied', 1],
      ['sz-2', 'applied', 2],
    ]);
    expect(st.shards[0]?.forwardedTo).toEqual(['sz-2']);
    expect(events.some((e) => e.shardId === 'sz-1' && e.forwarded.some((f) => f.matchId === m.matchId))).toBe(true);
  });

  it('after the purge, a player missing on the old owner is redirected, not refused as unknown', async () => {
    await purgeMove(s.map, moveId, { logger: silent });
    const m = match(matchId(false), [players.moved[4] as bigint, players.kept[3] as bigint]);
    submitted.push(m);
    await staleC.submitSettlement(m);
    expect((await staleC.waitFor(m.matchId, { timeoutMs: 20_000 })).state).toBe('applied');
  });

  it('two racing submissions with different content for a match whose home moved leave one winner', async () => {
    const fresh = new ShardSet(s.map, { poolMax: 3, logger: silent });
    sets.push(fresh);
    await fresh.refreshRouting();
    const freshClient = new SettlementClient({ shards: fresh, connection: redisOptions(), prefix, logger: silent });
    clients.push(freshClient);
    const id = matchId(true);
    const one = match(id, [players.moved[5] as bigint, players.kept[4] as bigint], 7);
    const other = match(id, [players.moved[6] as bigint, players.kept[4] as bigint], 9);
    const [a, b] = await Promise.allSettled([staleD.submitSettlement(one), freshClient.submitSettlement(other)]);
    const won = [a, b].filter((r) => r.status === 'fulfilled');
    const lost = [a, b].filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]?.reason).toBeInstanceOf(SettlementConflictError);
    const winner = a.status === 'fulfilled' ? one : other;
    submitted.push(winner);
    expect((await freshClient.waitFor(id, { timeoutMs: 20_000 })).state).toBe('applied');
    const claims = await Promise.all(
      [0, 1].map((i) => s.query<{ n: number }>(i, `SELECT count(*)::int AS n FROM settlement_inbox_claims WHERE match_id = $1`, [id])),
    );
    expect(claims.map((c) => c[0]?.n)).toEqual([0, 1]);
  });

  it('every match applied once, each result on the shard that owns its player now', async () => {
    const ids = submitted.map((m) => m.matchId);
    const rows = (
      await Promise.all(
        [0, 1].map((i) =>
          s.query<{ shard: string; key: string; delta: number }>(
            i,
            `SELECT $2::text AS shard, match_id || '/' || player_id AS key, score_delta AS delta FROM settlement_ledger WHERE match_id = ANY($1::text[])`,
            [ids, i === 0 ? 'sz-1' : 'sz-2'],
          ),
        ),
      )
    ).flat();
    const movedSet = new Set(players.moved.map(String));
    const expected = submitted.flatMap((m) =>
      m.results.map((r) => ({ shard: movedSet.has(String(r.playerId)) ? 'sz-2' : 'sz-1', key: `${m.matchId}/${String(r.playerId)}`, delta: r.scoreDelta })),
    );
    const order = (x: { key: string }, y: { key: string }) => (x.key < y.key ? -1 : 1);
    expect(rows.sort(order)).toEqual(expected.sort(order));
    // Stats of moved players: only on the new owner (the old copy is purged), equal to their ledger.
    const stats = await s.query<{ id: string; score: string }>(1, `SELECT player_id::text AS id, score::text FROM player_stats WHERE game_id = 'chess'`);
    const want = new Map<string, number>();
    for (const e of expected) if (e.shard === 'sz-2') want.set(e.key.split('/')[1] as string, (want.get(e.key.split('/')[1] as string) ?? 0) + e.delta);
    expect(new Map(stats.map((x) => [x.id, Number(x.score)]))).toEqual(want);
    const left = await s.query<{ n: number }>(0, `SELECT count(*)::int AS n FROM players WHERE ((player_id >> 10) & 4095) BETWEEN $1 AND $2`, RANGE);
    expect(left[0]?.n).toBe(0);
  });
});
