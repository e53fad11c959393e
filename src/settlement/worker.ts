import { EventEmitter } from 'node:events';
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
// One Redis or a Cluster: every settlement call works on either (each queue is one hash slot).
import type { RedisClient as Redis } from '../redis/connection.js';
import { ShardUnavailableError } from '../errors/index.js';
import { isTransientDbError } from '../db/pg-errors.js';
import { assertAppSchemaCurrent, assertSchemaCurrent } from '../migrate/index.js';
import type { AppTables } from '../db/shard-set.js';
import { applyParts, type PartOutcome } from './apply.js';
import { shardForwarder } from './forwarding.js';
import { GroupCommit } from './group-commit.js';
import { markFailed } from './inbox-store.js';
import { legacyQueueOf, queueNameFor } from './keys.js';
import { SettlementMetrics } from './metrics.js';
import { SettlementQueueWorker, SettlementQueues } from './queues.js';
import { reconcileShard } from './reconciler.js';
import { duplicateConnection, isClusterConnection, resolveConnection } from '../redis/connection.js';
import { assertRedisSuitable, checkDependencyVersions, workerConnectionOptions } from './redis.js';
import { parseJobData, type SettlementJobData } from './validate.js';
import { resolveWorkerOptions, type ResolvedWorkerOptions, type SettlementWorkerOptions } from './worker-options.js';

export type { SettlementWorkerOptions };

export interface BatchCommitted {
  shardId: string;
  applied: string[];
  duplicates: string[];
  failed: { matchId: string; reason: string }[];
  /** Parts whose results of moved players went to the players' new shards (docs/settlement.md, "Moves"). */
  forwarded: { matchId: string; to: string[] }[];
  /** Parts left for later: a player's bucket in its cut-over, or the new shard did not answer. */
  deferred: { matchId: string; reason: string }[];
}

export interface SettlementWorkerEvents {
  /** A batch transaction committed; emitted before the batch's jobs are acknowledged. */
  committed: [BatchCommitted];
}

/** About how long a part waits when a player's bucket is in its cut-over (jittered between half and 1.5 times). */
const DEFER_MS = 500;
/** How long a job keeps being deferred without spending tries. */
const DEFER_FOR_MS = 10 * 60_000;

/**
 * What a job's run returns (BullMQ keeps it as the job's return value): its parts by outcome, and
 * the player results they inserted. A job carries one part or several.
 */
export interface JobSummary {
  parts: number;
  applied: number;
  inserted: number;
  duplicates: number;
  /** Parts the inbox now records as failed (dead letters there). */
  failed: number;
  forwarded: number;
  /** Parts handed to a job of their own for later (the others of this job done). */
  deferred: number;
}

/** A job's failure reason for parts that could not be recorded as failed, naming them (grouped by reason, bounded). */
function unrecordedReason(parts: readonly { matchId: string; reason: string }[]): string {
  const byReason = new Map<string, string[]>();
  for (const p of parts) byReason.set(p.reason, [...(byReason.get(p.reason) ?? []), p.matchId]);
  const text = [...byReason].map(([reason, ids]) => `${reason}: ${ids.join(', ')}`).join('; ');
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
}

interface ShardRunner {
  worker: Worker<SettlementJobData>;
  batches: GroupCommit<string, PartOutcome>;
}

/**
 * Applies settlement parts from the per-shard queues: one BullMQ Worker per shard, jobs waiting
 * for the same shard combined into one transaction. Refuses to start against a shard of the wrong
 * identity or an outdated schema, or against a Redis that may evict keys.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- App is inferred from the options' ShardSet
export class SettlementWorker<App extends AppTables = any> extends EventEmitter<SettlementWorkerEvents> {
  readonly metrics: SettlementMetrics;
  /** The key prefix in use (the option, else the map's, else "shardline"). */
  readonly prefix: string;
  private readonly opts: ResolvedWorkerOptions;
  private readonly runners = new Map<string, ShardRunner>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private redis: { client: Redis; owned: boolean } | undefined;
  /** On a Redis Cluster: the Cluster the shards' BullMQ workers share (BullMQ duplicates it for its blocking reads). */
  private bullCluster: Redis | undefined;
  private queues: SettlementQueues | undefined;
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private reconciling = false;
  private readonly legacyReported = new Set<string>();
  /** Shards being checked before their runner starts (joined from refreshed routing). */
  private readonly joining = new Set<string>();
  private unfollow: (() => void) | undefined;

  constructor(options: SettlementWorkerOptions<App>) {
    super();
    this.opts = resolveWorkerOptions(options);
    this.prefix = this.opts.prefix;
    this.metrics = new SettlementMetrics(this.opts.registry);
  }

  private get logger() {
    return this.opts.logger;
  }

  /** Shards whose queue is being worked (a shard unreachable at start joins once it answers). */
  get activeShards(): string[] {
    return [...this.runners.keys()];
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('SettlementWorker.start() may be called once');
    this.state = 'running';
    try {
      checkDependencyVersions(this.logger);
      this.redis = resolveConnection(this.opts.connection);
      this.redis.client.on('error', (err: Error) => this.logger.debug?.({ err }, 'redis connection error'));
      if (this.opts.checkRedis) await assertRedisSuitable(this.redis.client, this.logger);
      this.queues = new SettlementQueues(this.redis.client, this.prefix, this.opts.jobs);
      if (isClusterConnection(this.opts.connection)) {
        // BullMQ takes a cluster only as a client, with blocking-safe retries on its nodes.
        this.bullCluster = duplicateConnection(this.opts.connection, `shardline-settlement-${process.pid}`, { redisOptions: { maxRetriesPerRequest: null } });
      }
      const checks = await Promise.allSettled(this.opts.shardIds.map((id) => this.checkShard(id)));
      const fatal = checks.find((c): c is PromiseRejectedResult => c.status === 'rejected' && !(c.reason instanceof ShardUnavailableError));
      if (fatal) throw fatal.reason;
      checks.forEach((c, i) => {
        const id = this.opts.shardIds[i] as string;
        if (c.status === 'fulfilled') this.startShard(id);
        else this.retryShardLater(id, c.reason);
      });
    } catch (err) {
      await this.stop(0);
      throw err;
    }
    this.logger.info(
      { shards: this.opts.shardIds, prefix: this.prefix, concurrency: this.opts.concurrency, batchSize: this.opts.batchSize },
      'settlement worker started',
    );
    await this.reconcile(this.activeShards);
    this.every(this.opts.reconcileIntervalMs, () => this.reconcile(this.activeShards));
    if (this.opts.followRouting) this.unfollow = this.opts.shards.onRoutingChange((router) => this.joinNewShards(router.shards.map((s) => s.id)));
  }

  /**
   * Shards that appear in refreshed routing get a runner, checked like those at start. None is
   * stopped when it leaves: its queue may still hold parts to forward, and they drain on their own.
   */
  private joinNewShards(ids: readonly string[]): void {
    if (this.state !== 'running') return;
    for (const id of ids) {
      if (this.runners.has(id) || this.joining.has(id)) continue;
      this.joining.add(id);
      this.logger.info({ shard: id }, 'shard appeared in routing; serving its queue');
      this.checkShard(id).then(
        async () => {
          this.joining.delete(id);
          if (this.state !== 'running' || this.runners.has(id)) return;
          this.startShard(id);
          await this.reconcile([id]);
        },
        (err: unknown) => {
          this.joining.delete(id);
          if (err instanceof ShardUnavailableError) this.retryShardLater(id, err);
          else this.logger.error({ shard: id, err }, 'shard refused: not serving its queue');
        },
      );
    }
  }

  /** Stops taking jobs, lets in-flight ones finish for up to graceMs, then closes what it opened. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.state = 'stopping';
    this.unfollow?.();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const runners = [...this.runners.values()];
    const closing = Promise.all(runners.map((r) => r.worker.close())).then(() => true);
    for (const r of runners) void r.batches.drain();
    let grace: NodeJS.Timeout | undefined;
    const finished = await Promise.race([closing, new Promise<false>((resolve) => (grace = setTimeout(() => resolve(false), graceMs)))]);
    clearTimeout(grace);
    if (!finished)
      this.logger.warn(
        { graceMs },
        'grace period over with jobs in flight; their locks expire and another worker re-runs them (harmless: applying is idempotent)',
      );
    await this.queues?.close();
    if (this.bullCluster) await this.bullCluster.quit().catch(() => this.bullCluster?.disconnect());
    if (this.redis?.owned) await this.redis.client.quit().catch(() => this.redis?.client.disconnect());
    this.runners.clear();
    this.state = 'stopped';
    this.logger.info({ shards: this.opts.shardIds }, 'settlement worker stopped');
  }

  private async checkShard(id: string): Promise<void> {
    // Identity (withShard), then schema not behind, through the worker's own pool and its timeouts.
    // With the app's migrations folder, the app schema too: the effects write the app's tables.
    await this.opts.shards.withShard(id, async () => {
      const pool = this.opts.shards.pool(id);
      await assertSchemaCurrent(pool, id);
      if (this.opts.appMigrations !== undefined) await assertAppSchemaCurrent(pool, id, this.opts.appMigrations);
    });
  }

  private retryShardLater(id: string, reason: unknown): void {
    this.logger.error({ shard: id, err: reason }, 'shard unreachable at start; will keep checking');
    this.after(this.opts.shardRetryMs, async () => {
      try {
        await this.checkShard(id);
      } catch (err) {
        if (err instanceof ShardUnavailableError) return this.retryShardLater(id, err);
        this.logger.error({ shard: id, err }, 'shard refused: not serving its queue');
        return;
      }
      if (this.state !== 'running' || this.runners.has(id)) return;
      this.startShard(id);
      await this.reconcile([id]);
    });
  }

  private startShard(id: string): void {
    const batches = new GroupCommit<string, PartOutcome>((keys) => this.applyBatch(id, keys), {
      maxBatch: this.opts.batchSize,
      lingerMs: this.opts.lingerMs,
      maxInFlight: this.opts.maxInFlightBatches,
      // Two jobs of one part (a stalled job run again) go to separate transactions: the second sees it applied.
      keyOf: (matchId) => matchId,
      // A transient failure (shard down, serialization) fails every part alike: BullMQ retries the jobs.
      isolate: (err) => !isTransientDbError(err),
    });
    const worker = new SettlementQueueWorker(queueNameFor(id), (job, token) => this.process(id, batches, job, token), {
      connection: this.bullCluster ?? workerConnectionOptions(this.opts.connection),
      prefix: this.prefix,
      concurrency: this.opts.concurrency,
      autorun: false,
      lockDuration: this.opts.lockDurationMs,
      stalledInterval: this.opts.stalledIntervalMs,
      maxStalledCount: 3,
      name: `shardline-settlement-${process.pid}`,
    });
    worker.on('error', (err) => this.logger.error({ shard: id, err }, 'queue worker error'));
    worker.on('failed', (job, err) => {
      if (err instanceof UnrecoverableError || err.name === 'UnrecoverableError')
        this.logger.error({ shard: id, jobId: job?.id, reason: err.message }, 'settlement job failed permanently');
      else if (job && job.attemptsMade >= (job.opts.attempts ?? 1))
        this.logger.warn({ shard: id, jobId: job.id, err }, 'settlement job out of tries; the reconciler will re-drive its pending parts');
    });
    this.runners.set(id, { worker, batches });
    worker.run().catch((err: unknown) => this.logger.error({ shard: id, err }, 'queue worker stopped with an error'));
  }

  /**
   * Runs a job: every part it names goes to the shard's group commit at once (so they share
   * transactions), and the job ends by what became of them. A transient failure of any part fails
   * the job for BullMQ to try again (parts applied meanwhile come back as duplicates); a part the
   * inbox now records as failed is done (its row is the dead letter, listed and retried from there);
   * a part that could not be recorded (no inbox row) fails the job for good, so the dead-letter
   * listing shows it. Deferred parts come back later: the job itself when all are, else a job of
   * their own.
   */
  private async process(
    shardId: string,
    batches: GroupCommit<string, PartOutcome>,
    job: Job<SettlementJobData>,
    token: string | undefined,
  ): Promise<JobSummary> {
    const data = parseJobData(job.data);
    if (!data) throw new UnrecoverableError(`malformed job data: ${JSON.stringify(job.data).slice(0, 200)}`);
    if (data.shardId !== shardId) throw new UnrecoverableError(`job names shard "${data.shardId}" but sits in the queue of shard "${shardId}"`);
    const settled = await Promise.allSettled(batches.submitAll(data.matchIds));
    const outcomes: PartOutcome[] = [];
    const transient: unknown[] = [];
    for (const s of settled) {
      if (s.status === 'fulfilled') outcomes.push(s.value);
      else transient.push(s.reason);
    }
    if (transient.length > 0) {
      // Transient (or a part that failed alone and could not even be marked failed): BullMQ tries again.
      this.metrics.retried.inc({ shard: shardId }, transient.length);
      const err = transient[0];
      throw err instanceof Error ? err : new Error(String(err));
    }
    const summary: JobSummary = { parts: outcomes.length, applied: 0, inserted: 0, duplicates: 0, failed: 0, forwarded: 0, deferred: 0 };
    const unrecorded: { matchId: string; reason: string }[] = [];
    const deferred: { matchId: string; reason: string }[] = [];
    for (const r of outcomes) {
      switch (r.kind) {
        case 'applied':
          summary.applied++;
          summary.inserted += r.inserted;
          break;
        case 'duplicate':
          summary.duplicates++;
          break;
        case 'failed':
          summary.failed++;
          if (!r.recorded) unrecorded.push({ matchId: r.matchId, reason: r.reason });
          // Said per part: its job completes (the dead letter is the inbox row), so BullMQ says nothing.
          else this.logger.error({ shard: shardId, matchId: r.matchId, jobId: job.id, reason: r.reason }, 'settlement part failed permanently');
          break;
        case 'forwarded':
          summary.forwarded++;
          break;
        case 'deferred':
          summary.deferred++;
          deferred.push({ matchId: r.matchId, reason: r.reason });
          break;
        default: {
          const unhandled: never = r;
          throw new Error(`unhandled part result ${JSON.stringify(unhandled)}`);
        }
      }
    }
    if (deferred.length > 0) {
      const since = data.deferredSince ?? job.timestamp;
      const reason = (deferred[0] as { reason: string }).reason;
      const delayMs = DEFER_MS / 2 + Math.floor(Math.random() * DEFER_MS);
      if (deferred.length === outcomes.length) {
        // A part deferred for long (a new shard this worker cannot reach, a move left frozen) goes
        // back to spending tries with backoff, then to the reconciler, instead of polling forever.
        if (Date.now() - since > DEFER_FOR_MS) throw new Error(`deferred for over ${DEFER_FOR_MS / 60_000} min: ${reason}`);
        // Back in the queue without spending a try: a cut-over lasts about a second per batch of buckets.
        await job.moveToDelayed(Date.now() + delayMs, token);
        throw new DelayedError(reason);
      }
      // The rest of the job went through: only the deferred parts come back, in a job of their own
      // that keeps the time their deferral began. Added before this job completes: a crash between
      // the two runs this job again, and its other parts are duplicates then.
      const queues = this.queues;
      if (!queues) throw new Error('settlement worker is not started');
      await queues.enqueueDeferred(
        shardId,
        deferred.map((d) => d.matchId),
        since,
        delayMs,
      );
    }
    if (unrecorded.length > 0) throw new UnrecoverableError(unrecordedReason(unrecorded));
    return summary;
  }

  /**
   * One transaction for the batch. A non-transient failure of several parts makes the group commit
   * run them one by one; a part that fails alone is marked failed, so it stops coming back.
   */
  private async applyBatch(shardId: string, keys: string[]): Promise<PartOutcome[]> {
    const shards = this.opts.shards;
    try {
      const stopTimer = this.metrics.batchSeconds.startTimer({ shard: shardId });
      const out = await shards.withShard(shardId, (db) => applyParts(db, keys, this.opts.effects, shardForwarder(shards, shardId)));
      stopTimer();
      this.observe(shardId, out);
      await this.enqueueForwarded(shardId, out);
      return keys.map((k) => out.get(k) ?? { kind: 'failed', matchId: k, reason: 'no outcome for this part', recorded: false });
    } catch (err) {
      if (isTransientDbError(err)) throw err;
      if (keys.length > 1) {
        this.logger.warn({ shard: shardId, err, parts: keys.length }, 'batch failed; applying its parts one by one');
        throw err;
      }
      const matchId = keys[0] as string;
      const reason = err instanceof Error ? err.message : String(err);
      const recorded = await shards
        .withShard(shardId, (db) => markFailed(db, [{ matchId, reason }]))
        .then(
          () => true,
          () => false,
        );
      const failed: PartOutcome = { kind: 'failed', matchId, reason, recorded };
      this.observe(shardId, new Map([[matchId, failed]]));
      return [failed];
    }
  }

  /**
   * Jobs on the new shards' queues for the parts forwarded there. Committed there already: a job
   * lost here is found by that shard's reconciler, so a failure is logged, not thrown.
   */
  private async enqueueForwarded(shardId: string, out: Map<string, PartOutcome>): Promise<void> {
    const queues = this.queues;
    if (!queues) return;
    const jobs = [...out.values()].flatMap((r) =>
      (r.kind === 'applied' || r.kind === 'forwarded' || r.kind === 'failed') && r.forwardedTo ? r.forwardedTo.map((to) => ({ to, matchId: r.matchId })) : [],
    );
    if (jobs.length === 0) return;
    const added = await Promise.allSettled(jobs.map((j) => queues.enqueueForwarded(j.to, j.matchId, shardId)));
    const lost = added.filter((a): a is PromiseRejectedResult => a.status === 'rejected');
    if (lost.length > 0)
      this.logger.warn(
        { shard: shardId, lost: lost.length, err: lost[0]?.reason as unknown },
        'forwarded parts not enqueued; the reconcilers of their shards will enqueue them',
      );
  }

  private observe(shardId: string, out: Map<string, PartOutcome>): void {
    const label = { shard: shardId };
    const event: BatchCommitted = { shardId, applied: [], duplicates: [], failed: [], forwarded: [], deferred: [] };
    for (const r of out.values()) {
      switch (r.kind) {
        case 'applied':
          if (r.forwardedTo) {
            event.forwarded.push({ matchId: r.matchId, to: r.forwardedTo });
            this.metrics.forwarded.inc(label);
          }
          event.applied.push(r.matchId);
          this.metrics.partsApplied.inc(label);
          this.metrics.resultsApplied.inc(label, r.inserted);
          this.metrics.lag.observe(label, r.lagMs / 1000);
          break;
        case 'duplicate':
          event.duplicates.push(r.matchId);
          this.metrics.duplicates.inc(label);
          break;
        case 'failed':
          event.failed.push({ matchId: r.matchId, reason: r.reason });
          this.metrics.failed.inc(label);
          break;
        case 'forwarded':
          event.forwarded.push({ matchId: r.matchId, to: r.forwardedTo });
          this.metrics.forwarded.inc(label);
          break;
        case 'deferred':
          event.deferred.push({ matchId: r.matchId, reason: r.reason });
          this.metrics.deferred.inc(label);
          break;
        default: {
          const unhandled: never = r;
          throw new Error(`unhandled part outcome ${JSON.stringify(unhandled)}`);
        }
      }
    }
    this.metrics.batchSize.observe(label, out.size);
    this.logger.debug?.(event, 'settlement batch committed');
    this.emit('committed', event);
  }

  private async reconcile(shardIds: readonly string[]): Promise<void> {
    if (this.reconciling || this.state !== 'running' || !this.queues) return;
    this.reconciling = true;
    try {
      for (const id of shardIds) {
        try {
          // Jobs queued under the old key layout (every queue under `{<prefix>}`, before the
          // per-queue hash tags) are not worked from there: the shard inbox is the truth, so the
          // reconciler re-enqueues their pending parts under the new layout. While the old layout
          // still holds jobs (left by an older shardline, or still sent by one during a rolling
          // upgrade) it does so for every pending part at once, not only those gone stale.
          const legacy = await this.queues.hasLegacyJobs(id);
          const r = await reconcileShard(
            this.opts.shards,
            this.queues,
            id,
            legacy ? { olderThanMs: 0, limit: 10_000 } : { olderThanMs: this.opts.reconcileAfterMs },
          );
          if (legacy && !this.legacyReported.has(id)) {
            this.legacyReported.add(id);
            const old = legacyQueueOf(this.prefix, id);
            this.logger.warn(
              { shard: id, requeued: r.requeued.length, checked: r.checked, oldKeys: `${old.prefix}:${old.name}:*` },
              'jobs found under the old settlement key layout: their pending parts were re-enqueued from the shard inbox; delete the old keys once no older shardline runs',
            );
          } else if (r.requeued.length > 0)
            this.logger.warn({ shard: id, requeued: r.requeued.length, checked: r.checked }, 're-enqueued pending settlements the queue had lost');
        } catch (err) {
          this.logger.warn({ shard: id, err }, 'reconcile failed; will try again');
        }
      }
    } finally {
      this.reconciling = false;
    }
  }

  private after(ms: number, fn: () => Promise<void>): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (this.state === 'running') fn().catch((err: unknown) => this.logger.error({ err }, 'background task failed'));
    }, ms);
    this.timers.add(t);
  }

  private every(ms: number, fn: () => Promise<void>): void {
    this.after(ms, async () => {
      await fn();
      this.every(ms, fn);
    });
  }
}
