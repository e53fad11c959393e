import type { Registry } from 'prom-client';
import { asPlainShardSet, type AppTables, type ShardSet, type ShardTables } from '../db/shard-set.js';
import { ValidationError } from '../errors/index.js';
import { defaultLogger, type Logger } from '../logging/logger.js';
import { connectionOptions } from '../redis/connection.js';
import { checkEffects, type SettlementEffects } from './effects.js';
import { resolvePrefix } from './keys.js';
import type { JobPolicy } from './queues.js';
import type { RedisConnection } from './types.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- by default any ShardSet, typed with the app's tables or not
export interface SettlementWorkerOptions<App extends AppTables = any> {
  /** Any ShardSet, typed with the app's tables or not (the effects' transactions are typed from it). */
  shards: ShardSet<App>;
  /**
   * Per game id, what its applied results do to the app's tables, inside the apply transaction
   * (docs/effects.md): `{ doudizhu: async (trx, applied) => { ... } }`.
   */
  effects?: SettlementEffects<ShardTables<App>>;
  /**
   * The app's migrations folder (docs/app-tables.md): a shard whose app schema is behind or ahead
   * of it is refused at start with AppSchemaVersionError, like an outdated shardline schema.
   */
  appMigrations?: string;
  connection: RedisConnection;
  /**
   * Shards whose queues this worker serves (default: every shard of the map, and any shard that
   * appears in refreshed routing later).
   */
  shardIds?: readonly string[];
  /** Key prefix, a plain name; default the map's `"prefix"`, else "shardline" (see SettlementClientOptions). */
  prefix?: string;
  /** Jobs held at once per shard queue (default 64); the batch size is capped by it. */
  concurrency?: number;
  /** Most parts applied per transaction (default 32, at most `concurrency`). */
  batchSize?: number;
  /** How long a lone part waits for company (default 2 ms). */
  lingerMs?: number;
  /** Transactions in flight per shard (default 2). */
  maxInFlightBatches?: number;
  /** Reconciler period (default 30 s); it also runs once per shard at start. */
  reconcileIntervalMs?: number;
  /** Pending parts older than this are checked against the queue (default 60 s). */
  reconcileAfterMs?: number;
  /** BullMQ job lock (default 30 s): after a crash, a job runs again once its lock expires. */
  lockDurationMs?: number;
  /** How often BullMQ looks for jobs whose lock expired (default 30 s). */
  stalledIntervalMs?: number;
  /** How often a shard unreachable at start is checked again (default 5 s). */
  shardRetryMs?: number;
  /** Refuse an evicting Redis and warn when it has no persistence (default true). */
  checkRedis?: boolean;
  jobs?: JobPolicy;
  /** Where the worker logs (default: pino to stdout). A pino logger fits as it is. */
  logger?: Logger;
  /** Where the metrics register (default: a registry of the worker's own). */
  registry?: Registry;
}

/** Every option with its default applied and checked: the worker reads nothing else. */
export interface ResolvedWorkerOptions {
  readonly shards: ShardSet;
  readonly connection: RedisConnection;
  /** Canonical ids, each a shard of the map. */
  readonly shardIds: readonly string[];
  /** No `shardIds` given: shards that appear in refreshed routing are served too. */
  readonly followRouting: boolean;
  readonly prefix: string;
  readonly concurrency: number;
  readonly batchSize: number;
  readonly lingerMs: number;
  readonly maxInFlightBatches: number;
  readonly reconcileIntervalMs: number;
  readonly reconcileAfterMs: number;
  readonly lockDurationMs: number;
  readonly stalledIntervalMs: number;
  readonly shardRetryMs: number;
  readonly checkRedis: boolean;
  readonly jobs: JobPolicy;
  readonly logger: Logger;
  readonly registry: Registry | undefined;
  readonly effects: SettlementEffects<unknown>;
  readonly appMigrations: string | undefined;
}

function count(field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) throw new ValidationError(field, `must be a positive integer, got ${String(value)}`);
  return value;
}

function millis(field: string, value: number | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < min) throw new ValidationError(field, `must be a number of milliseconds >= ${min}, got ${String(value)}`);
  return value;
}

/** Applies the defaults once and refuses what cannot work, before the worker opens anything. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any app's options
export function resolveWorkerOptions(options: SettlementWorkerOptions<any>): ResolvedWorkerOptions {
  const shards = asPlainShardSet(options.shards);
  connectionOptions(options.connection); // an ioredis keyPrefix is refused here, not at start()
  const concurrency = count('concurrency', options.concurrency, 64);
  return {
    shards,
    connection: options.connection,
    shardIds: (options.shardIds ?? shards.shards.map((s) => s.id)).map((id) => shards.router.shard(id).id),
    followRouting: options.shardIds === undefined,
    prefix: resolvePrefix(options.prefix, shards.map),
    concurrency,
    // More parts per transaction than jobs held at once could never fill.
    batchSize: Math.min(count('batchSize', options.batchSize, 32), concurrency),
    lingerMs: millis('lingerMs', options.lingerMs, 2),
    maxInFlightBatches: count('maxInFlightBatches', options.maxInFlightBatches, 2),
    // Timers of 0 ms would spin: at least 1 ms.
    reconcileIntervalMs: millis('reconcileIntervalMs', options.reconcileIntervalMs, 30_000, 1),
    reconcileAfterMs: millis('reconcileAfterMs', options.reconcileAfterMs, 60_000),
    lockDurationMs: millis('lockDurationMs', options.lockDurationMs, 30_000, 1),
    stalledIntervalMs: millis('stalledIntervalMs', options.stalledIntervalMs, 30_000, 1),
    shardRetryMs: millis('shardRetryMs', options.shardRetryMs, 5000, 1),
    checkRedis: options.checkRedis !== false,
    jobs: options.jobs ?? {},
    logger: options.logger ?? defaultLogger('shardline-settlement-worker'),
    registry: options.registry,
    effects: options.effects === undefined ? {} : checkEffects(options.effects),
    appMigrations: options.appMigrations,
  };
}
