import { spawn } from 'node:child_process';
import { Queue } from 'bullmq';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SchemaVersionError } from '../../src/errors/index.js';
import { ShardSet } from '../../src/db/index.js';
import { ShardMigrator } from '../../src/migrate/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import { applyParts } from '../../src/settlement/apply.js';
import {
  SettlementClient,
  SettlementWorker,
  jobIdFor,
  queueNameFor,
  type BatchCommitted,
  type SettlementInput,
  type SettlementWorkerOptions,
} from '../../src/settlement/index.js';
import type { JobPolicy } from '../../src/settlement/queues.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';
import {
  createPlayers,
  deleteKeys,
  expectedStats,
  interleave,
  makeMatch,
  redisOptions,
  silent,
  statsOf,
  testPrefix,
  waitFor,
  writeMapFile,
} from './helpers.js';
import { connectionUrlOf } from '../../src/shardmap/connection-url.js';

describe.each(LAYOUTS)('SettlementWorker (%s)', (layout) => {
  let t: TestShards;
  let byShard: Map<string, PlayerId[]>;
  let players: PlayerId[];
  const open: { stop(): Promise<void> }[] = [];
  const prefixes: string[] = [];

  beforeAll(async () => {
    t = await createTestShards(layout);
    byShard = await createPlayers(t.shardSet, 10);
    players = interleave(byShard);
  });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.stop();
    for (const p of prefixes.splice(0)) await deleteKeys(p);
  });
  afterAll(() => t?.cleanup());

  function setup(jobs: JobPolicy = {}): { prefix: string; client: SettlementClient } {
    const prefix = testPrefix();
    prefixes.push(prefix);
    const client = new SettlementClient({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent, jobs });
    open.push({ stop: () => client.close() });
    return { prefix, client };
  }

  function worker(prefix: string, options: Partial<SettlementWorkerOptions> = {}): SettlementWorker {
    const w = new SettlementWorker({
      shards: t.shardSet,
      connection: redisOptions(),
      prefix,
      logger: silent,
      concurrency: 16,
      batchSize: 8,
      lingerMs: 5,
      ...options,
    });
    open.push({ stop: () => w.stop(5000) });
    return w;
  }

  /** n matches of `size` players each (sliding over players interleaved across shards), in one game. */
  function matches(n: number, size: number, gameId = uniqueName('game')): SettlementInput[] {
    return Array.from({ length: n }, (_, i) => {
      const picked = Array.from({ length: size }, (_, k) => players[(i + k * 3) % players.length] as PlayerId);
      return makeMatch(picked, { gameId });
    });
  }

  async function allApplied(client: SettlementClient, ms: readonly SettlementInput[]): Promise<boolean> {
    const states = await Promise.all(ms.map((m) => client.settlementStatus(m.matchId)));
    return states.every((s) => s?.state === 'applied');
  }

  async function ledgerRows(gameId: string): Promise<number> {
    let n = 0;
    for (const s of t.shardSet.shards) {
      const db = await t.shardSet.db(s.id);
      const r = await db
        .selectFrom('settlement_ledger')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('game_id', '=', gameId)
        .executeTakeFirst();
      n += Number(r?.n ?? 0);
    }
    return n;
  }

  it('applies every match exactly once on every shard it touches, several parts per transaction', async () => {
    const { prefix, client } = setup();
    const ms = matches(30, 5);
    await Promise.all(ms.map((m) => client.submitSettlement(m)));
    const w = worker(prefix);
    const batches: BatchCommitted[] = [];
    w.on('committed', (e) => batches.push(e));
    await w.start();
    await waitFor('all matches applied', () => allApplied(client, ms));

    expect(await statsOf(t.shardSet, ms[0]!.gameId)).toEqual(expectedStats(ms));
    expect(await ledgerRows(ms[0]!.gameId)).toBe(150);
    expect(Math.max(...batches.map((b) => b.applied.length))).toBeGreaterThan(1);
    const applied = await w.metrics.resultsApplied.get();
    expect(applied.values.reduce((n, v) => n + v.value, 0)).toBe(150);
    const status = await client.settlementStatus(ms[0]!.matchId);
    expect(status?.shards.every((s) => s.appliedAt instanceof Date && s.attempts === 1)).toBe(true);
  });

  it('changes nothing when the same job is processed twice, or the same part is applied twice at once', async () => {
    const { prefix, client } = setup();
    const [m, n] = matches(2, 4);
    const status = await client.submitSettlement(m!);
    await client.submitSettlement(n!);

    // Two transactions racing on one part: one applies it, the other finds it applied.
    const shardId = status.shards[0]!.shardId;
    const db = await t.shardSet.db(shardId);
    const raced = await Promise.all([applyParts(db, [m!.matchId]), applyParts(db, [m!.matchId])]);
    expect(raced.map((r) => r.get(m!.matchId)?.kind).sort()).toEqual(['applied', 'duplicate']);

    const w = worker(prefix);
    await w.start();
    await waitFor('applied', () => allApplied(client, [m!, n!]));
    const before = await statsOf(t.shardSet, m!.gameId);
    expect(before).toEqual(expectedStats([m!, n!]));

    // The same job again under another id (a duplicate delivery): completes, changes nothing.
    const queues = status.shards.map((s) => new Queue(queueNameFor(s.shardId), { connection: redisOptions(), prefix }));
    try {
      const dups = await Promise.all(queues.map((q, i) => q.add('settle', { matchId: m!.matchId, shardId: status.shards[i]!.shardId }, { jobId: `dup-${i}` })));
      await waitFor('duplicates done', async () => (await Promise.all(dups.map((d) => d.getState()))).every((s) => s === 'completed'));
      for (const [i, d] of dups.entries())
        expect((await queues[i]!.getJob(d.id as string))?.returnvalue).toEqual({
          parts: 1,
          applied: 0,
          inserted: 0,
          duplicates: 1,
          failed: 0,
          forwarded: 0,
          deferred: 0,
        });
    } finally {
      await Promise.all(queues.map((q) => q.close()));
    }
    expect(await statsOf(t.shardSet, m!.gameId)).toEqual(before);
    expect(await ledgerRows(m!.gameId)).toBe(8);
  });

  it('restores the work from the shard inboxes when Redis lost every key after acceptance', async () => {
    const { prefix, client } = setup();
    const ms = matches(6, 4);
    await Promise.all(ms.map((m) => client.submitSettlement(m)));
    expect(await deleteKeys(prefix)).toBeGreaterThan(0); // this test's keys only: others share the Redis
    const w = worker(prefix, { reconcileAfterMs: 0 });
    await w.start();
    await waitFor('applied after reconcile', () => allApplied(client, ms));
    expect(await statsOf(t.shardSet, ms[0]!.gameId)).toEqual(expectedStats(ms));
  });

  it('is harmless when a worker dies after its commit and before acknowledging the job', async () => {
    const { prefix, client } = setup();
    const [m] = matches(1, 4);
    const status = await client.submitSettlement(m!);
    const crashed = status.shards[0]!.shardId;
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/settlement/fixtures/crash-worker.ts', writeMapFile(t.mapJson), prefix, REDIS_URL, crashed],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exit = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    expect(exit, out).toBe('SIGKILL');
    expect(out).toContain(`committed ["${m!.matchId}"]`);

    // Committed in Postgres, still active (unacknowledged) in BullMQ.
    const q = new Queue(queueNameFor(crashed), { connection: redisOptions(), prefix });
    try {
      expect(await q.getJobState(jobIdFor(m!.matchId))).toBe('active');
      expect((await client.settlementStatus(m!.matchId))?.shards.find((s) => s.shardId === crashed)?.state).toBe('applied');

      const w = worker(prefix, { stalledIntervalMs: 250 });
      const seen: BatchCommitted[] = [];
      w.on('committed', (e) => seen.push(e));
      await w.start();
      await waitFor('stalled job re-run and completed', async () => (await q.getJobState(jobIdFor(m!.matchId))) === 'completed', 30_000);
      await waitFor('all parts applied', () => allApplied(client, [m!]));
      expect(seen.some((e) => e.shardId === crashed && e.duplicates.includes(m!.matchId))).toBe(true);
    } finally {
      await q.close();
    }
    expect(await statsOf(t.shardSet, m!.gameId)).toEqual(expectedStats([m!]));
    expect(await ledgerRows(m!.gameId)).toBe(4);
  });

  it('dead-letters a part that can never apply, with its reason, and re-drives it on retry', async () => {
    const { prefix, client } = setup();
    const [m] = matches(1, 4);
    const victim = m!.results[1]!.playerId.toString();
    const victimShard = t.shardSet.router.shardFor(BigInt(victim) as PlayerId);
    await client.submitSettlement(m!);
    // The player vanishes between submit and apply: this part can never apply as it stands.
    const vdb = await t.shardSet.db(victimShard.id);
    const row = await vdb
      .selectFrom('players')
      .selectAll()
      .where('player_id', '=', BigInt(victim) as PlayerId)
      .executeTakeFirstOrThrow();
    await vdb.deleteFrom('players').where('player_id', '=', row.player_id).execute();

    const w = worker(prefix);
    await w.start();
    const failed = await waitFor('failed', async () => {
      const s = await client.settlementStatus(m!.matchId);
      return s?.shards.every((p) => p.state !== 'pending') ? s : null;
    });
    expect(failed.state).toBe('failed');
    expect(failed.shards.find((s) => s.shardId === victimShard.id)).toMatchObject({ state: 'failed', reason: expect.stringContaining(victim) });
    for (const s of failed.shards) if (s.shardId !== victimShard.id) expect(s.state).toBe('applied');

    const report = await client.listFailed();
    expect(report.failed).toEqual([
      {
        source: 'inbox',
        matchId: m!.matchId,
        shardId: victimShard.id,
        gameId: m!.gameId,
        jobId: jobIdFor(m!.matchId),
        reason: expect.stringMatching(/not found/),
        attempts: 1,
        failedAt: expect.any(Date),
      },
    ]);
    const q = new Queue(queueNameFor(victimShard.id), { connection: redisOptions(), prefix });
    try {
      // The inbox row is the dead letter: the job that found the part failing ends after one try,
      // completed (a job may carry other parts, applied), saying so.
      const job = await q.getJob(jobIdFor(m!.matchId));
      expect(await job?.getState()).toBe('completed');
      expect(job?.attemptsMade).toBe(1);
      expect(job?.returnvalue).toMatchObject({ parts: 1, failed: 1 });

      // A malformed job fails at once too, with its reason.
      const bad = await q.add('settle', { bogus: true }, { jobId: 'bad-1', attempts: 5 });
      await waitFor('bad job failed', async () => (await bad.getState()) === 'failed');
      const badJob = await q.getJob('bad-1');
      expect(badJob?.failedReason).toMatch(/malformed job data/);
      expect(badJob?.attemptsMade).toBe(1);
    } finally {
      await q.close();
    }

    // The malformed job has no inbox row, yet it is listed too, as a queue-only dead letter.
    const badListed = {
      source: 'queue',
      matchId: null,
      shardId: victimShard.id,
      gameId: null,
      jobId: 'bad-1',
      reason: expect.stringMatching(/malformed job data/),
      attempts: 1,
      failedAt: expect.any(Date),
    };
    expect((await client.listFailed()).failed).toEqual([report.failed[0], badListed]);
    expect((await client.listFailed({ matchId: m!.matchId })).failed).toEqual([report.failed[0]]);

    await vdb.insertInto('players').values({ player_id: row.player_id, region: row.region, nickname: row.nickname }).execute();
    const retried = await client.retry(m!.matchId);
    expect(retried.parts).toEqual([{ matchId: m!.matchId, shardId: victimShard.id }]);
    expect(retried.notRetryable).toEqual([]); // bad-1 names no match: not part of this one
    await waitFor('applied after retry', () => allApplied(client, [m!]));
    expect(await statsOf(t.shardSet, m!.gameId)).toEqual(expectedStats([m!]));
    // The part is gone from the list; the job with no inbox row stays (retry cannot re-drive it).
    expect((await client.listFailed()).failed).toEqual([badListed]);
    expect(await client.retry({ all: true })).toEqual({ parts: [], notRetryable: [badListed], unreachable: [] });
  });

  it('measures lag on the shard clock, from the part recorded to the part applied', async () => {
    const { client } = setup();
    const [m] = matches(1, 2);
    const status = await client.submitSettlement(m!);
    const shardId = status.shards[0]!.shardId;
    const db = await t.shardSet.db(shardId);
    // As if recorded 90 s ago by the shard's clock; the worker host's clock plays no part.
    await db
      .updateTable('settlement_inbox')
      .set({ created_at: sql`clock_timestamp() - interval '90 seconds'` })
      .where('match_id', '=', m!.matchId)
      .execute();
    const out = (await applyParts(db, [m!.matchId])).get(m!.matchId);
    expect(out?.kind).toBe('applied');
    const lagMs = out?.kind === 'applied' ? out.lagMs : -1;
    expect(lagMs).toBeGreaterThanOrEqual(90_000);
    expect(lagMs).toBeLessThan(95_000);
  });

  it('retries transient failures (statement timeouts under a held lock) with backoff, applying once', async () => {
    const { prefix, client } = setup({ backoffMs: 100 });
    const ms = matches(3, 4);
    await Promise.all(ms.map((m) => client.submitSettlement(m)));
    const impatient = new ShardSet(t.map, { statementTimeoutMs: 300, poolMax: 4 });
    open.push({ stop: () => impatient.close() });
    // Hold the ledger of every shard for a while: the worker's inserts time out (SQLSTATE 57014).
    const lockers = await Promise.all(
      t.map.shards.map(async (s) => {
        const c = new pg.Client({ connectionString: connectionUrlOf(s) });
        await c.connect();
        await c.query('BEGIN');
        await c.query('LOCK TABLE settlement_ledger IN ACCESS EXCLUSIVE MODE');
        return c;
      }),
    );
    const w = new SettlementWorker({ shards: impatient, connection: redisOptions(), prefix, logger: silent, concurrency: 8, batchSize: 4 });
    open.push({ stop: () => w.stop(5000) });
    try {
      await w.start();
      await waitFor('a retry', async () => ((await w.metrics.retried.get()).values[0]?.value ?? 0) > 0 || undefined);
    } finally {
      for (const c of lockers) {
        await c.query('COMMIT');
        await c.end();
      }
    }
    await waitFor('applied after the lock', () => allApplied(client, ms), 30_000);
    expect(await statsOf(t.shardSet, ms[0]!.gameId)).toEqual(expectedStats(ms));
    expect((await client.listFailed()).failed).toEqual([]);
  });

  it('stops gracefully: no job left active, and the next worker finishes the rest exactly once', async () => {
    const { prefix, client } = setup();
    const ms = matches(40, 3);
    await Promise.all(ms.map((m) => client.submitSettlement(m)));
    const w = worker(prefix, { concurrency: 4, batchSize: 2 });
    const first = new Promise<void>((resolve) => w.once('committed', () => resolve()));
    await w.start();
    await first;
    await w.stop(10_000);
    for (const s of t.shardSet.shards) {
      const q = new Queue(queueNameFor(s.id), { connection: redisOptions(), prefix });
      try {
        expect(await q.getActiveCount()).toBe(0);
      } finally {
        await q.close();
      }
    }
    const next = worker(prefix);
    await next.start();
    await waitFor('rest applied', () => allApplied(client, ms));
    expect(await statsOf(t.shardSet, ms[0]!.gameId)).toEqual(expectedStats(ms));
  });
});

describe('SettlementWorker start checks', () => {
  it('refuses a shard whose schema is behind the code', async () => {
    const t = await createTestShards('one-shard');
    const prefix = testPrefix();
    try {
      await new ShardMigrator(t.map.shards[0]!).rollback();
      const w = new SettlementWorker({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
      await expect(w.start()).rejects.toBeInstanceOf(SchemaVersionError);
    } finally {
      await deleteKeys(prefix);
      await t.cleanup();
    }
  });
});
