import { Queue, Worker, type Job, type JobJson, type JobsOptions } from 'bullmq';
// One Redis or a Cluster: every settlement call works on either (each queue is one hash slot).
import type { RedisClient as Redis } from '../redis/connection.js';
import { batchJobId, forwardJobIdFor, jobIdFor, legacyQueueOf, queueNameFor } from './keys.js';
import { MAX_JOB_PARTS, type SettlementJobData } from './validate.js';

export interface JobPolicy {
  /** Tries per job for transient failures before BullMQ parks it (the reconciler re-drives it). Default 8. */
  attempts?: number;
  /**
   * First retry delay; doubles each try. Jittered: BullMQ picks each delay at random between half
   * of it and all of it (never longer), so jobs failed together do not retry together. Default 500 ms.
   */
  backoffMs?: number;
  /** Completed jobs kept this long for inspection (the ledger is the durable record). Default 1 h. */
  keepCompletedSeconds?: number;
  /** Failed jobs kept this long (the inbox keeps the reason durably). Default 7 days. */
  keepFailedSeconds?: number;
}

/** A failed job as stored, before anything trusts it: `data` is the raw JSON text, if any. */
export interface RawFailedJob {
  jobId: string;
  data: string | null;
  failedReason: string;
  attemptsMade: number;
  /** Epoch ms; 0 when the hash does not say. */
  finishedOn: number;
}

/** One BullMQ queue per shard on a shared producer connection; created on first use. */
export class SettlementQueues {
  private readonly queues = new Map<string, Queue<SettlementJobData>>();
  private readonly jobOptions: JobsOptions;

  constructor(
    private readonly client: Redis,
    readonly prefix: string,
    policy: JobPolicy = {},
  ) {
    this.jobOptions = {
      attempts: policy.attempts ?? 8,
      backoff: { type: 'exponential', delay: policy.backoffMs ?? 500, jitter: 0.5 },
      removeOnComplete: { age: policy.keepCompletedSeconds ?? 3600, count: 100_000 },
      removeOnFail: { age: policy.keepFailedSeconds ?? 7 * 24 * 3600 },
    };
  }

  queue(shardId: string): Queue<SettlementJobData> {
    let q = this.queues.get(shardId);
    if (!q) {
      q = new Queue<SettlementJobData>(queueNameFor(shardId), { connection: this.client, prefix: this.prefix, skipMetasUpdate: false });
      q.on('error', () => undefined); // failures surface on the calls that hit them
      this.queues.set(shardId, q);
    }
    return q;
  }

  /**
   * Adds the part's own job (jobIdFor, data in the one-part form an older worker reads too); a no-op
   * while BullMQ still holds a job with that id (in any state).
   */
  async enqueue(shardId: string, matchId: string): Promise<void> {
    await this.queue(shardId).add('settle', { matchId, shardId }, { ...this.jobOptions, jobId: jobIdFor(matchId) });
  }

  /**
   * Several parts of one shard as ONE job (per MAX_JOB_PARTS), in one Redis round trip: BullMQ's
   * cost is per job, not per part. Its id is unique (batchJobId), so unlike enqueue() it adds a job
   * even for a part some other job still holds; the apply sees that part applied and changes
   * nothing. A single part gets its own job, as enqueue().
   */
  async enqueueMany(shardId: string, matchIds: readonly string[]): Promise<void> {
    const ids = [...new Set(matchIds)];
    if (ids.length === 0) return;
    if (ids.length === 1) return this.enqueue(shardId, ids[0] as string);
    const q = this.queue(shardId);
    if (ids.length <= MAX_JOB_PARTS) {
      await q.add('settle', { shardId, matchIds: ids }, { ...this.jobOptions, jobId: batchJobId() });
      return;
    }
    const jobs = [];
    for (let i = 0; i < ids.length; i += MAX_JOB_PARTS) {
      const data: SettlementJobData = { shardId, matchIds: ids.slice(i, i + MAX_JOB_PARTS) };
      jobs.push({ name: 'settle', data, opts: { ...this.jobOptions, jobId: batchJobId() } });
    }
    await q.addBulk(jobs);
  }

  /**
   * A job for parts a job deferred while others of it went through (a bucket in its cut-over): runs
   * after `delayMs`, and carries when their deferral began, so its time limit is not reset.
   */
  async enqueueDeferred(shardId: string, matchIds: readonly string[], deferredSince: number, delayMs: number): Promise<void> {
    const data: SettlementJobData = { shardId, matchIds: [...matchIds], deferredSince };
    await this.queue(shardId).add('settle', data, { ...this.jobOptions, jobId: batchJobId(), delay: delayMs });
  }

  /**
   * Makes sure a pending part has a live job: adds it when the queue lost it, replaces it when it
   * sits finished (failed after its tries, or completed before the part was reset). Returns true
   * when a job was (re)added.
   */
  async redrive(shardId: string, matchId: string): Promise<boolean> {
    const q = this.queue(shardId);
    const id = jobIdFor(matchId);
    const state = await q.getJobState(id);
    if (state === 'completed' || state === 'failed') {
      await q.remove(id);
    } else if (state !== 'unknown') {
      return false; // waiting, delayed, active, prioritized: it will run
    }
    await this.enqueue(shardId, matchId);
    return true;
  }

  /**
   * A job for a part another shard forwarded here (forwardJobIdFor): added unless one is waiting
   * or running, replaced when finished (a second forward of the same match).
   */
  async enqueueForwarded(shardId: string, matchId: string, fromShardId: string): Promise<void> {
    const q = this.queue(shardId);
    const id = forwardJobIdFor(fromShardId, matchId);
    const state = await q.getJobState(id);
    if (state === 'completed' || state === 'failed') await q.remove(id);
    else if (state !== 'unknown') return;
    await q.add('settle', { matchId, shardId }, { ...this.jobOptions, jobId: id });
  }

  /**
   * Failed jobs of a shard's queue, oldest failure first, from position `start`. Read from the job
   * hashes themselves: BullMQ's getFailed() rejects the whole page when one job's data is not JSON,
   * and such a job is exactly what a dead-letter listing must show. `scanned`: ids read from the
   * failed set, jobs that vanished meanwhile included (for paging on).
   */
  async failedJobs(shardId: string, start: number, count: number): Promise<{ scanned: number; jobs: RawFailedJob[] }> {
    const q = this.queue(shardId);
    const ids = await this.client.zrange(q.toKey('failed'), start, start + count - 1);
    if (ids.length === 0) return { scanned: 0, jobs: [] };
    const pipeline = this.client.pipeline();
    for (const id of ids) pipeline.hmget(q.toKey(id), 'data', 'failedReason', 'atm', 'finishedOn');
    const replies = (await pipeline.exec()) ?? [];
    const out: RawFailedJob[] = [];
    ids.forEach((jobId, i) => {
      const [err, fields] = replies[i] ?? [null, null];
      if (err) throw err;
      const [data, failedReason, atm, finishedOn] = (fields ?? []) as (string | null)[];
      // Removed between the two reads (expired, or re-driven): no longer a failed job.
      if (data === null && failedReason === null && finishedOn === null) return;
      out.push({ jobId, data: data ?? null, failedReason: failedReason ?? '', attemptsMade: Number(atm ?? 0) || 0, finishedOn: Number(finishedOn ?? 0) || 0 });
    });
    return { scanned: ids.length, jobs: out };
  }

  /**
   * Whether the shard's queue under the old key layout (legacyQueueOf) still holds jobs to run.
   * One EXISTS: the old keys all share the `{<prefix>}` tag, so one slot even on a cluster.
   */
  async hasLegacyJobs(shardId: string): Promise<boolean> {
    const { prefix, name } = legacyQueueOf(this.prefix, shardId);
    const base = `${prefix}:${name}`;
    return (await this.client.exists(`${base}:wait`, `${base}:paused`, `${base}:active`, `${base}:delayed`, `${base}:prioritized`)) > 0;
  }

  async close(): Promise<void> {
    const all = [...this.queues.values()];
    this.queues.clear();
    await Promise.all(all.map((q) => q.close().catch(() => undefined)));
  }
}

/**
 * BullMQ's Worker, except for a job whose stored data is not JSON (written into Redis by something
 * other than BullMQ). BullMQ cannot build such a job: it is activated, stalls, goes back to wait and
 * comes round again forever, its deferred failure never applied. Here it is built with data the
 * processor refuses, so it fails once, with its reason, like any other malformed job.
 */
export class SettlementQueueWorker extends Worker<SettlementJobData> {
  protected override createJob(json: JobJson, jobId: string): Job<SettlementJobData> {
    try {
      return super.createJob(json, jobId);
    } catch {
      return super.createJob({ ...json, data: JSON.stringify({ unreadable: String(json.data).slice(0, 200) }) }, jobId);
    }
  }
}
