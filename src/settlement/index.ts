export { SettlementClient } from './client.js';
export { MAX_SUBMIT_MATCHES } from './client.js';
export type { SettlementClientOptions, SubmitSettlementResult, WaitForOptions } from './client.js';
export { SettlementWorker } from './worker.js';
export { loadEffectsModule } from './effects.js';
export type { AppliedResult, EffectsFor, SettlementEffect, SettlementEffects } from './effects.js';
export type { BatchCommitted, SettlementWorkerEvents, SettlementWorkerOptions } from './worker.js';
export { SettlementMetrics, serveMetrics } from './metrics.js';
export { WorkerHealth, serveWorkerEndpoints, type Readiness, type ReadinessProblem, type WorkerHealthOptions } from './health.js';
export type { JobPolicy } from './queues.js';
export type { ReconcileOptions } from './reconciler.js';
// The forward sweep of a bucket move (docs/settlement.md, "Moves"); the mover calls it after its commit point.
export { forwardMovedParts } from './forwarding.js';
export type { ForwardSweepOptions, ForwardSweepReport } from './forwarding.js';
// Which queue and job hold a match part (for operators' queue tools). Redis inspection and match
// normalization are internals: tests import them from their own modules.
export { DEFAULT_PREFIX as DEFAULT_SETTLEMENT_PREFIX, homeShardOf, jobIdFor, queueNameFor } from './keys.js';
export { redisOptionsFromUrl } from './redis.js';
export { DEFAULT_LIMITS as DEFAULT_SETTLEMENT_LIMITS } from './types.js';
export type {
  DataOf,
  DataSchema,
  DeadJob,
  FailedPart,
  GameSettings,
  JsonObject,
  JsonValue,
  FailedReport,
  FailedSettlement,
  Outcome,
  PartState,
  ReconcileReport,
  RedisConnection,
  RetryReport,
  SettlementInput,
  SettlementLimits,
  SettlementResultInput,
  SettlementStatus,
  ShardSettlementStatus,
  UnreachableShard,
} from './types.js';
export { OUTCOMES, PART_STATES } from '../db/schema.js';
export type { SettlementInboxClaimsTable, SettlementInboxTable } from '../db/schema.js';
export type { LogFn, Logger } from '../logging/logger.js';
