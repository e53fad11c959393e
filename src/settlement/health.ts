import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { Queue } from 'bullmq';
import { Gauge, type Registry } from 'prom-client';
import type { AnyShardSet } from '../db/shard-set.js';
import { assertSchemaCurrent } from '../migrate/schema-version.js';
import { resolveConnection, type RedisConnection, type ResolvedConnection } from '../redis/connection.js';
import { queueNameFor } from './keys.js';

/** What a worker's health and backlog gauges look at: the shards it serves, and its Redis. */
export interface WorkerHealthOptions {
  shards: AnyShardSet;
  /** The shards whose queues the worker serves. */
  shardIds: readonly string[];
  /** The worker's Redis (a client of its own is made from options; a shared client is used as is). */
  connection: RedisConnection;
  /** The worker's key prefix (`SettlementWorker.prefix`). */
  prefix: string;
  /** Where the gauges go (the worker's registry, so one scrape serves both). */
  registry: Registry;
  /** Bound of each probe (Redis, each shard) before it counts as not answering. Default 2000 ms. */
  timeoutMs?: number;
}

/** One thing wrong, for the /readyz body. */
export interface ReadinessProblem {
  /** "redis", or "shard". */
  component: 'redis' | 'shard';
  shardId?: string;
  problem: string;
}

export interface Readiness {
  ready: boolean;
  /** Every served shard with its state: "ok" or what is wrong. */
  shards: Record<string, string>;
  redis: string;
  problems: ReadinessProblem[];
}

const JOB_STATES = ['waiting', 'active', 'delayed', 'failed'] as const;

/**
 * Readiness and backlog of a settlement worker, read when asked (a probe, a scrape), never on a
 * timer: `/readyz` is 200 when Redis and every served shard answer, the shards at this code's
 * schema; the gauges count each shard's queue jobs by state (a job carries one part or several)
 * and its pending and failed inbox parts.
 */
export class WorkerHealth {
  private readonly redis: ResolvedConnection;
  private readonly queues = new Map<string, Queue>();
  private readonly timeoutMs: number;

  constructor(private readonly options: WorkerHealthOptions) {
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.redis = resolveConnection(options.connection);
    this.redis.client.on('error', () => undefined); // a probe reports it
    const registers = [options.registry];
    const jobCounts = (id: string) => this.jobCounts(id);
    new Gauge({
      name: 'shardline_settlement_queue_jobs',
      help: 'Jobs in the shard settlement queue, by state (read at scrape time)',
      labelNames: ['shard', 'state'] as const,
      registers,
      async collect() {
        this.reset();
        const counts = await Promise.all(options.shardIds.map((id) => jobCounts(id).catch(() => null)));
        options.shardIds.forEach((shard, i) => {
          const c = counts[i];
          if (c) for (const state of JOB_STATES) this.set({ shard, state }, c[state] ?? 0);
        });
      },
    });
    const pending = options.shardIds.map((id) => ({ id, inbox: undefined as Promise<InboxBacklog | null> | undefined }));
    // Both inbox gauges come from one query per shard and scrape: the first gauge collected runs it.
    const inboxOf = (i: number): Promise<InboxBacklog | null> => {
      const p = pending[i] as (typeof pending)[number];
      p.inbox ??= this.inboxBacklog(p.id)
        .catch(() => null)
        .finally(() => setTimeout(() => (p.inbox = undefined), 0));
      return p.inbox;
    };
    // One gauge per figure of the inbox backlog, each labelled by shard.
    const inboxGauge = (name: string, help: string, figure: keyof InboxBacklog) =>
      new Gauge({
        name,
        help,
        labelNames: ['shard'] as const,
        registers,
        async collect() {
          this.reset();
          const rows = await Promise.all(options.shardIds.map((_, i) => inboxOf(i)));
          options.shardIds.forEach((shard, i) => {
            const r = rows[i];
            if (r) this.set({ shard }, r[figure]);
          });
        },
      });
    inboxGauge('shardline_settlement_inbox_pending', 'Parts in the shard inbox not yet applied (read at scrape time)', 'pending');
    // The dead letters: a failed part's job completes (a job carries several parts), so the queue's
    // failed jobs no longer count them.
    inboxGauge('shardline_settlement_inbox_failed', 'Parts in the shard inbox failed for good, dead letters until retried (read at scrape time)', 'failed');
    inboxGauge(
      'shardline_settlement_inbox_oldest_pending_seconds',
      'Age of the oldest part of the shard inbox not yet applied, 0 when none (read at scrape time)',
      'oldestSeconds',
    );
  }

  /** Redis and every served shard, probed now, all at once. */
  async readiness(): Promise<Readiness> {
    const problems: ReadinessProblem[] = [];
    const redis = await this.bounded('redis', async () => {
      const pong = await this.redis.client.ping();
      if (pong !== 'PONG') throw new Error(`PING answered ${JSON.stringify(pong)}`);
    });
    if (redis !== 'ok') problems.push({ component: 'redis', problem: redis });
    const shards: Record<string, string> = {};
    const states = await Promise.all(
      this.options.shardIds.map((id) => this.bounded(`shard ${id}`, () => assertSchemaCurrent(this.options.shards.pool(id), id))),
    );
    this.options.shardIds.forEach((id, i) => {
      const state = states[i] as string;
      shards[id] = state;
      if (state !== 'ok') problems.push({ component: 'shard', shardId: id, problem: state });
    });
    return { ready: problems.length === 0, shards, redis, problems };
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
    this.queues.clear();
    if (this.redis.owned) await this.redis.client.quit().catch(() => this.redis.client.disconnect());
  }

  private queue(shardId: string): Queue {
    let q = this.queues.get(shardId);
    if (!q) {
      q = new Queue(queueNameFor(shardId), { connection: this.redis.client, prefix: this.options.prefix });
      q.on('error', () => undefined);
      this.queues.set(shardId, q);
    }
    return q;
  }

  private jobCounts(shardId: string): Promise<Record<string, number>> {
    return within(this.queue(shardId).getJobCounts(...JOB_STATES), this.timeoutMs, 'queue counts');
  }

  private async inboxBacklog(shardId: string): Promise<InboxBacklog> {
    // The partial index of 0002 (status = 'pending') holds only the backlog: cheap while it is small.
    const r = await within(
      this.options.shards.pool(shardId).query<{ pending: number; oldest: number | null; failed: number }>(
        `SELECT count(*)::int AS pending, extract(epoch FROM now() - min(created_at))::float8 AS oldest,
                  (SELECT count(*)::int FROM settlement_inbox WHERE status = 'failed') AS failed
           FROM settlement_inbox WHERE status = 'pending'`,
      ),
      this.timeoutMs,
      'inbox backlog',
    );
    const row = r.rows[0];
    return { pending: row?.pending ?? 0, oldestSeconds: Math.max(0, row?.oldest ?? 0), failed: row?.failed ?? 0 };
  }

  /** "ok", or why `probe` failed or did not answer within the bound. Messages only: no URL reaches them. */
  private async bounded(what: string, probe: () => Promise<void>): Promise<string> {
    try {
      await within(probe(), this.timeoutMs, what);
      return 'ok';
    } catch (err) {
      const e = err as { code?: unknown; message?: unknown };
      return typeof e.message === 'string' && e.message !== '' ? e.message : String(e.code ?? err);
    }
  }
}

interface InboxBacklog {
  pending: number;
  oldestSeconds: number;
  failed: number;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  p.catch(() => undefined);
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The worker's HTTP port: `/metrics` (Prometheus), `/healthz` (200 while the process serves
 * requests at all) and, with `health`, `/readyz` (200 when ready, else 503; a JSON body says what
 * is wrong either way).
 */
export async function serveWorkerEndpoints(
  registry: Registry,
  port: number,
  health?: WorkerHealth,
  host?: string,
): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const json = (res: ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(`${JSON.stringify(body)}\n`);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    } else if (path === '/healthz') {
      json(res, 200, { alive: true });
    } else if (path === '/readyz' && health) {
      health.readiness().then(
        (r) => json(res, r.ready ? 200 : 503, r),
        (err: unknown) => json(res, 503, { ready: false, problems: [{ component: 'worker', problem: String(err) }] }),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return {
    server,
    port: typeof address === 'object' && address ? address.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
