// One Redis or a Cluster: every settlement call works on either (each queue is one hash slot).
import type { RedisClient as Redis } from '../redis/connection.js';
import { SettlementTimeoutError, ValidationError } from '../errors/index.js';
import { asPlainShardSet, type AnyShardSet, type ShardSet } from '../db/shard-set.js';
import { defaultLogger, type Logger } from '../logging/logger.js';
import { SubmitBatches, type SubmitBatchOptions } from './inbox-batch.js';
import { listDeadJobs } from './dead-jobs.js';
import { listFailedParts, resetFailed } from './inbox-store.js';
import { jobIdFor, resolvePrefix } from './keys.js';
import { SettlementQueues, type JobPolicy } from './queues.js';
import { reconcileShard } from './reconciler.js';
import { resolveConnection } from '../redis/connection.js';
import { isFinal, readStatus } from './status.js';
import { submitFollowingMoves } from './submit.js';
import {
  DEFAULT_LIMITS,
  type DeadJob,
  type GameSettings,
  type FailedReport,
  type FailedSettlement,
  type ReconcileReport,
  type RedisConnection,
  type RetryReport,
  type SettlementInput,
  type SettlementLimits,
  type SettlementStatus,
  type UnreachableShard,
} from './types.js';
import { normalizeMatch, type GameTable } from './validate.js';

export interface SettlementClientOptions {
  /** Any ShardSet, typed with the app's tables or not. */
  shards: AnyShardSet;
  /** ioredis instance (kept open on close) or options (connected and closed here). Never a keyPrefix. */
  connection: RedisConnection;
  /**
   * Key prefix, a plain name (no braces, no colons): shard S's queue keys are
   * `<prefix>:{settle-S}:...`, one Redis Cluster hash tag per queue. Default: the map's
   * `"prefix"`, else "shardline". Workers must use the same one.
   */
  prefix?: string;
  limits?: Partial<SettlementLimits>;
  /**
   * Per game id, the schema its results' `data` must pass (docs/effects.md), e.g.
   * `{ doudizhu: { data: z.object({ coins: z.number().int() }) } }`. A game not listed here, or
   * listed without `data`, refuses results that carry data.
   */
  games?: Readonly<Record<string, GameSettings<unknown>>>;
  jobs?: JobPolicy;
  logger?: Logger;
  /** How long submit waits for Redis before leaving the enqueue to the reconciler. Default 5000 ms. */
  enqueueTimeoutMs?: number;
  /** Group commit of concurrent submissions per shard (default: up to 64 per statement, 1 in flight). */
  batching?: SubmitBatchOptions;
}

export interface WaitForOptions {
  /** How long to wait for the final status before rejecting with SettlementTimeoutError. */
  timeoutMs: number;
  /** How often to read the status meanwhile (default 100 ms). */
  intervalMs?: number;
}

/** One match's answer in submitSettlements, at its input's index. */
export type SubmitSettlementResult = { ok: true; status: SettlementStatus } | { ok: false; error: Error };

/** Most matches one submitSettlements call takes. */
export const MAX_SUBMIT_MATCHES = 1000;

const INT4_MIN = -(2 ** 31);
const INT4_MAX = 2 ** 31 - 1;

/** Submits game results and inspects, lists and re-drives their settlement. */
export class SettlementClient {
  readonly shards: ShardSet;
  readonly prefix: string;
  readonly limits: Readonly<SettlementLimits>;
  private readonly redis: Redis;
  private readonly ownsRedis: boolean;
  private readonly queues: SettlementQueues;
  private readonly batches: SubmitBatches;
  private readonly logger: Logger;
  private readonly enqueueTimeoutMs: number;
  private readonly games: GameTable;

  constructor(options: SettlementClientOptions) {
    this.games = checkGames(options.games);
    this.shards = asPlainShardSet(options.shards);
    this.prefix = resolvePrefix(options.prefix, options.shards.map);
    this.limits = Object.freeze(checkLimits({ ...DEFAULT_LIMITS, ...options.limits }));
    this.logger = options.logger ?? defaultLogger('shardline-settlement');
    this.enqueueTimeoutMs = options.enqueueTimeoutMs ?? 5000;
    const { client, owned } = resolveConnection(options.connection);
    this.redis = client;
    this.ownsRedis = owned;
    this.redis.on('error', (err: Error) => this.logger.debug?.({ err }, 'redis connection error'));
    this.queues = new SettlementQueues(this.redis, this.prefix, options.jobs);
    this.batches = new SubmitBatches(this.shards, this.queues, options.batching);
  }

  /**
   * Records the match durably on every shard it touches, then enqueues one job per shard. Resolves
   * with the status once every part is recorded; the same match again (same content) resolves with
   * its current status and `duplicate: true`; other content under the same matchId throws
   * SettlementConflictError; invalid input throws ValidationError and leaves no trace.
   */
  async submitSettlement(input: SettlementInput): Promise<SettlementStatus> {
    // Each try routes by the routing current at its start: a refusal for a moved bucket refreshes it.
    return submitFollowingMoves({ shards: this.shards, batches: this.batches, logger: this.logger, enqueueTimeoutMs: this.enqueueTimeoutMs }, (router) =>
      normalizeMatch(input, router, this.limits, this.games),
    );
  }

  /**
   * Several matches at once (a game server ending many tables): each is validated, recorded and
   * answered on its own, exactly as submitSettlement would (a bad one is refused without refusing
   * the rest), while the batch shares each step's statement on each shard. Resolves to an array
   * aligned with `matches`: `{ ok: true, status }`, or `{ ok: false, error }` with the error
   * submitSettlement would have thrown. Only a `matches` that is not an array of at most
   * MAX_SUBMIT_MATCHES throws.
   */
  async submitSettlements(matches: readonly SettlementInput[]): Promise<SubmitSettlementResult[]> {
    if (!Array.isArray(matches)) throw new ValidationError('matches', 'must be an array of matches');
    if (matches.length > MAX_SUBMIT_MATCHES) throw new ValidationError('matches', `must hold at most ${MAX_SUBMIT_MATCHES} matches`);
    const ctx = { shards: this.shards, batches: this.batches.together(), logger: this.logger, enqueueTimeoutMs: this.enqueueTimeoutMs };
    const settled = await Promise.allSettled(
      matches.map((input: SettlementInput) => submitFollowingMoves(ctx, (router) => normalizeMatch(input, router, this.limits, this.games))),
    );
    return settled.map((r) =>
      r.status === 'fulfilled' ? { ok: true, status: r.value } : { ok: false, error: r.reason instanceof Error ? r.reason : new Error(String(r.reason)) },
    );
  }

  /**
   * Pending / applied / failed per shard. Null when no shard knows the match (never submitted, or
   * its submit recorded nothing): check for it before reading `state`.
   */
  async settlementStatus(matchId: string): Promise<SettlementStatus | null> {
    checkMatchId(matchId);
    return readStatus(this.shards, this.batches, matchId);
  }

  /**
   * Resolves with the match's final status, once every part is applied or failed (so `state` is
   * `applied` or `failed`: check it). Polls every `intervalMs` (default 100); rejects with
   * SettlementTimeoutError, carrying the last status read (null if no shard knew the match), when
   * `timeoutMs` passes first. A shard that cannot be asked keeps the match from being final.
   */
  async waitFor(matchId: string, options: WaitForOptions): Promise<SettlementStatus> {
    checkMatchId(matchId);
    const { timeoutMs, intervalMs = 100 } = options;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0) throw new ValidationError('timeoutMs', 'must be a non-negative integer of milliseconds');
    if (!Number.isSafeInteger(intervalMs) || intervalMs < 1) throw new ValidationError('intervalMs', 'must be a positive integer of milliseconds');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const last = await readStatus(this.shards, this.batches, matchId);
      if (last && isFinal(last)) return last;
      const left = deadline - Date.now();
      if (left <= 0) throw new SettlementTimeoutError(matchId, timeoutMs, last);
      await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, left)));
    }
  }

  /**
   * The dead letters, oldest first, at most `limit` (default 1000) per shard: parts that can never
   * apply as they stand (`source: 'inbox'`, with the reason; `retry` re-drives them), and failed
   * jobs of a shard's queue that no inbox row of that shard accounts for (`source: 'queue'`, with
   * BullMQ's reason and the job id; malformed data, the wrong shard, no such part): nothing can
   * re-drive those. A shard whose queue could not be read is in `unreachable`, its inbox rows still
   * listed.
   */
  async listFailed(options: { shardIds?: readonly string[]; limit?: number; matchId?: string } = {}): Promise<FailedReport> {
    const limit = options.limit ?? 1000;
    const report: FailedReport = { failed: [], unreachable: [] };
    await this.eachShard(options.shardIds, report.unreachable, async (shardId) => {
      const rows = await this.shards.withShard(shardId, (db) => listFailedParts(db, limit, options.matchId));
      const parts: FailedSettlement[] = rows.map((r) => ({ source: 'inbox', ...r, shardId, jobId: jobIdFor(r.matchId) }));
      const dead = await this.deadJobs(shardId, limit, options.matchId, report.unreachable);
      report.failed.push(...[...parts, ...dead].sort(byFailedAt).slice(0, limit));
    });
    report.failed.sort(byFailedAt);
    return report;
  }

  /**
   * Puts failed parts (of one match, or all) back to pending and enqueues them again. Dead jobs
   * without an inbox row (see listFailed) are not touched: they come back in `notRetryable` (at
   * most 1000 per shard), so the caller knows retrying did nothing for them.
   */
  async retry(target: string | { all: true }): Promise<RetryReport> {
    const matchId = typeof target === 'string' ? checkMatchId(target) : null;
    const report: RetryReport = { parts: [], notRetryable: [], unreachable: [] };
    await this.eachShard(undefined, report.unreachable, async (shardId) => {
      const reset = await this.shards.withShard(shardId, (db) => resetFailed(db, matchId));
      for (const m of reset) {
        await this.queues.redrive(shardId, m);
        report.parts.push({ matchId: m, shardId });
      }
      report.notRetryable.push(...(await this.deadJobs(shardId, 1000, matchId ?? undefined, report.unreachable)));
    });
    return report;
  }

  /** Re-enqueues pending parts the queues no longer hold (what the worker also does periodically). */
  async reconcile(options: { olderThanMs?: number; limit?: number; shardIds?: readonly string[] } = {}): Promise<ReconcileReport> {
    const report: ReconcileReport = { checked: 0, requeued: [], unreachable: [] };
    await this.eachShard(options.shardIds, report.unreachable, async (shardId) => {
      const r = await reconcileShard(this.shards, this.queues, shardId, options);
      report.checked += r.checked;
      report.requeued.push(...r.requeued.map((matchId) => ({ matchId, shardId })));
    });
    return report;
  }

  async close(): Promise<void> {
    await this.queues.close();
    if (this.ownsRedis) await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /** A queue that cannot be read is reported, not fatal: the shard's inbox rows still count. */
  private async deadJobs(shardId: string, limit: number, matchId: string | undefined, unreachable: UnreachableShard[]): Promise<DeadJob[]> {
    try {
      return await listDeadJobs(this.shards, this.queues, shardId, { limit, matchId });
    } catch (err) {
      unreachable.push({ shardId, reason: `failed jobs of its queue could not be read: ${err instanceof Error ? err.message : String(err)}` });
      return [];
    }
  }

  private async eachShard(ids: readonly string[] | undefined, unreachable: UnreachableShard[], fn: (shardId: string) => Promise<void>): Promise<void> {
    const shardIds = ids ?? this.shards.shards.map((s) => s.id);
    const results = await Promise.allSettled(shardIds.map((id) => fn(this.shards.router.shard(id).id)));
    results.forEach((r, i) => {
      if (r.status === 'rejected')
        unreachable.push({ shardId: shardIds[i] as string, reason: r.reason instanceof Error ? r.reason.message : String(r.reason) });
    });
  }
}

const byFailedAt = (a: FailedSettlement, b: FailedSettlement) => a.failedAt.getTime() - b.failedAt.getTime();

function checkMatchId(matchId: unknown): string {
  if (typeof matchId !== 'string' || matchId.length === 0 || matchId.length > 128)
    throw new ValidationError('matchId', 'must be a non-empty string of at most 128 characters');
  return matchId;
}

function checkGames(games: SettlementClientOptions['games']): GameTable {
  if (games === undefined) return {};
  if (typeof games !== 'object' || games === null || Array.isArray(games)) throw new ValidationError('games', 'must be an object of game ids');
  const out: Record<string, GameSettings<unknown>> = {};
  for (const [gameId, settings] of Object.entries(games)) {
    if (typeof settings !== 'object' || settings === null) throw new ValidationError(`games.${gameId}`, 'must be an object such as { data: schema }');
    for (const key of Object.keys(settings)) if (key !== 'data') throw new ValidationError(`games.${gameId}.${key}`, 'unknown field');
    const data: unknown = settings.data;
    if (data !== undefined && (typeof data !== 'object' || data === null || typeof (data as { parse?: unknown }).parse !== 'function'))
      throw new ValidationError(`games.${gameId}.data`, 'must be a schema with a parse(value) method (a zod schema fits)');
    out[gameId] = settings;
  }
  return Object.freeze(out);
}

function checkLimits(l: SettlementLimits): SettlementLimits {
  const int = (n: number) => Number.isSafeInteger(n);
  if (!int(l.maxResults) || l.maxResults < 1) throw new ValidationError('limits.maxResults', 'must be a positive integer');
  if (!int(l.minScoreDelta) || l.minScoreDelta < INT4_MIN) throw new ValidationError('limits.minScoreDelta', `must be an integer >= ${INT4_MIN}`);
  if (!int(l.maxScoreDelta) || l.maxScoreDelta > INT4_MAX) throw new ValidationError('limits.maxScoreDelta', `must be an integer <= ${INT4_MAX}`);
  if (l.minScoreDelta > l.maxScoreDelta) throw new ValidationError('limits.minScoreDelta', 'must not exceed maxScoreDelta');
  if (!int(l.maxPayloadBytes) || l.maxPayloadBytes < 256) throw new ValidationError('limits.maxPayloadBytes', 'must be an integer >= 256');
  if (!int(l.maxClockSkewMs) || l.maxClockSkewMs < 0) throw new ValidationError('limits.maxClockSkewMs', 'must be a non-negative integer');
  return l;
}
