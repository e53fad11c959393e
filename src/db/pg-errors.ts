import { BucketMovedError, BucketMovingError, ShardQueryError, ShardUnavailableError, ShardlineError } from '../errors/index.js';

/**
 * The one place where driver and Postgres errors become shardline errors. SQLSTATE classes:
 * https://www.postgresql.org/docs/current/errcodes-appendix.html
 */

interface PgLikeError {
  code?: string;
  message?: string;
  constraint?: string;
  detail?: string;
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE', 'EAI_AGAIN']);

/** SQLSTATEs after which the same statement may succeed if simply tried again. */
const TRANSIENT_SQLSTATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
  '57014', // query_canceled (statement_timeout)
]);

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as PgLikeError).code : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A refusal by a shard's bucket fence (migration 0009), as read from the raw pg error. */
export interface BucketRefusal {
  /** `moved`: the shard does not own the bucket; `moving`: the bucket is frozen in a cut-over (retry shortly). */
  kind: 'moved' | 'moving';
  bucket: number;
  movedTo: string | null;
  epoch: number | null;
}

/**
 * The fence's refusal in a raw pg error (SQLSTATE 23514 with constraint shardline_owned_buckets or
 * shardline_frozen_buckets, DETAIL as JSON), else null: for workers that hold raw clients.
 */
export function bucketRefusalOf(err: unknown): BucketRefusal | null {
  if (typeof err !== 'object' || err === null) return null;
  const { code, constraint, detail } = err as PgLikeError;
  if (code !== '23514' || (constraint !== 'shardline_owned_buckets' && constraint !== 'shardline_frozen_buckets')) return null;
  let d: { bucket?: unknown; movedTo?: unknown; epoch?: unknown } = {};
  try {
    d = JSON.parse(detail ?? '{}') as typeof d;
  } catch {
    // A DETAIL that is not JSON still names a refusal; its fields stay unknown.
  }
  return {
    kind: constraint === 'shardline_frozen_buckets' ? 'moving' : 'moved',
    bucket: typeof d.bucket === 'number' ? d.bucket : -1,
    movedTo: typeof d.movedTo === 'string' ? d.movedTo : null,
    epoch: typeof d.epoch === 'number' ? d.epoch : null,
  };
}

/** True for a fence refusal of a bucket this shard does not own (not a frozen one): refresh routing, retry on the owner. */
export function isBucketMoved(err: unknown): boolean {
  if (err instanceof BucketMovedError) return true;
  return bucketRefusalOf(err)?.kind === 'moved';
}

/** True for a fence refusal of either kind, raw or mapped. */
export function isBucketRefusal(err: unknown): boolean {
  return err instanceof BucketMovedError || err instanceof BucketMovingError || bucketRefusalOf(err) !== null;
}

/** A fence refusal as BucketMovedError / BucketMovingError; anything else comes back unchanged. */
export function toBucketError(err: unknown, shardId: string, playerIds?: readonly string[]): unknown {
  const r = bucketRefusalOf(err);
  if (r === null) return err;
  const opts = { cause: err, ...(playerIds ? { playerIds } : {}) };
  return r.kind === 'moving' ? new BucketMovingError(shardId, r.bucket, opts) : new BucketMovedError(shardId, r.bucket, r.movedTo, r.epoch, opts);
}

/** True for failures where retrying later can help: lost connections, timeouts, shutdowns, conflicts. */
export function isTransientDbError(err: unknown): boolean {
  if (err instanceof ShardUnavailableError || err instanceof ShardQueryError) return err.transient;
  if (err instanceof BucketMovingError) return true;
  if (bucketRefusalOf(err)?.kind === 'moving') return true;
  if (err instanceof ShardlineError) return false;
  const code = codeOf(err);
  if (code && (CONNECTION_CODES.has(code) || TRANSIENT_SQLSTATES.has(code) || code.startsWith('08'))) return true;
  const msg = messageOf(err);
  return /Connection terminated|timeout expired|connection timeout|Client has encountered a connection error|the database system is (starting up|shutting down)/i.test(
    msg,
  );
}

/** True when the error means the server could not be reached or the session was lost. */
export function isConnectionError(err: unknown): boolean {
  const code = codeOf(err);
  if (
    code &&
    (CONNECTION_CODES.has(code) ||
      code.startsWith('08') ||
      code === '57P01' ||
      code === '57P03' ||
      // too_many_connections is raised while connecting: the shard cannot take this client now.
      code === '53300' ||
      code === '3D000' ||
      code === '28P01' ||
      code === '28000')
  )
    return true;
  return /Connection terminated|timeout expired|connection timeout|Client has encountered a connection error/i.test(messageOf(err));
}

/** A hint for the operator, by failure. */
function hintFor(err: unknown, database: string): string | undefined {
  const code = codeOf(err);
  if (code === '3D000') return `create it with "createdb ${database}", or run "shardline migrate latest --create-databases" for local development`;
  if (code === '28P01' || code === '28000') return 'check the user and password in the environment variable the map names';
  if (code === 'ECONNREFUSED') return 'is PostgreSQL running on that host and port?';
  if (code === '53300') return "the server has no free connection slot: lower the shards' pool sizes (pool.max) or raise max_connections";
  if (/timeout/i.test(messageOf(err))) return 'the server did not answer in time; check the host, port and firewall';
  return undefined;
}

/** Wraps a connection-level failure as ShardUnavailableError; returns other errors unchanged. */
export function toShardError(err: unknown, shardId: string, target: string, playerIds?: readonly string[]): unknown {
  if (err instanceof ShardlineError || !isConnectionError(err)) return err;
  const database = target.split('/').pop() ?? '';
  const hint = hintFor(err, database);
  const code = codeOf(err);
  const permanent = code === '3D000' || code === '28P01' || code === '28000';
  return new ShardUnavailableError(shardId, target, messageOf(err) || code || 'connection failed', {
    cause: err,
    transient: !permanent,
    ...(hint ? { hint } : {}),
    ...(playerIds ? { playerIds } : {}),
  });
}

/**
 * For the app's own statements (ShardSet.transaction, scatter): a connection failure becomes
 * ShardUnavailableError as everywhere; an error the database raised (it has a SQLSTATE) or a
 * transient driver failure becomes ShardQueryError carrying `transient`; anything else (the app's
 * own errors, shardline's) comes back unchanged, so the app catches what it threw.
 */
export function toQueryError(err: unknown, shardId: string, target: string, playerIds?: readonly string[]): unknown {
  const fenced = toBucketError(err, shardId, playerIds);
  if (fenced !== err) return fenced;
  const e = toShardError(err, shardId, target, playerIds);
  if (e !== err || err instanceof ShardlineError) return e;
  const code = codeOf(err);
  const state = typeof code === 'string' && SQLSTATE.test(code) ? code : undefined;
  const transient = isTransientDbError(err);
  if (state === undefined && !transient) return err;
  return new ShardQueryError(shardId, messageOf(err), { cause: err, transient, ...(state ? { sqlState: state } : {}), ...(playerIds ? { playerIds } : {}) });
}

// SQLSTATE classes start with a digit, or are HV (foreign data), P0 (PL/pgSQL) or XX (internal): not EPERM.
const SQLSTATE = /^(?:[0-9][0-9A-Z]|HV|P0|XX)[0-9A-Z]{3}$/;

export function sqlState(err: unknown): string | undefined {
  return codeOf(err);
}
