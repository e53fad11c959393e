import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { ShardIdentityError, ShardUnavailableError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import { Router, type PlayerId } from '../routing/index.js';
import type { ShardMap, ShardSpec } from '../shardmap/index.js';
import { openPool, targetOf, type ConnectionOptions } from './connection.js';
import { checkIdentity, sharedDatabases } from './identity.js';
import { toShardError } from './pg-errors.js';
import type { ShardDatabase } from './schema.js';

export interface ShardSetOptions extends ConnectionOptions {
  /** Check each shard's stamped identity before first use (default true). Only tests of the guard turn it off. */
  verifyIdentity?: boolean;
}

interface ShardHandle {
  readonly pool: pg.Pool;
  readonly db: Kysely<ShardDatabase>;
  verified?: Promise<void>;
}

/**
 * One pg pool and one typed Kysely instance per shard of a map, created on first use and closed
 * together. `db()` hands out a shard only after its identity has been checked, so a map that
 * points a shard at the wrong database, or gives it buckets other than those it owns (its
 * stamp), is refused before any row is read or written.
 */
export class ShardSet {
  readonly map: ShardMap;
  readonly router: Router;
  private readonly options: ShardSetOptions;
  private readonly handles = new Map<string, ShardHandle>();
  private closed = false;

  constructor(map: ShardMap, options: ShardSetOptions = {}) {
    this.map = map;
    this.router = new Router(map);
    this.options = options;
    refuseSharedDatabases(map);
  }

  get shards(): readonly ShardSpec[] {
    return this.map.shards;
  }

  /** The pg pool of a shard, unverified: for the migrator and health checks. */
  pool(shardId: string): pg.Pool {
    return this.handle(shardId).pool;
  }

  /** Kysely for a shard, unverified. Prefer `db()`. */
  rawDb(shardId: string): Kysely<ShardDatabase> {
    return this.handle(shardId).db;
  }

  /** Kysely for a shard whose identity has been checked (once per ShardSet, then cached). */
  async db(shardId: string): Promise<Kysely<ShardDatabase>> {
    const h = this.handle(shardId);
    if (this.options.verifyIdentity !== false) {
      h.verified ??= this.verify(shardId).catch((err: unknown) => {
        h.verified = undefined; // a shard that was down may come back: check again next time
        throw err;
      });
      await h.verified;
    }
    return h.db;
  }

  /**
   * Checks every shard's identity and owned buckets now, as `db()` does before first use, and
   * throws the first refusal in map order (ShardIdentityError, ShardOwnershipError). A shard that
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

  async dbForPlayer(id: PlayerId): Promise<{ shard: ShardSpec; db: Kysely<ShardDatabase> }> {
    const shard = this.router.shardFor(id);
    return { shard, db: await this.db(shard.id) };
  }

  /** Runs `fn` against a shard, turning connection failures into ShardUnavailableError. */
  async withShard<T>(shardId: string, fn: (db: Kysely<ShardDatabase>) => Promise<T>, playerIds?: readonly string[]): Promise<T> {
    const shard = this.router.shard(shardId);
    try {
      return await fn(await this.db(shardId));
    } catch (err) {
      const e = toShardError(err, shard.id, targetOf(shard), playerIds);
      // A failure of the first identity check is already a ShardUnavailableError, without the ids.
      if (e instanceof ShardUnavailableError && playerIds?.length && e.playerIds.length === 0) throw e.forPlayers(playerIds);
      throw e;
    }
  }

  private async verify(shardId: string): Promise<void> {
    const shard = this.router.shard(shardId);
    try {
      await checkIdentity(this.handle(shardId).pool, shard, this.map.shards);
    } catch (err) {
      throw toShardError(err, shard.id, targetOf(shard));
    }
  }

  private handle(shardId: string): ShardHandle {
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
      h = { pool, db: new Kysely<ShardDatabase>({ dialect: new PostgresDialect({ pool }) }) };
      this.handles.set(shardId, h);
    }
    return h;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.handles.values()];
    this.handles.clear();
    // Kysely.destroy() ends the pool it was given.
    await Promise.all(all.map((h) => h.db.destroy().catch(() => undefined)));
  }
}

/** Two shards at one host:port/database would mix their record sets: refuse the map outright. */
export function refuseSharedDatabases(map: Pick<ShardMap, 'shards'>): void {
  const [shared] = sharedDatabases(map.shards);
  if (shared) {
    const { shardId, sharedWith, target } = shared;
    throw new ShardIdentityError(shardId, target, sharedWith, `the map points shards ${showValue(sharedWith)} and ${showValue(shardId)} at the same database`);
  }
}
