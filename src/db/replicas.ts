import { Kysely, PostgresDialect } from 'kysely';
import type pg from 'pg';
import { SchemaVersionError, ShardIdentityError, ValidationError } from '../errors/index.js';
import { assertSchemaCurrent } from '../migrate/schema-version.js';
import { showValue } from '../errors/show-value.js';
import type { ReplicaSpec, ShardSpec } from '../shardmap/index.js';
import { openPool, type ConnectionOptions } from './connection.js';
import { readIdentity } from './identity.js';
import { isConnectionError, sqlState } from './pg-errors.js';

/** Where a read goes: the shard's primary, or one of its replicas while it is fresh enough. */
export type ReadFrom = 'primary' | 'replica';

/** What a read call accepts (getPlayer, getStats, match history, leaderboards, scatter, readDb). */
export interface ReadOptions {
  /** Default: the ShardSet's `readFrom`, else 'primary'. */
  readFrom?: ReadFrom;
  /**
   * With `readFrom: 'replica'`: the most the answer may lag behind the primary, in ms. A replica
   * is used only while its measured replay lag (plus the age of that measurement) is within it;
   * otherwise, or when it is down, the read goes to the primary. Default: the ShardSet's
   * `maxLagMs`, else 1000. (0 is accepted and means, in effect, the primary: no measurement is instant.)
   */
  maxLagMs?: number;
}

/** The ShardSet options behind replica reads. */
export interface ReplicaReadOptions {
  /** Default of every read call's `readFrom` (default 'primary'). Writes and transactions never use a replica. */
  readFrom?: ReadFrom;
  /** Default of every read call's `maxLagMs` (default 1000). */
  maxLagMs?: number;
  /** How long one lag measurement of a replica is reused before the next (default 250 ms). */
  replicaLagCacheMs?: number;
}

export const DEFAULT_MAX_LAG_MS = 1000;
export const DEFAULT_LAG_CACHE_MS = 250;
const READ_FROM: readonly ReadFrom[] = ['primary', 'replica'];
const MAX_LAG_LIMIT = 86_400_000;

/** `readFrom` and `maxLagMs` of a call, checked, with the defaults filled in. */
export function resolveReadOptions(options: ReadOptions | undefined, defaults: ReplicaReadOptions = {}, field = 'options'): Required<ReadOptions> {
  const readFrom = options?.readFrom ?? defaults.readFrom ?? 'primary';
  const maxLagMs = options?.maxLagMs ?? defaults.maxLagMs ?? DEFAULT_MAX_LAG_MS;
  if (!READ_FROM.includes(readFrom)) throw new ValidationError(`${field}.readFrom`, `must be 'primary' or 'replica', got ${showValue(readFrom)}`);
  if (typeof maxLagMs !== 'number' || !Number.isInteger(maxLagMs) || maxLagMs < 0 || maxLagMs > MAX_LAG_LIMIT) {
    throw new ValidationError(`${field}.maxLagMs`, `must be an integer from 0 to ${MAX_LAG_LIMIT}, got ${showValue(maxLagMs)}`);
  }
  return { readFrom, maxLagMs };
}

/** Checks the ShardSet's replica options once, at construction. */
export function validateReplicaReadOptions(options: ReplicaReadOptions): void {
  resolveReadOptions(options, {}, 'options');
  const cache = options.replicaLagCacheMs;
  if (cache !== undefined && (typeof cache !== 'number' || !Number.isInteger(cache) || cache < 0 || cache > 60_000)) {
    throw new ValidationError('options.replicaLagCacheMs', `must be an integer from 0 to 60000, got ${showValue(cache)}`);
  }
}

type Queryable = Pick<pg.ClientBase, 'query'>;

/** One measurement of a replica. */
export interface ReplicaLag {
  /** It answered. */
  reachable: boolean;
  /** It is a standby in recovery (a promoted or unrelated server is never read from). */
  standby: boolean;
  /**
   * An upper bound, in ms, on how far its data is behind the primary's at the time of the
   * measurement; null when unknown (unreachable, not a standby, nothing replayed yet).
   */
  lagMs: number | null;
  /** WAL bytes the primary has written that it has not replayed; null when the primary was not asked or is down. */
  bytesBehind: number | null;
  /** Replay paused (`pg_wal_replay_pause()`). */
  paused: boolean;
  /** Why it cannot serve reads, when it cannot. */
  problem?: string;
  /** performance.now() at which `lagMs` held (it grows by 1 ms per ms from then). */
  asOf?: number;
}

interface ReplicaRow {
  standby: boolean;
  lsn: string | null;
  ts_lag_ms: number | null;
  paused: boolean | null;
}

async function replicaPosition(replica: Queryable): Promise<ReplicaRow> {
  // clock_timestamp(), not now(): the statement may wait for a connection, and now() is its start.
  const r = await replica.query<ReplicaRow>(
    `SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS lsn,
            (extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::float8 AS ts_lag_ms,
            CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS paused`,
  );
  const row = r.rows[0];
  if (!row) throw new Error('the replica returned no row');
  return row;
}

/** "16/B374D848" as a number of bytes (exact up to 2^53: 8 PiB of WAL). */
export function lsnBytes(lsn: string): number {
  const [hi, lo] = lsn.split('/');
  return parseInt(hi ?? '0', 16) * 2 ** 32 + parseInt(lo ?? '0', 16);
}

/**
 * How far `replica` is behind `primary`, cheaply: one query on the replica, and when that does
 * not settle it, one on the primary and one more on the replica.
 *
 * `now() - pg_last_xact_replay_timestamp()` bounds the lag from above (the newest transaction the
 * replica lacks committed after the last one it replayed), and is exact while the primary is busy.
 * On an idle primary it only grows, so when it is over `goodEnoughMs` the replica's replay position
 * is compared with the primary's WAL position read after it: a replica that has replayed everything
 * the primary had written is not behind at all, however old its last transaction. The timestamps
 * come from two servers' clocks; a skew between them shows up in the first bound only.
 */
export async function measureLag(replica: Queryable, primary: Queryable | undefined, goodEnoughMs = 0): Promise<ReplicaLag> {
  const t0 = performance.now();
  const first = await replicaPosition(replica);
  const paused = first.paused === true;
  if (!first.standby)
    return { reachable: true, standby: false, lagMs: null, bytesBehind: null, paused, problem: 'not a standby (not in recovery): never read from' };
  const tsLag = first.ts_lag_ms === null ? null : Math.max(0, first.ts_lag_ms);
  if (tsLag !== null && tsLag <= goodEnoughMs) return { reachable: true, standby: true, lagMs: tsLag, bytesBehind: null, paused, asOf: t0 };
  if (!primary) return { reachable: true, standby: true, lagMs: tsLag, bytesBehind: null, paused, asOf: t0 };
  // Caught up with the position read next means caught up as of the moment it was asked for.
  const t1 = performance.now();
  let primaryLsn: string | null;
  try {
    const p = await primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    primaryLsn = p.rows[0]?.lsn ?? null;
  } catch {
    primaryLsn = null; // the primary is down: the timestamp bound is all there is
  }
  if (primaryLsn === null || first.lsn === null) return { reachable: true, standby: true, lagMs: tsLag, bytesBehind: null, paused, asOf: t0 };
  const target = lsnBytes(primaryLsn);
  let replayed = lsnBytes(first.lsn);
  if (replayed < target) {
    // Read after the primary's position: replayed at least that far means caught up as of then.
    const second = await replicaPosition(replica);
    if (second.lsn !== null) replayed = lsnBytes(second.lsn);
  }
  const bytesBehind = Math.max(0, target - replayed);
  return { reachable: true, standby: true, lagMs: bytesBehind === 0 ? 0 : tsLag, bytesBehind, paused, asOf: bytesBehind === 0 ? t1 : t0 };
}

/** A replica query failure that the primary can answer instead (an outage, a recovery conflict). */
export function isReplicaFallback(err: unknown): boolean {
  const code = sqlState(err);
  // 40001 on a standby: "canceling statement due to conflict with recovery".
  return isConnectionError(err) || code === '40001' || code === '57014';
}

interface Sample {
  /** performance.now() from which the measurement's bound holds, growing 1 ms per ms. */
  at: number;
  lag: ReplicaLag;
}

interface ReplicaHandle<DB> {
  readonly spec: ReplicaSpec;
  readonly pool: pg.Pool;
  readonly db: Kysely<DB>;
  verified?: Promise<void>;
  /** Its schema was this code's once: a physical copy only moves forward with its primary. */
  schemaCurrent?: boolean;
  sample?: Sample;
  measuring?: Promise<Sample>;
}

/** A replica chosen for one read. */
export interface PickedReplica<DB> {
  readonly spec: ReplicaSpec;
  readonly db: Kysely<DB>;
  /** After a failed query on it: counts it as down until it is measured again, so the next reads go to the primary. */
  markDown(err: unknown): void;
}

export interface ReplicaReadsSetup extends ConnectionOptions, ReplicaReadOptions {
  verifyIdentity?: boolean;
  verifySchema?: boolean;
}

/**
 * The replicas of a ShardSet's shards: a pool per replica opened on first use (like the primary's),
 * its identity checked once, its lag measured at most every `replicaLagCacheMs` and shared by every
 * read. A read waits for a measurement only when there is none yet; after that it decides on the
 * last one (its bound plus its age, which stays sound) while the next is taken in the background.
 */
export class ReplicaReads<DB> {
  private readonly handles = new Map<string, ReplicaHandle<DB>>();
  private readonly cacheMs: number;
  private readonly turn = new Map<string, number>();
  private closed = false;

  constructor(
    private readonly options: ReplicaReadsSetup,
    private readonly primaryPool: (shardId: string) => pg.Pool,
  ) {
    validateReplicaReadOptions(options);
    this.cacheMs = options.replicaLagCacheMs ?? DEFAULT_LAG_CACHE_MS;
  }

  get defaults(): ReplicaReadOptions {
    return this.options;
  }

  /**
   * A replica of `shard` fresh enough for `options`, or null: the read goes to the primary. Throws
   * ShardIdentityError when a replica answers as another shard's (a map pointing a replica at the
   * wrong standby is refused, not silently read from or around).
   */
  async pick(shard: ShardSpec, options: ReadOptions | undefined): Promise<PickedReplica<DB> | null> {
    const { readFrom, maxLagMs } = resolveReadOptions(options, this.options);
    const replicas = shard.replicas ?? [];
    if (readFrom === 'primary' || replicas.length === 0) return null;
    // Round robin over the replicas, so several share the reads.
    const start = (this.turn.get(shard.id) ?? 0) % replicas.length;
    this.turn.set(shard.id, start + 1);
    for (let i = 0; i < replicas.length; i++) {
      const spec = replicas[(start + i) % replicas.length] as ReplicaSpec;
      const h = this.handle(spec);
      const sample = await this.sampleOf(h, maxLagMs);
      const { lagMs } = sample.lag;
      if (lagMs === null || lagMs + (performance.now() - sample.at) > maxLagMs) continue;
      return { spec, db: h.db, markDown: (err) => this.markDown(h, err) };
    }
    return null;
  }

  /** Measures every replica of `shard` now (for `shards check` and health reports). */
  async status(shard: ShardSpec): Promise<(ReplicaLag & { replica: number; target: string; identity: string | null })[]> {
    return Promise.all(
      (shard.replicas ?? []).map(async (spec) => {
        const h = this.handle(spec);
        let identity: string | null = null;
        try {
          identity = (await readIdentity(h.pool))?.shardId ?? null;
          const lag = await measureLag(h.pool, this.primaryPool(shard.id));
          if (identity !== shard.id) lag.problem = identity === null ? 'no identity stamp' : `the database is shard "${identity}"`;
          return { replica: spec.replica, target: spec.target, identity, ...lag };
        } catch (err) {
          return { replica: spec.replica, target: spec.target, identity, ...downLag(err) };
        }
      }),
    );
  }

  /** The pool of a replica (opened on first use), unverified: for health checks and tests. */
  pool(spec: ReplicaSpec): pg.Pool {
    return this.handle(spec).pool;
  }

  private async sampleOf(h: ReplicaHandle<DB>, maxLagMs: number): Promise<Sample> {
    const current = h.sample;
    if (current && performance.now() - current.at <= this.cacheMs) return current;
    const next = (h.measuring ??= this.measure(h, maxLagMs).finally(() => (h.measuring = undefined)));
    if (current) {
      next.catch(() => undefined); // a refusal surfaces on the read that waits for it
      return current;
    }
    return next;
  }

  private async measure(h: ReplicaHandle<DB>, maxLagMs: number): Promise<Sample> {
    const at = performance.now();
    try {
      await this.verified(h);
      // A replica that has not replayed the latest migration yet is not read from (nor refused):
      // the primary answers until it has.
      if (this.options.verifySchema !== false && h.schemaCurrent !== true) {
        try {
          await assertSchemaCurrent(h.pool, h.spec.id);
          h.schemaCurrent = true;
        } catch (err) {
          if (!(err instanceof SchemaVersionError)) throw err;
          h.sample = { at, lag: { reachable: true, standby: true, lagMs: null, bytesBehind: null, paused: false, problem: err.message } };
          return h.sample;
        }
      }
      const lag = await measureLag(h.pool, this.primaryPool(h.spec.id), maxLagMs);
      h.sample = { at: lag.asOf ?? at, lag };
    } catch (err) {
      if (err instanceof ShardIdentityError) {
        h.sample = undefined;
        throw err;
      }
      h.sample = { at, lag: downLag(err) };
    }
    return h.sample;
  }

  /**
   * The replica's stamp must name its shard and region: it is a physical copy, so a match means it
   * is a standby of that shard's primary (what it owns is the primary's check). Once per replica.
   */
  private verified(h: ReplicaHandle<DB>): Promise<void> {
    if (this.options.verifyIdentity === false) return Promise.resolve();
    h.verified ??= checkReplicaIdentity(h.pool, h.spec).catch((err: unknown) => {
      h.verified = undefined; // down, or refused: checked again next time
      throw err;
    });
    return h.verified;
  }

  private markDown(h: ReplicaHandle<DB>, err: unknown): void {
    h.sample = { at: performance.now(), lag: downLag(err) };
  }

  private handle(spec: ReplicaSpec): ReplicaHandle<DB> {
    if (this.closed) throw new Error('ShardSet is closed');
    const key = `${spec.id}#${spec.replica}`;
    let h = this.handles.get(key);
    if (!h) {
      const pool = openPool(spec, this.options);
      // As for the primary's pool: a lost idle or checked-out client must not crash the process.
      pool.on('error', () => undefined);
      pool.on('connect', (client) => client.on('error', () => undefined));
      h = { spec, pool, db: new Kysely<DB>({ dialect: new PostgresDialect({ pool }) }) };
      this.handles.set(key, h);
    }
    return h;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(all.map((h) => h.db.destroy().catch(() => undefined)));
  }
}

/** Refuses (ShardIdentityError) a replica whose stamp is not its shard's. */
export async function checkReplicaIdentity(db: Queryable, spec: ReplicaSpec): Promise<void> {
  const found = await readIdentity(db);
  const what = `replica ${spec.replica} of shard "${spec.id}"`;
  if (!found) throw new ShardIdentityError(spec.id, spec.target, null, `${what} has no identity stamp: is it a standby of this shard's primary?`);
  if (found.shardId !== spec.id) throw new ShardIdentityError(spec.id, spec.target, found.shardId, `${what} answers as shard "${found.shardId}"`);
  if (found.region !== spec.region) {
    throw new ShardIdentityError(spec.id, spec.target, found.shardId, `${what} belongs to region "${found.region}", the map says "${spec.region}"`);
  }
}

function downLag(err: unknown): ReplicaLag {
  const message = err instanceof Error ? err.message : String(err);
  return { reachable: false, standby: false, lagMs: null, bytesBehind: null, paused: false, problem: `unreachable: ${message}` };
}

/** One replica's line in `shards check`. */
export interface ReplicaReportRow extends ReplicaLag {
  shardId: string;
  replica: number;
  target: string;
  /** The shard id its identity stamp names (null: none, or unreachable). */
  identity: string | null;
}

/**
 * Every replica of `shards`, measured once now against its primary (`shards check`): reachable,
 * stamped as its shard, a standby, and how far behind. Opens and closes its own connections.
 */
export async function replicaReport(shards: readonly ShardSpec[], options: ConnectionOptions = {}): Promise<ReplicaReportRow[]> {
  const primaries = new Map<string, pg.Pool>();
  const primaryOf = (shardId: string): pg.Pool => {
    let p = primaries.get(shardId);
    if (!p) {
      const shard = shards.find((s) => s.id === shardId) as ShardSpec;
      p = openPool(shard, { ...options, poolMax: 1 });
      p.on('error', () => undefined);
      primaries.set(shardId, p);
    }
    return p;
  };
  const reads = new ReplicaReads<unknown>({ ...options, poolMax: 1 }, primaryOf);
  try {
    const perShard = await Promise.all(
      shards.filter((s) => (s.replicas?.length ?? 0) > 0).map(async (s) => (await reads.status(s)).map((r) => ({ shardId: s.id, ...r }))),
    );
    return perShard.flat();
  } finally {
    await reads.close();
    await Promise.all([...primaries.values()].map((p) => p.end().catch(() => undefined)));
  }
}

/** A replica's lag for a report: "12 ms", "0 ms", "unknown", with bytes behind and a paused replay. */
export function describeLag(r: ReplicaLag): string {
  if (!r.reachable || !r.standby) return '-';
  const parts = [r.lagMs === null ? 'unknown' : `${Math.round(r.lagMs)} ms`];
  if (r.bytesBehind !== null && r.bytesBehind > 0) parts.push(`${r.bytesBehind} bytes of WAL behind`);
  if (r.paused) parts.push('replay paused');
  return parts.join(', ');
}
