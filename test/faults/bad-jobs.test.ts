import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlayerId } from '../../src/routing/index.js';
import { SettlementClient, SettlementWorker, jobIdFor, queueNameFor, type SettlementInput } from '../../src/settlement/index.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { runCli } from '../support/cli.js';
import { writeMapFile } from '../support/maps.js';
import { createPlayers } from '../support/players.js';
import { waitFor } from '../support/wait.js';
import { deleteKeysUnder, exactlyOnceProblems, faultPrefix, sharedRedis, silent } from './support/settlement.js';

/**
 * Jobs written straight into the settlement queues by someone else (another tool, a bug, an
 * attacker with Redis access): each must fail with its reason, apply nothing, leave no row in any
 * shard, and never be retried, however many attempts the writer asked for.
 */
describe('malformed jobs written straight into the queues', () => {
  let t: TestShards;
  let byShard: Map<string, PlayerId[]>;
  let client: SettlementClient;
  let worker: SettlementWorker;
  const queues = new Map<string, Queue>();
  const prefix = faultPrefix();

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    byShard = await createPlayers(t.shardSet, 4);
    client = new SettlementClient({ shards: t.shardSet, connection: sharedRedis(), prefix, logger: silent });
    for (const s of t.map.shards) queues.set(s.id, new Queue(queueNameFor(s.id), { connection: sharedRedis(), prefix }));
    worker = new SettlementWorker({
      shards: t.shardSet,
      connection: sharedRedis(),
      prefix,
      logger: silent,
      concurrency: 4,
      batchSize: 2,
      // Short job locks, and a reconciler that looks at everything every 300 ms: nothing forged may come back.
      lockDurationMs: 1000,
      stalledIntervalMs: 300,
      reconcileIntervalMs: 300,
      reconcileAfterMs: 0,
    });
    await worker.start();
  });
  afterAll(async () => {
    await worker?.stop(5000);
    for (const q of queues.values()) await q.close();
    await client?.close();
    await deleteKeysUnder(sharedRedis(), prefix);
    await t?.cleanup();
  });

  const q = (shardId: string) => queues.get(shardId) as Queue;
  const player = (shardId: string, i = 0) => (byShard.get(shardId) as PlayerId[])[i] as PlayerId;

  async function settlementRows(): Promise<{ shard: string; inbox: number; ledger: number; failed: number }[]> {
    const out = [];
    for (const s of t.map.shards) {
      const db = await t.shardSet.db(s.id);
      const r = await sql<{ inbox: number; ledger: number; failed: number }>`
        SELECT (SELECT count(*)::int FROM settlement_inbox) AS inbox, (SELECT count(*)::int FROM settlement_ledger) AS ledger,
               (SELECT count(*)::int FROM settlement_inbox WHERE status = 'failed') AS failed`.execute(db);
      out.push({ shard: s.id, ...(r.rows[0] as { inbox: number; ledger: number; failed: number }) });
    }
    return out;
  }

  it('fails each with a reason after one try, applies nothing, and leaves the real parts to apply exactly once', async () => {
    const gameId = uniqueName('forged');
    // A real match on sz-1 and sc-1 only, submitted while its shards' queues are paused, so the
    // forged jobs about it are processed before (or alongside) its real jobs.
    for (const id of ['sz-1', 'sc-1']) await q(id).pause();
    const real: SettlementInput = {
      matchId: uniqueName('real'),
      gameId,
      endedAt: '2025-03-01T12:00:00Z',
      results: [
        { playerId: player('sz-1').toString(), scoreDelta: 7, outcome: 'win' },
        { playerId: player('sc-1').toString(), scoreDelta: -7, outcome: 'loss' },
      ],
    };
    await client.submitSettlement(real);
    const before = await settlementRows();

    const many = { attempts: 1000, backoff: { type: 'fixed', delay: 50 } } as const;
    const forged: { shard: string; id: string; data: unknown; reason: RegExp }[] = [
      { shard: 'sz-2', id: 'forged-string', data: 'settle everything', reason: /malformed job data/ },
      { shard: 'sz-2', id: 'forged-null', data: null, reason: /malformed job data/ },
      { shard: 'sz-2', id: 'forged-no-shard', data: { matchId: real.matchId }, reason: /malformed job data/ },
      { shard: 'sz-2', id: 'forged-extra', data: { matchId: real.matchId, shardId: 'sz-2', scoreDelta: 1e6 }, reason: /malformed job data/ },
      { shard: 'sz-2', id: 'forged-bad-id', data: { matchId: 'has space', shardId: 'sz-2' }, reason: /malformed job data/ },
      // Names another shard than the queue it sits in: must not apply sc-1's part from sz-2's worker.
      {
        shard: 'sz-2',
        id: 'forged-wrong-queue',
        data: { matchId: real.matchId, shardId: 'sc-1' },
        reason: /names shard "sc-1" but sits in the queue of shard "sz-2"/,
      },
      // Well formed, but no such part on that shard (the match never touched na-1; ghost never existed).
      { shard: 'na-1', id: 'forged-no-part', data: { matchId: real.matchId, shardId: 'na-1' }, reason: /no inbox row/ },
      { shard: 'na-1', id: 'forged-ghost', data: { matchId: 'ghost-match', shardId: 'na-1' }, reason: /no inbox row/ },
    ];
    for (const f of forged) await q(f.shard).add('settle', f.data, { ...many, jobId: f.id });

    // Raw garbage in the job hash (not even JSON), pushed the way BullMQ's own script would.
    const raw = new Redis(sharedRedis());
    try {
      const base = `${prefix}:${queueNameFor('sz-2')}`;
      await raw.hset(`${base}:forged-raw`, {
        name: 'settle',
        data: '{not json',
        opts: JSON.stringify(many),
        timestamp: String(Date.now()),
        delay: '0',
        priority: '0',
      });
      await raw.lpush(`${base}:wait`, 'forged-raw');
      await raw.zadd(`${base}:marker`, 0, '0');
    } finally {
      raw.disconnect();
    }

    await waitFor(
      'every forged job failed',
      async () => (await Promise.all(forged.map(async (f) => (await q(f.shard).getJobState(f.id)) === 'failed'))).every(Boolean),
      30_000,
    );
    for (const f of forged) {
      const job = await q(f.shard).getJob(f.id);
      expect({ id: f.id, reason: job?.failedReason }).toEqual({ id: f.id, reason: expect.stringMatching(f.reason) });
      expect({ id: f.id, attemptsMade: job?.attemptsMade }).toEqual({ id: f.id, attemptsMade: 1 });
    }
    // BullMQ itself cannot read the raw one (its data is not JSON); it too fails once, with the reason.
    await waitFor('the raw job failed', async () => (await q('sz-2').getJobState('forged-raw')) === 'failed', 30_000);
    // (Read from the hash: BullMQ's getJob cannot parse it either.)
    const rawHash = async () => {
      const r = new Redis(sharedRedis());
      try {
        return await r.hgetall(`${prefix}:${queueNameFor('sz-2')}:forged-raw`);
      } finally {
        r.disconnect();
      }
    };
    expect(await rawHash()).toMatchObject({ failedReason: expect.stringMatching(/malformed job data.*not json/), atm: '1' });

    // Nothing was applied or recorded by any of them: not the real match's sc-1 part, not a failed mark on it.
    expect(await settlementRows()).toEqual(before);
    expect((await client.settlementStatus(real.matchId))?.shards.map((s) => s.state)).toEqual(['pending', 'pending']);

    // A few reconciler rounds later they are still failed, still tried once.
    const rounds = worker.metrics.failed;
    const failedBefore = (await rounds.get()).values.reduce((n, v) => n + v.value, 0);
    await new Promise((r) => setTimeout(r, 1500));
    for (const f of forged) {
      expect({ id: f.id, state: await q(f.shard).getJobState(f.id), attemptsMade: (await q(f.shard).getJob(f.id))?.attemptsMade }).toEqual({
        id: f.id,
        state: 'failed',
        attemptsMade: 1,
      });
    }
    expect(await q('sz-2').getJobState('forged-raw')).toBe('failed');
    expect(await rawHash()).toMatchObject({ atm: '1' });
    expect((await rounds.get()).values.reduce((n, v) => n + v.value, 0)).toBe(failedBefore);

    // The real jobs then apply the match exactly once.
    for (const id of ['sz-1', 'sc-1']) await q(id).resume();
    await waitFor('the real match applied', async () => (await client.settlementStatus(real.matchId))?.state === 'applied', 30_000);
    expect(await exactlyOnceProblems(t.shardSet, gameId, [real])).toEqual([]);
    expect(await q('sz-1').getJobState(jobIdFor(real.matchId))).toBe('completed');

    // No inbox row holds them, yet they are dead letters all the same: listed, marked as queue-only,
    // with the job id and BullMQ's reason (and the match only when the data names a valid one).
    const namedMatch: Record<string, string> = { 'forged-wrong-queue': real.matchId, 'forged-no-part': real.matchId, 'forged-ghost': 'ghost-match' };
    const expected = [...forged, { shard: 'sz-2', id: 'forged-raw', reason: /malformed job data.*not json/ }].map((f) => ({
      source: 'queue',
      jobId: f.id,
      shardId: f.shard,
      matchId: namedMatch[f.id] ?? null,
      gameId: null,
      reason: expect.stringMatching(f.reason),
      attempts: 1,
      failedAt: expect.any(Date),
    }));
    const listed = await client.listFailed();
    expect(listed.unreachable).toEqual([]);
    expect([...listed.failed].sort((a, b) => a.jobId.localeCompare(b.jobId))).toEqual([...expected].sort((a, b) => a.jobId.localeCompare(b.jobId)));
    expect(listed.failed.map((f) => f.failedAt.getTime())).toEqual(listed.failed.map((f) => f.failedAt.getTime()).sort((a, b) => a - b));
    expect((await client.listFailed({ matchId: real.matchId })).failed.map((f) => f.jobId).sort()).toEqual(['forged-no-part', 'forged-wrong-queue']);
    expect((await client.listFailed({ shardIds: ['na-1'], limit: 1 })).failed).toHaveLength(1);

    // retry does not pretend: nothing re-enqueued, each one reported as not retryable, left failed.
    const retried = await client.retry({ all: true });
    expect(retried.parts).toEqual([]);
    expect(retried.notRetryable.map((d) => d.jobId).sort()).toEqual(expected.map((e) => e.jobId).sort());
    expect((await client.retry(real.matchId)).notRetryable.map((d) => d.jobId).sort()).toEqual(['forged-no-part', 'forged-wrong-queue']);
    for (const f of forged) expect({ id: f.id, state: await q(f.shard).getJobState(f.id) }).toEqual({ id: f.id, state: 'failed' });

    // And the CLI shows them.
    const common = ['--map', writeMapFile(t.mapJson), '--prefix', prefix];
    const [shown, retriedCli] = await Promise.all([
      runCli(['settlements', 'failed', ...common], { env: { REDIS_URL } }),
      runCli(['settlements', 'retry', '--all', ...common], { env: { REDIS_URL } }),
    ]);
    expect(shown.code, shown.stderr).toBe(0);
    const lines = shown.stdout.split('\n');
    for (const f of expected) {
      expect({ job: f.jobId, shown: lines.some((l) => l.includes(` ${f.jobId} `) && / queue /.test(l) && l.includes(` ${f.shardId} `)) }).toEqual({
        job: f.jobId,
        shown: true,
      });
    }
    expect(retriedCli.code, retriedCli.stderr).toBe(0);
    expect(retriedCli.stdout).toContain('not retried: job forged-ghost on na-1: no inbox row behind it');
    expect(retriedCli.stdout).toContain('0 parts re-enqueued');
  }, 180_000);
});
