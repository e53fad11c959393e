import { Kysely, PostgresDialect, type Transaction } from 'kysely';
import pg from 'pg';
import { BucketMovedError, BucketMovingError, ShardIdentityError, ShardUnavailableError, ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import { assertSchemaCurrent } from '../migrate/schema-version.js';
import { AppSchemaGate } from '../migrate/app-schema-version.js';
import type { Logger } from '../logging/logger.js';
import { Router, parsePlayerId, type PlayerId } from '../routing/index.js';
import type { ShardMap, ShardSpec } from '../shardmap/index.js';
import { openPool, targetOf, type ConnectionOptions } from './connection.js';
import { assertIdentity, checkIdentity, sharedDatabases, type ShardIdentity } from './identity.js';
import type { BucketRange } from './bucket-ownership.js';
import { bucketsOf, combineRouting, overrideWarning, parseOwnershipRecord, type OwnershipRecord } from './live-routing.js';
import { ReplicaReads, isReplicaFallback, type ReadOptions, type ReplicaReadOptions } from './replicas.js';
import { sqlState, toBucketError, toQueryError, toShardError } from './pg-errors.js';
import { settleEach, splitOutages, type ScatterResult } from './scatter.js';
import type { ShardDatabase } from './schema.js';
import { runTransaction, validateTransactionOptions, type TransactionOptions } from './transaction.js';

export interface ShardSetOptions extends ConnectionOptions, ReplicaReadOptions {
  /** Check each shard's stamped identity before first use (default true). Only tests of the guard turn it off. */
  verifyIdentity?: boolean;
  /**
   * Check each shard's schema version before first use (default true): a shard behind or ahead
   * of this code's migrations is refused with SchemaVersionError before any query of the app.
   */
  verifySchema?: boolean;
  /**
   * The app's migrations folder (docs/app-tables.md): a shard whose app schema is behind or ahead
   * of it is refused with AppSchemaVersionError, like shardline's own schema. Unset, a shard with
   * app migrations is served and the first one found is reported once (`logger.warn`, else a
   * process warning), since nothing checks its app schema.
   */
  appMigrations?: string;
  /** Where that one warning goes (default: process.emitWarning), and live routing's (a map older than the shards' records). */
  logger?: Pick<Logger, 'warn'>;
  /**
   * How often live routing re-reads every shard's ownership record (default 5000 ms; 0: never by
   * timer, only at first use and when a shard refuses a write). The timer does not keep the process alive.
   */
  routingRefreshMs?: number;
  /** How long a write to a bucket frozen in a cut-over backs off and retries before BucketMovingError (default 10000 ms). */
  freezeWaitMs?: number;
}

/**
 * The app's own tables, as a Kysely database interface (`{ wallets: WalletsTable; ... }`). A name
 * of shardline's own tables is refused at compile time: the two row types would merge.
 */
export type AppTables = object & { readonly [K in keyof ShardDatabase]?: never };

/** The tables of a shard as the app sees them: shardline's and its own. */
export type ShardTables<App extends AppTables = NoAppTables> = ShardDatabase & App;

/** No app tables: a plain `ShardSet` sees shardline's tables only. */
export type NoAppTables = Record<never, never>;

export interface ScatterOptions extends ReadOptions {
  /** Only the shards of this region of the map (UnknownRegionError for another name). */
  region?: string;
  /**
   * Resolve with what the reachable shards answered and list the unreachable ones under
   * `unavailable`, instead of throwing ShardUnavailableError for the first one.
   */
  partial?: boolean;
}

const SCATTER_OPTION_KEYS: readonly string[] = ['region', 'partial', 'readFrom', 'maxLagMs'];

interface ShardHandle<DB> {
  readonly pool: pg.Pool;
  readonly db: Kysely<DB>;
  verified?: Promise<void>;
}

/**
 * One pg pool and one typed Kysely instance per shard of a map, created on first use and closed
 * together. `db()` hands out a shard only after its identity and schema have been checked, so a
 * map that points a shard at the wrong database, or gives it buckets other than those it owns
 * (its stamp), or a shard not at this code's schema, is refused before any row is read or written.
 *
 * `App` types the app's own tables beside shardline's: `new ShardSet<AppDatabase>(map)` makes
 * `db()`, `transaction()` and `scatter()` hand out `Kysely<ShardDatabase & AppDatabase>`.
 */
export class ShardSet<App extends AppTables = NoAppTables> {
  /** The map as given (the file), before live routing combines it with the shards' ownership records. */
  readonly fileMap: ShardMap;
  private current: Router;
  private readonly options: ShardSetOptions;
  private readonly routingListeners = new Set<(router: Router) => void>();
  private refreshQueued?: Promise<boolean>;
  private refreshRunning: Promise<unknown> = Promise.resolve();
  private refreshTimer?: ReturnType<typeof setInterval>;
  private warnedOverrides = '';
  private warnedRefresh = '';
  /** The last record read from each shard: a shard that cannot be read for a moment keeps what it said. */
  private readonly lastRecords = new Map<string, OwnershipRecord>();
  private readonly handles = new Map<string, ShardHandle<ShardTables<App>>>();
  private closed = false;
  private mapOwnership?: Promise<void>;
  private readonly appSchema: AppSchemaGate;
  /** The shards' replicas (src/db/replicas.ts): what `readDb` and the read calls pick from. @internal */
  readonly replicas: ReplicaReads<ShardTables<App>>;

  constructor(map: ShardMap, options: ShardSetOptions = {}) {
    this.fileMap = map;
    this.current = new Router(map);
    this.options = options;
    const every = options.routingRefreshMs;
    if (every !== undefined && (!Number.isFinite(every) || every < 0)) {
      throw new ValidationError('routingRefreshMs', `must be a number of milliseconds, 0 for never, got ${showValue(every)}`);
    }
    if (options.freezeWaitMs !== undefined && (!Number.isFinite(options.freezeWaitMs) || options.freezeWaitMs < 0)) {
      throw new ValidationError('freezeWaitMs', `must be a number of milliseconds, got ${showValue(options.freezeWaitMs)}`);
    }
    const { logger } = options;
    this.appSchema = new AppSchemaGate(options.appMigrations, logger ? (message, fields) => logger.warn(fields, message) : undefined);
    refuseSharedDatabases(map);
    this.replicas = new ReplicaReads(options, (shardId) => this.pool(shardId));
  }

  /**
   * The current Router: the map combined with the shards' ownership records (live routing),
   * swapped as a whole when they change. An operation that must keep one routing reads it once.
   */
  get router(): Router {
    return this.current;
  }

  /** The current live map (the router's): the file's shards, each with the buckets it owns now. */
  get map(): ShardMap {
    return this.current.map;
  }

  get shards(): readonly ShardSpec[] {
    return this.map.shards;
  }

  /**
   * The current Router once this ShardSet's first-use checks have run (identities, ownership
   * records): what an operation should route by, so its very first call already follows live
   * routing. Rejects as `db()` does for a map the records refuse.
   */
  async routerReady(): Promise<Router> {
    await this.mapOwnershipChecked();
    return this.current;
  }

  /** The bucket ranges current routing assigns `shardId` (reads limit themselves to these while a moved copy remains). */
  ownedBuckets(shardId: string): readonly BucketRange[] {
    this.current.shard(shardId);
    return bucketsOf(this.current.map, shardId);
  }

  /** Calls `listener` with each new Router after routing changed; returns the unsubscribe function. */
  onRoutingChange(listener: (router: Router) => void): () => void {
    if (typeof listener !== 'function') throw new ValidationError('listener', `must be a function, got ${showValue(listener)}`);
    this.routingListeners.add(listener);
    return () => {
      this.routingListeners.delete(listener);
    };
  }

  /**
   * Reads every shard's ownership record now (one small query each, in parallel) and combines them
   * with the map; resolves true when routing changed. A shard that cannot be read is left to the
   * map. Rejects with ShardOwnershipError or MapAheadOfOwnershipError when the map contradicts the
   * records (routing then stays as it was). Calls made while one is waiting to start share it.
   */
  refreshRouting(): Promise<boolean> {
    if (this.refreshQueued) return this.refreshQueued;
    const run = this.refreshRunning.then(
      () => {
        this.refreshQueued = undefined;
        return this.readRouting();
      },
      () => {
        this.refreshQueued = undefined;
        return this.readRouting();
      },
    );
    this.refreshQueued = run;
    this.refreshRunning = run.catch(() => undefined);
    return run;
  }

  /**
   * Runs `op` and, when a shard refuses its write because the bucket moved (BucketMovedError),
   * refreshes routing and runs it once more; a bucket frozen in a cut-over (BucketMovingError)
   * backs off and retries for up to `freezeWaitMs`, then throws. `op` must read `shards.router`
   * itself, at its start, and be safe to run again (a refused write was rolled back).
   */
  async retryOnMove<T>(op: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + (this.options.freezeWaitMs ?? 10_000);
    let movedRetried = false;
    let pause = 25;
    for (;;) {
      try {
        return await op();
      } catch (err) {
        if (err instanceof BucketMovedError && !movedRetried) {
          movedRetried = true;
          await this.refreshRouting().catch(() => undefined);
          continue;
        }
        if (err instanceof BucketMovingError && Date.now() + pause <= deadline) {
          await new Promise((resolve) => setTimeout(resolve, pause));
          pause = Math.min(pause * 2, 500);
          await this.refreshRouting().catch(() => undefined);
          continue;
        }
        throw err;
      }
    }
  }

  private async readRouting(): Promise<boolean> {
    if (this.closed) return false;
    const records = new Map<string, OwnershipRecord>();
    await Promise.all(
      this.fileMap.shards.map(async (shard) => {
        const meta = await this.readMeta(shard).catch(() => undefined);
        const record = meta === undefined ? this.lastRecords.get(shard.id) : meta.identity?.shardId === shard.id ? meta.record : null;
        if (record) records.set(shard.id, record);
      }),
    );
    return this.applyRouting(records);
  }

  private applyRouting(records: ReadonlyMap<string, OwnershipRecord>): boolean {
    const live = combineRouting(this.fileMap, records);
    this.lastRecords.clear();
    for (const [id, r] of records) this.lastRecords.set(id, r);
    const text = live.overrides.length === 0 ? '' : overrideWarning(this.fileMap.epoch ?? 0, live.overrides);
    if (text !== '' && text !== this.warnedOverrides) this.warn(text, { overrides: live.overrides });
    this.warnedOverrides = text;
    if (sameRouting(this.current.map, live.map)) return false;
    this.current = this.current.withMap(live.map);
    for (const listener of this.routingListeners) {
      try {
        listener(this.current);
      } catch {
        // A listener's failure is its own: routing has changed for everyone else.
      }
    }
    return true;
  }

  /** The identity stamp and ownership record of the database the map points `shard` at, in one read (none before migration). */
  private async readMeta(shard: ShardSpec): Promise<{ identity: ShardIdentity | null; record: OwnershipRecord | null }> {
    try {
      const { rows } = await this.handle(shard.id).pool.query<{ key: string; value: unknown }>(
        `SELECT key, value FROM shardline_meta WHERE key IN ('identity', 'ownership')`,
      );
      const identity = (rows.find((r) => r.key === 'identity')?.value as ShardIdentity | undefined) ?? null;
      return { identity, record: parseOwnershipRecord(rows.find((r) => r.key === 'ownership')?.value) };
    } catch (err) {
      if (sqlState(err) === '42P01') return { identity: null, record: null }; // undefined_table: not migrated yet
      throw err;
    }
  }

  private warn(message: string, fields: Record<string, unknown>): void {
    const { logger } = this.options;
    if (logger) logger.warn(fields, message);
    else process.emitWarning(message, { code: 'SHARDLINE_MAP_OLDER_THAN_OWNERSHIP' });
  }

  private startRefreshTimer(): void {
    const every = this.options.routingRefreshMs ?? 5000;
    if (every === 0 || this.refreshTimer || this.closed) return;
    this.refreshTimer = setInterval(() => {
      this.refreshRouting().then(
        () => {
          this.warnedRefresh = '';
        },
        (err: unknown) => {
          // Once per distinct failure, not every period: the current routing stays in force.
          const text = `live routing: refresh failed, keeping the current routing: ${(err as Error).message}`;
          if (text !== this.warnedRefresh) this.warn(text, {});
          this.warnedRefresh = text;
        },
      );
    }, every);
    this.refreshTimer.unref();
  }

  /** The pg pool of a shard, unverified: for the migrator and health checks. */
  pool(shardId: string): pg.Pool {
    return this.handle(shardId).pool;
  }

  /** Kysely for a shard, unverified. Prefer `db()`. */
  rawDb(shardId: string): Kysely<ShardTables<App>> {
    return this.handle(shardId).db;
  }

  /** Kysely for a shard whose identity and schema have been checked (once per ShardSet, then cached). */
  async db(shardId: string): Promise<Kysely<ShardTables<App>>> {
    const h = this.handle(shardId);
    await this.mapOwnershipChecked();
    if (this.options.verifyIdentity !== false || this.options.verifySchema !== false) {
      h.verified ??= this.verify(shardId).catch((err: unknown) => {
        h.verified = undefined; // a shard that was down may come back: check again next time
        throw err;
      });
      await h.verified;
    }
    return h.db;
  }

  /**
   * Checks every shard's identity, owned buckets and schema now, as `db()` does before first use,
   * and throws the first refusal in map order (ShardIdentityError, ShardOwnershipError,
   * SchemaVersionError, AppSchemaVersionError). A shard that
   * cannot be reached, or is not migrated yet, is skipped: it holds nothing a wrong map could
   * hide, and its first use checks it again. For commands that must refuse a wrong map outright,
   * rather than act on the shards that happen to look right.
   */
  async verifyAll(): Promise<void> {
    const checks = await Promise.allSettled(this.shards.map((s) => this.db(s.id)));
    for (const c of checks) {
      if (c.status === 'fulfilled' || c.reason instanceof ShardUnavailableError) continue;
      if (c.reason instanceof ShardIdentityError && c.reason.found === null) continue;
      throw c.reason;
    }
  }

  /**
   * Kysely for reading a shard: with `readFrom: 'replica'` (or that ShardSet default) one of its
   * replicas while its replay lag is within `maxLagMs`, else (lagging, down, none listed) the
   * primary, as `db()`, with no error. Only for reads: a replica refuses writes, and nothing that
   * must see its own writes (a transaction, a check before a write) should read a replica.
   * ShardIdentityError when a replica is another shard's.
   */
  async readDb(shardId: string, options: ReadOptions = {}): Promise<Kysely<ShardTables<App>>> {
    const picked = await this.replicas.pick(this.router.shard(shardId), options);
    return picked ? picked.db : this.db(shardId);
  }

  /**
   * `withShard` for a read, as `readDb` picks: a replica whose query fails as an outage or a
   * recovery conflict counts as down and the read runs again on the primary, so the caller never
   * sees a replica's failure.
   */
  async withReadShard<T>(
    shardId: string,
    fn: (db: Kysely<ShardTables<App>>) => Promise<T>,
    options: ReadOptions = {},
    playerIds?: readonly string[],
  ): Promise<T> {
    const picked = await this.replicas.pick(this.router.shard(shardId), options);
    if (picked) {
      try {
        return await fn(picked.db);
      } catch (err) {
        if (!isReplicaFallback(err)) throw naming(toQueryError(err, shardId, picked.spec.target, playerIds), playerIds);
        picked.markDown(err);
      }
    }
    return this.withShard(shardId, fn, playerIds);
  }

  async dbForPlayer(id: PlayerId): Promise<{ shard: ShardSpec; db: Kysely<ShardTables<App>> }> {
    const shard = (await this.routerReady()).shardFor(id);
    return { shard, db: await this.db(shard.id) };
  }

  /** Runs `fn` against a shard, turning connection failures into ShardUnavailableError. */
  async withShard<T>(shardId: string, fn: (db: Kysely<ShardTables<App>>) => Promise<T>, playerIds?: readonly string[]): Promise<T> {
    const shard = this.router.shard(shardId);
    try {
      return await fn(await this.db(shardId));
    } catch (err) {
      throw naming(this.refused(toShardError(toBucketError(err, shard.id, playerIds), shard.id, targetOf(shard), playerIds)), playerIds);
    }
  }

  /** A fence refusal means routing is stale: refresh at once (in the background), and pass the error on. */
  private refused(err: unknown): unknown {
    if (err instanceof BucketMovedError || err instanceof BucketMovingError) this.refreshRouting().catch(() => undefined);
    return err;
  }

  /**
   * Runs `fn` in one transaction on the shard of `playerId` (a PlayerId or its decimal string),
   * after that shard's identity and schema checks: committed when `fn` resolves, rolled back when
   * it throws. What comes out: a shard that cannot be reached is ShardUnavailableError naming the
   * player; an error the database raised is ShardQueryError with `transient` (retrying the whole
   * call may succeed: a serialization failure, a deadlock, a timeout) and `sqlState`; the app's
   * own errors come out as thrown. A connection lost while committing leaves the outcome unknown,
   * as with any database: a transaction retried on `transient` must be safe to run twice.
   *
   * Routing is live: when the shard refuses the write because the player's bucket moved
   * (BucketMovedError, its fence), routing is read again and `fn` runs once more, on the new owner;
   * a bucket frozen in its cut-over (BucketMovingError) is retried with backoff for up to
   * `freezeWaitMs`. The refused attempt was rolled back, so `fn` may run more than once.
   */
  async transaction<T>(playerId: PlayerId | string, fn: (trx: Transaction<ShardTables<App>>) => Promise<T>, options?: TransactionOptions): Promise<T> {
    const pid = parsePlayerId(playerId);
    if (typeof fn !== 'function') throw new ValidationError('fn', `must be a function, got ${showValue(fn)}`);
    const opts = validateTransactionOptions(options);
    const ids = [String(pid)];
    return this.retryOnMove(async () => {
      const shard = (await this.routerReady()).shardFor(pid);
      try {
        return await runTransaction(await this.db(shard.id), opts, fn);
      } catch (err) {
        throw naming(this.refused(toQueryError(err, shard.id, targetOf(shard), ids)), ids);
      }
    });
  }

  /**
   * Runs `fn` on every shard of the map (or of `region`), all at once, each after its identity
   * and schema checks, and waits for all of them. Results come in map order. A shard that cannot
   * be reached throws its ShardUnavailableError, or with `partial` is listed under `unavailable`;
   * any other failure always throws (the first in map order), a database error as ShardQueryError.
   */
  async scatter<T>(fn: (db: Kysely<ShardTables<App>>, shard: ShardSpec) => Promise<T>, options: ScatterOptions = {}): Promise<ScatterResult<T>> {
    if (typeof fn !== 'function') throw new ValidationError('fn', `must be a function, got ${showValue(fn)}`);
    const { region, partial, readFrom, maxLagMs } = validateScatterOptions(options);
    const read = { ...(readFrom === undefined ? {} : { readFrom }), ...(maxLagMs === undefined ? {} : { maxLagMs }) };
    const scope = region === undefined ? this.shards : this.router.region(region).shards;
    const outcomes = await settleEach(
      scope.map((s) => s.id),
      async (shardId) => {
        const shard = this.router.shard(shardId);
        try {
          return await this.withReadShard(shardId, (db) => fn(db, shard), read);
        } catch (err) {
          throw this.refused(toQueryError(err, shard.id, targetOf(shard)));
        }
      },
    );
    return splitOutages(outcomes, partial === true);
  }

  /**
   * Once per ShardSet, before its first query on any shard: every shard's stamp (id and region)
   * and ownership record, read in one query each, and live routing from the records. A map that
   * contradicts the records (it would hide players) is then refused on all of them, so not even the
   * shards that look right are written through it. Shards that cannot be reached or are not
   * migrated are skipped (their own first use checks them); a shard at another schema is not a map
   * fault and is left to its own check, so it does not stop the others. Starts the refresh timer.
   */
  private mapOwnershipChecked(): Promise<void> {
    this.mapOwnership ??= this.checkMapOwnership().catch((err: unknown) => {
      this.mapOwnership = undefined;
      throw err;
    });
    return this.mapOwnership;
  }

  private async checkMapOwnership(): Promise<void> {
    const verifyIdentity = this.options.verifyIdentity !== false;
    const records = new Map<string, OwnershipRecord>();
    const checks = await Promise.allSettled(
      this.fileMap.shards.map(async (shard) => {
        try {
          const { identity, record } = await this.readMeta(shard);
          if (verifyIdentity) assertIdentity(shard, identity);
          if (record && identity?.shardId === shard.id) records.set(shard.id, record);
        } catch (err) {
          throw toShardError(err, shard.id, targetOf(shard));
        }
      }),
    );
    for (const c of checks) {
      if (c.status === 'fulfilled' || c.reason instanceof ShardUnavailableError) continue;
      if (c.reason instanceof ShardIdentityError && c.reason.found === null) continue;
      throw c.reason;
    }
    this.applyRouting(records);
    this.startRefreshTimer();
  }

  private async verify(shardId: string): Promise<void> {
    const shard = this.router.shard(shardId);
    const { pool } = this.handle(shardId);
    try {
      if (this.options.verifyIdentity !== false) await checkIdentity(pool, shard);
      // After the identity: a schema version read from the wrong database would mean nothing.
      if (this.options.verifySchema !== false) await assertSchemaCurrent(pool, shard.id);
      if (this.options.verifySchema !== false) await this.appSchema.check(pool, shard.id);
    } catch (err) {
      throw toShardError(err, shard.id, targetOf(shard));
    }
  }

  private handle(shardId: string): ShardHandle<ShardTables<App>> {
    if (this.closed) throw new Error('ShardSet is closed');
    let h = this.handles.get(shardId);
    if (!h) {
      const shard = this.router.shard(shardId);
      const pool = openPool(shard, this.options);
      // An idle client that loses its server emits 'error' on the pool; without a listener that
      // would crash the process. The next query on that shard reports the failure instead.
      pool.on('error', () => undefined);
      // A client that loses its server while checked out (a transaction in progress when the shard
      // restarts) emits 'error' on itself, where pg-pool listens only while it is idle: the same
      // crash. Its queries already reject with the failure, and pg-pool drops it on release.
      pool.on('connect', (client) => client.on('error', () => undefined));
      h = { pool, db: new Kysely<ShardTables<App>>({ dialect: new PostgresDialect({ pool }) }) };
      this.handles.set(shardId, h);
    }
    return h;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = undefined;
    const all = [...this.handles.values()];
    this.handles.clear();
    // Kysely.destroy() ends the pool it was given.
    await Promise.all([...all.map((h) => h.db.destroy().catch(() => undefined)), this.replicas.close()]);
  }
}

/**
 * A ShardSet typed with any app tables: what shardline's own classes (Accounts, Leaderboards,
 * SettlementClient, SettlementWorker) take, since they read only shardline's tables. Kysely's
 * database parameter is invariant, so a `ShardSet<AppDatabase>` is not a `ShardSet`; each class
 * stores it as a plain `ShardSet` at once, so `any` never reaches a query.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyShardSet = ShardSet<any>;

/** The same ShardSet, seen with shardline's tables only (sound: a query can name fewer tables, never more). */
export function asPlainShardSet(shards: AnyShardSet): ShardSet {
  return shards as ShardSet;
}

/** A failure of the first-use checks is already a ShardUnavailableError, without the ids. */
function naming(err: unknown, playerIds: readonly string[] | undefined): unknown {
  if (err instanceof ShardUnavailableError && playerIds?.length && err.playerIds.length === 0) return err.forPlayers(playerIds);
  return err;
}

function validateScatterOptions(options: unknown): ScatterOptions {
  if (typeof options !== 'object' || options === null) throw new ValidationError('options', `must be an object, got ${showValue(options)}`);
  for (const key of Object.keys(options)) {
    if (!SCATTER_OPTION_KEYS.includes(key)) throw new ValidationError(`options.${key}`, `is not a scatter option (known: ${SCATTER_OPTION_KEYS.join(', ')})`);
  }
  const { region, partial } = options as Record<string, unknown>;
  if (region !== undefined && (typeof region !== 'string' || region.length === 0))
    throw new ValidationError('options.region', `must be a region name, got ${showValue(region)}`);
  if (partial !== undefined && typeof partial !== 'boolean') throw new ValidationError('options.partial', `must be a boolean, got ${showValue(partial)}`);
  return options;
}

/** Two shards at one host:port/database would mix their record sets: refuse the map outright. */
export function refuseSharedDatabases(map: Pick<ShardMap, 'shards'>): void {
  const [shared] = sharedDatabases(map.shards);
  if (shared) {
    const { shardId, sharedWith, target } = shared;
    throw new ShardIdentityError(shardId, target, sharedWith, `the map points shards ${showValue(sharedWith)} and ${showValue(shardId)} at the same database`);
  }
}

/** Same assignment of buckets to shards (and epoch): a refresh that changes nothing keeps the Router. */
function sameRouting(a: ShardMap, b: ShardMap): boolean {
  if (a === b) return true;
  if ((a.epoch ?? 0) !== (b.epoch ?? 0) || a.bucketOwner.length !== b.bucketOwner.length) return false;
  for (let i = 0; i < a.bucketOwner.length; i++) if (a.bucketOwner[i] !== b.bucketOwner[i]) return false;
  return true;
}
