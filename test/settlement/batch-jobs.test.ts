import { spawn } from 'node:child_process';
import { Queue, type Job } from 'bullmq';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ShardSet } from '../../src/db/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import {
  SettlementClient,
  SettlementWorker,
  jobIdFor,
  queueNameFor,
  type BatchCommitted,
  type SettlementInput,
  type SettlementWorkerOptions,
} from '../../src/settlement/index.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { createForwardShards, playerInBucket, simulateMove, type ForwardShards } from '../reshard/settlement-support.js';
import { createPlayers, deleteKeys, expectedStats, makeMatch, redisOptions, silent, statsOf, testPrefix, waitFor, writeMapFile } from './helpers.js';

/**
 * One queue job per batch of parts of a shard (issue 18): a submit batch's parts share a job, the
 * worker ends the job by what became of each part, and nothing that finds, lists or re-drives parts
 * relies on a part having a job of its own.
 */
describe('batch jobs', () => {
  let t: TestShards;
  let byShard: Map<string, PlayerId[]>;
  const open: { stop(): Promise<void> }[] = [];
  const prefixes: string[] = [];

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    byShard = await createPlayers(t.shardSet, 12);
  });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.stop();
    for (const p of prefixes.splice(0)) await deleteKeys(p);
  });
  afterAll(() => t?.cleanup());

  function setup(): { prefix: string; client: SettlementClient; queue: (shardId: string) => Queue } {
    const prefix = testPrefix();
    prefixes.push(prefix);
    const client = new SettlementClient({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
    open.push({ stop: () => client.close() });
    const queues = new Map<string, Queue>();
    open.push({ stop: async () => void (await Promise.all([...queues.values()].map((q) => q.close()))) });
    const queue = (shardId: string) => {
      let q = queues.get(shardId);
      if (!q) {
        q = new Queue(queueNameFor(shardId), { connection: redisOptions(), prefix });
        queues.set(shardId, q);
      }
      return q;
    };
    return { prefix, client, queue };
  }

  function worker(prefix: string, options: Partial<SettlementWorkerOptions> = {}): SettlementWorker {
    const w = new SettlementWorker({
      shards: t.shardSet,
      connection: redisOptions(),
      prefix,
      logger: silent,
      concurrency: 8,
      batchSize: 4,
      lingerMs: 2,
      ...options,
    });
    open.push({ stop: () => w.stop(5000) });
    return w;
  }

  const shardOf = (shardId: string) => byShard.get(shardId) as PlayerId[];

  /** n matches of two players each, all of shard `shardId` (one part each, there). */
  function matchesOn(shardId: string, n: number, gameId: string): SettlementInput[] {
    const ps = shardOf(shardId);
    return Array.from({ length: n }, (_, i) => makeMatch([ps[(2 * i) % ps.length] as PlayerId, ps[(2 * i + 1) % ps.length] as PlayerId], { gameId }));
  }

  /** n matches of four players on four shards (one part on each), rotating over the players. */
  function matchesAcross(n: number, gameId: string): SettlementInput[] {
    const lists = [...byShard.values()];
    return Array.from({ length: n }, (_, i) =>
      makeMatch(
        lists.map((l) => l[i % l.length] as PlayerId),
        { gameId },
      ),
    );
  }

  async function states(client: SettlementClient, ms: readonly SettlementInput[]): Promise<string[]> {
    return Promise.all(ms.map(async (m) => (await client.settlementStatus(m.matchId))?.state ?? 'none'));
  }

  const allJobs = (q: Queue): Promise<Job[]> => q.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed', 'prioritized']);

  it('a batch of submissions makes one job per shard batch, not one per part, and applies each part once', async () => {
    const { prefix, client, queue } = setup();
    const gameId = uniqueName('g');
    const ms = matchesAcross(8, gameId);
    const answers = await client.submitSettlements(ms);
    expect(answers.every((a) => a.ok)).toBe(true);

    let jobs = 0;
    for (const s of t.map.shards) {
      const held = await allJobs(queue(s.id));
      jobs += held.length;
      // Every part of the shard is in a job there, each named once, in the batch form.
      const named = held.flatMap((j) => (j.data as { matchIds?: string[] }).matchIds ?? [(j.data as { matchId: string }).matchId]);
      expect(named.sort()).toEqual(ms.map((m) => m.matchId).sort());
    }
    expect(jobs).toBeLessThan(ms.length * t.map.shards.length);

    // A single submission keeps its part's own job, in the one-part form an older worker reads too.
    const [single] = matchesOn('sz-1', 1, gameId);
    await client.submitSettlement(single!);
    const own = await queue('sz-1').getJob(jobIdFor(single!.matchId));
    expect(own?.data).toEqual({ matchId: single!.matchId, shardId: 'sz-1' });

    const w = worker(prefix);
    await w.start();
    const all = [...ms, single!];
    await waitFor('all applied', async () => (await states(client, all)).every((s) => s === 'applied'));
    expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats(all));
    // The jobs' return values count parts, and add up to every part.
    let parts = 0;
    for (const s of t.map.shards) {
      await waitFor('jobs completed', async () => (await queue(s.id).getJobCounts('completed')).completed === (await allJobs(queue(s.id))).length);
      for (const j of await allJobs(queue(s.id))) parts += (j.returnvalue as { applied: number }).applied;
    }
    expect(parts).toBe(ms.length * t.map.shards.length + 1);
  });

  it('a batch job naming a part with no inbox row applies the others, fails for good, and is listed by that part', async () => {
    const { prefix, client, queue } = setup();
    const gameId = uniqueName('g');
    const [m1, m2, m3] = matchesOn('sz-1', 3, gameId) as [SettlementInput, SettlementInput, SettlementInput];
    for (const m of [m1, m2, m3]) await client.submitSettlement(m);
    // Only the forged jobs below are queued: the submits' own jobs are gone.
    await deleteKeys(prefix);
    const q = queue('sz-1');
    const opts = { attempts: 5, backoff: { type: 'fixed', delay: 50 } } as const;
    await q.add('settle', { shardId: 'sz-1', matchIds: [m1.matchId, 'ghost-1', m2.matchId] }, { ...opts, jobId: 'batch-ghost' });
    // One malformed id spoils the whole job: nothing of it runs (m3 stays pending).
    await q.add('settle', { shardId: 'sz-1', matchIds: [m3.matchId, 'has space'] }, { ...opts, jobId: 'batch-malformed' });
    await q.add('settle', { shardId: 'sz-1', matchIds: [] }, { ...opts, jobId: 'batch-empty' });
    await q.add('settle', { shardId: 'sc-1', matchIds: [m1.matchId, m2.matchId] }, { ...opts, jobId: 'batch-wrong-queue' });

    const w = worker(prefix);
    await w.start();
    const ids = ['batch-ghost', 'batch-malformed', 'batch-empty', 'batch-wrong-queue'];
    await waitFor('the forged jobs failed', async () => (await Promise.all(ids.map((id) => q.getJobState(id)))).every((s) => s === 'failed'));
    const ghost = await q.getJob('batch-ghost');
    expect(ghost?.failedReason).toMatch(/no inbox row.*ghost-1/);
    expect(ghost?.attemptsMade).toBe(1);
    expect((await q.getJob('batch-malformed'))?.failedReason).toMatch(/malformed job data/);
    expect((await q.getJob('batch-wrong-queue'))?.failedReason).toMatch(/names shard "sc-1"/);
    expect(await states(client, [m1, m2, m3])).toEqual(['applied', 'applied', 'pending']);

    // Listed once per part without an inbox row on sz-1 (every part of the job in the wrong
    // queue), once without a match when the data is unreadable; never for m1 and m2 of the ghost's job.
    const listed = await client.listFailed({ shardIds: ['sz-1'] });
    expect(listed.unreachable).toEqual([]);
    const key = (f: { jobId: string; matchId: string | null }) => `${f.jobId}/${f.matchId ?? '-'}`;
    expect(listed.failed.map(key).sort()).toEqual(
      ['batch-ghost/ghost-1', 'batch-malformed/-', 'batch-empty/-', `batch-wrong-queue/${m1.matchId}`, `batch-wrong-queue/${m2.matchId}`].sort(),
    );
    expect(listed.failed.every((f) => f.source === 'queue' && f.attempts === 1)).toBe(true);
    expect((await client.listFailed({ matchId: m1.matchId })).failed.map(key)).toEqual([`batch-wrong-queue/${m1.matchId}`]);
    expect((await client.listFailed({ matchId: 'ghost-1' })).failed.map(key)).toEqual(['batch-ghost/ghost-1']);
    expect((await client.listFailed({ shardIds: ['sz-1'], limit: 2 })).failed).toHaveLength(2);
    expect((await client.retry({ all: true })).parts).toEqual([]);

    // m3, left pending by the malformed job, is found by the reconciler and applied, once.
    const r = await client.reconcile({ olderThanMs: 0, shardIds: ['sz-1'] });
    expect(r.requeued).toEqual([{ matchId: m3.matchId, shardId: 'sz-1' }]);
    await waitFor('m3 applied', async () => (await states(client, [m3]))[0] === 'applied');
    expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats([m1, m2, m3]));
  });

  it('a part failed for good is a dead letter in the inbox, and its batch job completes with the others applied', async () => {
    const { prefix, client, queue } = setup();
    const gameId = uniqueName('g');
    const [good, bad] = matchesOn('sz-2', 2, gameId) as [SettlementInput, SettlementInput];
    for (const m of [good, bad]) await client.submitSettlement(m);
    await deleteKeys(prefix);
    // The bad part's inbox row can never apply as it stands.
    const db = await t.shardSet.db('sz-2');
    await sql`UPDATE settlement_inbox SET results = '[{"playerId":"x"}]'::jsonb WHERE match_id = ${bad.matchId}`.execute(db);
    const q = queue('sz-2');
    await q.add('settle', { shardId: 'sz-2', matchIds: [good.matchId, bad.matchId] }, { jobId: 'batch-one-bad', attempts: 5 });
    const w = worker(prefix);
    await w.start();
    await waitFor('the job completed', async () => (await q.getJobState('batch-one-bad')) === 'completed');
    expect((await q.getJob('batch-one-bad'))?.returnvalue).toEqual({ parts: 2, applied: 1, inserted: 2, duplicates: 0, failed: 1, forwarded: 0, deferred: 0 });
    expect(await states(client, [good, bad])).toEqual(['applied', 'failed']);
    const listed = await client.listFailed({ shardIds: ['sz-2'] });
    expect(listed.failed.map((f) => [f.source, f.matchId, f.jobId])).toEqual([['inbox', bad.matchId, jobIdFor(bad.matchId)]]);
  });

  it('Redis flushed with batch jobs pending: the reconciler re-drives every part, each applied once', async () => {
    const { prefix, client, queue } = setup();
    const gameId = uniqueName('g');
    const ms = matchesAcross(10, gameId);
    expect((await client.submitSettlements(ms)).every((a) => a.ok)).toBe(true);
    const held = await allJobs(queue('na-1'));
    expect(held.some((j) => ((j.data as { matchIds?: string[] }).matchIds?.length ?? 0) > 1)).toBe(true);
    expect(await deleteKeys(prefix)).toBeGreaterThan(0);
    const w = worker(prefix, { reconcileAfterMs: 0 });
    await w.start();
    await waitFor('all applied after reconcile', async () => (await states(client, ms)).every((s) => s === 'applied'));
    expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats(ms));
  });

  it('the reconciler adds at most one job of its own per stale part while batch jobs still hold them', async () => {
    const { prefix, client, queue } = setup();
    const gameId = uniqueName('g');
    const ms = matchesOn('sz-2', 6, gameId);
    expect((await client.submitSettlements(ms)).every((a) => a.ok)).toBe(true);
    // No worker yet: every part is stale at 0 ms, its batch job still waiting (not looked for).
    // (A part the submit enqueued alone has its own job already: nothing is added for it.)
    const alone = (await allJobs(queue('sz-2'))).filter((j) => j.id?.startsWith('m-')).length;
    const first = await client.reconcile({ olderThanMs: 0, shardIds: ['sz-2'] });
    expect(first.requeued).toHaveLength(ms.length - alone);
    // Again: each part's own job is still waiting, so nothing more is added.
    expect((await client.reconcile({ olderThanMs: 0, shardIds: ['sz-2'] })).requeued).toEqual([]);
    const jobs = await allJobs(queue('sz-2'));
    expect(jobs.filter((j) => j.id?.startsWith('m-'))).toHaveLength(ms.length);
    const held = jobs.reduce((n, j) => n + ((j.data as { matchIds?: string[] }).matchIds?.length ?? 1), 0);
    const w = worker(prefix);
    await w.start();
    await waitFor('all applied', async () => (await states(client, ms)).every((s) => s === 'applied'));
    // Each part applied once; its second job found it applied.
    await waitFor('every job done', async () => (await queue('sz-2').getJobCounts('completed')).completed === jobs.length);
    const sum = async (c: { get(): Promise<{ values: { value: number }[] }> }) => (await c.get()).values.reduce((n, v) => n + v.value, 0);
    expect(await sum(w.metrics.partsApplied)).toBe(ms.length);
    expect(await sum(w.metrics.duplicates)).toBe(held - ms.length);
    expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats(ms));
  });

  it('a job of the old one-part form (an older shardline, a rolling upgrade) still applies', async () => {
    const { prefix, client, queue } = setup();
    const gameId = uniqueName('g');
    const [m] = matchesOn('sc-1', 1, gameId) as [SettlementInput];
    await client.submitSettlement(m);
    await deleteKeys(prefix);
    const q = queue('sc-1');
    await q.add('settle', { matchId: m.matchId, shardId: 'sc-1' }, { jobId: 'old-form', attempts: 3 });
    const w = worker(prefix);
    await w.start();
    await waitFor('the old job completed', async () => (await q.getJobState('old-form')) === 'completed');
    expect((await q.getJob('old-form'))?.returnvalue).toEqual({ parts: 1, applied: 1, inserted: 2, duplicates: 0, failed: 0, forwarded: 0, deferred: 0 });
    expect(await states(client, [m])).toEqual(['applied']);
    expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats([m]));
  });

  it('a worker killed in the middle of a batch job: the job runs again, every part applied exactly once', async () => {
    const { prefix, client, queue } = setup();
    const gameId = uniqueName('g');
    const ms = matchesOn('sz-1', 6, gameId);
    for (const m of ms) await client.submitSettlement(m);
    await deleteKeys(prefix);
    const q = queue('sz-1');
    await q.add('settle', { shardId: 'sz-1', matchIds: ms.map((m) => m.matchId) }, { jobId: 'batch-kill', attempts: 8 });

    // Transactions of two parts, one at a time: it dies after the first commits.
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/settlement/fixtures/crash-worker.ts', writeMapFile(t.mapJson), prefix, REDIS_URL, 'sz-1', 'mid-batch'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exit = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    expect(exit, out).toBe('SIGKILL');
    const first = JSON.parse(/committed (\[.*\])/.exec(out)?.[1] ?? '[]') as string[];
    expect(first).toHaveLength(2);
    const before = await states(client, ms);
    expect(before.filter((s) => s === 'applied')).toHaveLength(2);
    expect(before.filter((s) => s === 'pending')).toHaveLength(4);
    expect(await q.getJobState('batch-kill')).toBe('active');

    // The next worker takes the stalled job over (no reconciler: the job alone must finish it).
    const w = worker(prefix, { stalledIntervalMs: 250 });
    const seen: BatchCommitted[] = [];
    w.on('committed', (e) => seen.push(e));
    await w.start();
    await waitFor('the stalled job re-run and completed', async () => (await q.getJobState('batch-kill')) === 'completed', 30_000);
    expect((await q.getJob('batch-kill'))?.returnvalue).toMatchObject({ parts: 6, applied: 4, duplicates: 2 });
    expect(seen.flatMap((e) => e.duplicates).sort()).toEqual([...first].sort());
    expect(await states(client, ms)).toEqual(ms.map(() => 'applied'));
    expect(await statsOf(t.shardSet, gameId)).toEqual(expectedStats(ms));
  });
});

/**
 * A batch job some of whose parts meet a bucket in its cut-over: those wait in a job of their own
 * (keeping when their deferral began), the rest apply at once.
 */
describe('a batch job partly deferred by a bucket move', () => {
  let s: ForwardShards;
  let shards: ShardSet;
  const prefix = testPrefix();
  let n = 0;

  beforeAll(async () => {
    s = await createForwardShards();
    shards = new ShardSet(s.map, { poolMax: 4, logger: silent });
  });
  afterAll(async () => {
    await deleteKeys(prefix);
    await shards?.close();
    await s?.cleanup();
  });

  it('applies the parts clear of the move, and the deferred ones once their range is owned again', async () => {
    const range: [number, number] = [1200, 1300];
    const moving = [playerInBucket(1250, 10_000 + n++), playerInBucket(1251, 10_000 + n++)];
    const staying = [playerInBucket(3000, 10_000 + n++), playerInBucket(3001, 10_000 + n++)];
    await s.query(0, `INSERT INTO players (player_id, region, nickname) SELECT id, 'shenzhen', 'p' || id FROM unnest($1::bigint[]) id`, [
      [...moving, ...staying].map(String),
    ]);
    const gameId = uniqueName('g');
    const match = (ids: readonly bigint[]): SettlementInput => ({
      matchId: uniqueName('dfr'),
      gameId,
      endedAt: new Date('2026-03-01T12:00:00.000Z'),
      results: ids.map((id, i) => ({ playerId: id.toString(), scoreDelta: 5 + i, outcome: i === 0 ? 'win' : 'loss' })),
    });
    const waits = match([moving[0] as bigint, moving[1] as bigint]);
    const goes = match([staying[0] as bigint, staying[1] as bigint]);
    const client = new SettlementClient({ shards, connection: redisOptions(), prefix, logger: silent });
    const q = new Queue(queueNameFor('sz-1'), { connection: redisOptions(), prefix });
    const worker = new SettlementWorker({
      shards,
      connection: redisOptions(),
      prefix,
      logger: silent,
      concurrency: 8,
      batchSize: 4,
      shardIds: ['sz-1', 'sz-2'],
    });
    const events: BatchCommitted[] = [];
    worker.on('committed', (e) => events.push(e));
    try {
      for (const m of [waits, goes]) await client.submitSettlement(m);
      await deleteKeys(prefix);
      await q.add('settle', { shardId: 'sz-1', matchIds: [waits.matchId, goes.matchId] }, { jobId: 'batch-split', attempts: 8 });
      await simulateMove(s, range, {
        epoch: 3,
        whileFrozen: async () => {
          await worker.start();
          await waitFor('the job completed, one part deferred', async () => (await q.getJobState('batch-split')) === 'completed');
          expect((await q.getJob('batch-split'))?.returnvalue).toMatchObject({ parts: 2, applied: 1, deferred: 1 });
          expect(events.some((e) => e.deferred.some((d) => d.matchId === waits.matchId))).toBe(true);
          expect((await client.settlementStatus(goes.matchId))?.state).toBe('applied');
          expect((await client.settlementStatus(waits.matchId))?.state).toBe('pending');
          // The deferred part carries on in a job of its own, knowing since when it waits.
          const later = (await q.getJobs(['delayed', 'waiting', 'active'])).filter((j) => j.id !== 'batch-split');
          expect(later.map((j) => (j.data as { matchIds: string[] }).matchIds)).toContainEqual([waits.matchId]);
          const carried = later.find((j) => (j.data as { matchIds: string[] }).matchIds.includes(waits.matchId));
          expect((carried?.data as { deferredSince?: number }).deferredSince).toBeLessThanOrEqual(Date.now());
        },
      });
      expect((await client.waitFor(waits.matchId, { timeoutMs: 20_000 })).state).toBe('applied');
      const ledger = await s.query<{ n: number }>(1, `SELECT count(*)::int AS n FROM settlement_ledger WHERE match_id = $1`, [waits.matchId]);
      expect(ledger[0]?.n).toBe(2);
    } finally {
      await worker.stop(5000);
      await q.close();
      await client.close();
    }
  });
});
