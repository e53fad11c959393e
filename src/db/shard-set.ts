import { Kysely, PostgresDialect, type Transaction } from 'kysely';
import pg from 'pg';
import { ShardIdentityError, ShardUnavailableError, ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import { assertSchemaCurrent } from '../migrate/schema-version.js';
import { AppSchemaGate } from '../migrate/app-schema-version.js';
import type { Logger } from '../logging/logger.js';
import { Router, parsePlayerId, type PlayerId } from '../routing/index.js';
import type { ShardMap, ShardSpec } from '../shardmap/index.js';
import { openPool, targetOf, type ConnectionOptions } from './connection.js';
import { checkIdentity, sharedDatabases } from './identity.js';
import { ReplicaReads, isReplicaFallback, type ReadOptions, type ReplicaReadOptions } from './replicas.js';
import { toQueryError, toShardError } from './pg-errors.js';
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
  /** Where that one warning goes (default: process.emitWarning). */
  logger?: Pick<Logger, 'warn'>;
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
  readonly map: ShardMap;
  readonly router: Router;
  private readonly options: ShardSetOptions;
  private readonly handles = new Map<string, ShardHandle<ShardTables<App>>>();
  private closed = false;
  private mapOwnership?: Promise<void>;
  private readonly appSchema: AppSchemaGate;
  /** The shards' replicas (src/db/replicas.ts): what `readDb` and the read calls pick from. @internal */
  readonly replicas: ReplicaReads<ShardTables<App>>;

  constructor(map: ShardMap, options: ShardSetOptions = {}) {
    this.map = map;
    this.router = new Router(map);
    this.options = options;
    const { logger } = options;
    this.appSchema = new AppSchemaGate(options.appMigrations, logger ? (message, fields) => logger.warn(fields, message) : undefined);
    refuseSharedDatabases(map);
    this.replicas = new ReplicaReads(options, (shardId) => this.pool(shardId));
  }

  get shards(): readonly ShardSpec[] {
    return this.map.shards;
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
    if (this.options.verifyIdentity !== false) await this.mapOwnershipChecked();
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
    const shard = this.router.shardFor(id);
    return { shard, db: await this.db(shard.id) };
  }

  /** Runs `fn` against a shard, turning connection failures into ShardUnavailableError. */
  async withShard<T>(shardId: string, fn: (db: Kysely<ShardTables<App>>) => Promise<T>, playerIds?: readonly string[]): Promise<T> {
    const shard = this.router.shard(shardId);
    try {
      return await fn(await this.db(shardId));
    } catch (err) {
      throw naming(toShardError(err, shard.id, targetOf(shard), playerIds), playerIds);
    }
  }

  /**
   * Runs `fn` in one transaction on the shard of `playerId` (a PlayerId or its decimal string),
   * after that shard's identity and schema checks: committed when `fn` resolves, rolled back when
   * it throws. What comes out: a shard that cannot be reached is ShardUnavailableError naming the
   * player; an error the database raised is ShardQueryError with `transient` (retrying the whole
   * call may succeed: a serialization failure, a deadlock, a timeout) and `sqlState`; the app's
   * own errors come out as thrown. A connection lost while committing leaves the outcome unknown,
   * as with any database: a transaction retried on `transient` must be safe to run twice.
   */
  async transaction<T>(playerId: PlayerId | string, fn: (trx: Transaction<ShardTables<App>>) => Promise<T>, options?: TransactionOptions): Promise<T> {
    const pid = parsePlayerId(playerId);
    if (typeof fn !== 'function') throw new ValidationError('fn', `must be a function, got ${showValue(fn)}`);
    const opts = validateTransactionOptions(options);
    const shard = this.router.shardFor(pid);
    const ids = [String(pid)];
    try {
      return await runTransaction(await this.db(shard.id), opts, fn);
    } catch (err) {
      throw naming(toQueryError(err, shard.id, targetOf(shard), ids), ids);
    }
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
          throw toQueryError(err, shard.id, targetOf(shard));
        }
      },
    );
    return splitOutages(outcomes, partial === true);
  }

  /**
   * Once per ShardSet, before its first query on any shard: every shard's stamp against the map.
   * A map that takes buckets from one shard is then refused on all of them, so not even the shards
   * that look right are written through it. Shards that cannot be reached or are not migrated are
   * skipped (their own first use checks them); a shard at another schema is not a map fault and
   * is left to its own check, so it does not stop the others.
   */
  private mapOwnershipChecked(): Promise<void> {
    this.mapOwnership ??= this.checkMapOwnership().catch((err: unknown) => {
      this.mapOwnership = undefined;
      throw err;
    });
    return this.mapOwnership;
  }

  private async checkMapOwnership(): Promise<void> {
    const checks = await Promise.allSettled(
      this.shards.map(async (shard) => {
        try {
          await checkIdentity(this.handle(shard.id).pool, shard, this.map.shards);
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
  }

  private async verify(shardId: string): Promise<void> {
    const shard = this.router.shard(shardId);
    const { pool } = this.handle(shardId);
    try {
      if (this.options.verifyIdentity !== false) await checkIdentity(pool, shard, this.map.shards);
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
