import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { MigrationError, ValidationError, type ShardOwnershipFault } from '../errors/index.js';
import { databaseOf, poolConfig, targetOf, type ConnectionOptions } from '../db/connection.js';
import { checkIdentity, identityProblem, readIdentity, stampIdentity, stampKnowledge, type ShardIdentity, type StampOptions } from '../db/identity.js';
import type { StampKnowledge } from '../db/bucket-ownership.js';
import { sqlState, toShardError } from '../db/pg-errors.js';
import type { ShardSpec } from '../shardmap/index.js';
import { EsmMigrationSource, MIGRATIONS_DIR, migrationNames } from './migration-source.js';
import { appliedMigrations, assertSchemaCurrent } from './schema-version.js';

// The schema check lives in a module without knex, so ShardSet can run it; re-exported for existing imports.
export { assertSchemaCurrent };

export interface ShardSchemaStatus {
  shardId: string;
  region: string;
  target: string;
  reachable: boolean;
  identity: ShardIdentity | null;
  /**
   * Why this database may not serve as this shard (missing or foreign stamp, or, from
   * schemaStatus, a map that points another shard at the same database); absent when it may.
   */
  identityProblem?: string;
  /** Applied migrations in order; the last one is the schema version. */
  applied: string[];
  version: string | null;
  pending: string[];
  error?: string;
  /**
   * Set when the stamp owns other buckets than the map gives this shard (also described in
   * `identityProblem`): the library and the worker refuse the shard until the map is restored.
   */
  ownershipFault?: ShardOwnershipFault;
}

export interface MigrateProgress {
  shardId: string;
  migration: string;
  step: number;
  of: number;
}

export interface ShardMigratorOptions extends ConnectionOptions {
  migrationsDir?: string;
  onProgress?: (p: MigrateProgress) => void;
  /**
   * The role the library and the worker connect as; the migrations grant it DML and nothing more
   * (migrations/0003, 0004). Default `shardline_app`. Passed to migrations as the session setting
   * `shardline.app_role`, since a knex migration has no configuration of its own.
   */
  appRole?: string;
  /**
   * Every shard of the map (default: the shard alone), so that the ownership check can name the
   * shard the map gives this one's buckets to.
   */
  mapShards?: readonly ShardSpec[];
}

/** A plain, unquoted PostgreSQL role name: what operators type without surprises. */
const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Runs knex migrations on one shard. Each migration commits in its own transaction. */
export class ShardMigrator {
  private readonly shard: ShardSpec;
  private readonly options: ShardMigratorOptions;
  private readonly dir: string;

  constructor(shard: ShardSpec, options: ShardMigratorOptions = {}) {
    this.shard = shard;
    this.options = options;
    this.dir = options.migrationsDir ?? MIGRATIONS_DIR;
    if (options.appRole !== undefined && !ROLE_NAME.test(options.appRole)) {
      throw new ValidationError('appRole', 'must be lower-case letters, digits and underscores, starting with a letter or underscore, at most 63 characters');
    }
  }

  private knex(): Knex {
    const cfg = poolConfig(this.shard, { ...this.options, poolMax: 1 });
    return knexFactory({
      client: 'pg',
      connection: { connectionString: cfg.connectionString, ssl: cfg.ssl, connectionTimeoutMillis: cfg.connectionTimeoutMillis } as Knex.PgConnectionConfig,
      pool: { min: 0, max: 1, ...(this.options.appRole === undefined ? {} : { afterCreate: appRoleSetter(this.options.appRole) }) },
      acquireConnectionTimeout: (cfg.connectionTimeoutMillis ?? 5000) + 1000,
      migrations: { migrationSource: new EsmMigrationSource(this.dir) },
    });
  }

  private async withClient<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client(poolConfig(this.shard, this.options));
    client.on('error', () => undefined);
    try {
      await client.connect();
      return await fn(client);
    } catch (err) {
      throw toShardError(err, this.shard.id, targetOf(this.shard));
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Creates the shard's database when it does not exist (local development). Returns true if created. */
  async createDatabase(): Promise<boolean> {
    const cfg = poolConfig(this.shard, this.options);
    const url = new URL(cfg.connectionString ?? '');
    url.pathname = '/postgres'; // the maintenance database: the shard's own does not exist yet
    const admin = new pg.Client({ ...cfg, connectionString: url.toString() });
    admin.on('error', () => undefined);
    try {
      await admin.connect();
      const name = databaseOf(this.shard);
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (exists.rowCount) return false;
      await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      return true;
    } catch (err) {
      if (sqlState(err) === '42P04') return false; // created concurrently
      throw toShardError(err, this.shard.id, targetOf(this.shard));
    } finally {
      await admin.end().catch(() => undefined);
    }
  }

  async status(): Promise<ShardSchemaStatus> {
    const base = { shardId: this.shard.id, region: this.shard.region, target: targetOf(this.shard) };
    const known = migrationNames(this.dir);
    try {
      return await this.withClient(async (c) => {
        const identity = await readIdentity(c);
        const applied = await appliedMigrations(c);
        const problem = identityProblem(this.shard, identity, this.options.mapShards);
        return {
          ...base,
          reachable: true,
          identity,
          ...(problem === null ? {} : { identityProblem: problem }),
          applied,
          version: applied.at(-1) ?? null,
          pending: known.filter((m) => !applied.includes(m)),
        };
      });
    } catch (err) {
      return { ...base, reachable: false, identity: null, applied: [], version: null, pending: known, error: (err as Error).message };
    }
  }

  /**
   * What the shard's stamp says it owns, for the map-wide check before a migrate: a database that
   * does not exist yet is unstamped; one that cannot be reached is unknown.
   */
  async readStamp(): Promise<StampKnowledge> {
    const client = new pg.Client(poolConfig(this.shard, this.options));
    client.on('error', () => undefined);
    try {
      await client.connect();
      return stampKnowledge(this.shard, await readIdentity(client));
    } catch (err) {
      if (sqlState(err) === '3D000') return { kind: 'unstamped' }; // invalid_catalog_name: no database yet
      const e = toShardError(err, this.shard.id, targetOf(this.shard));
      return { kind: 'unknown', reason: e instanceof Error ? e.message : String(e) };
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /**
   * Stamps the identity when the shard has none (or checks it, never rewriting it), then applies
   * pending migrations one transaction each. `stamp.unknownShards`: see StampOptions.
   */
  async latest(stamp: Pick<StampOptions, 'unknownShards'> = {}): Promise<string[]> {
    await this.withClient((c) => stampIdentity(c, this.shard, { ...stamp, ...(this.options.mapShards ? { mapShards: this.options.mapShards } : {}) }));
    return this.applyPending();
  }

  /**
   * Applies pending migrations without touching the identity: for building a template database
   * that shards are cloned from (each clone is stamped afterwards by `latest()`).
   */
  async applyPending(): Promise<string[]> {
    return this.run(async (k) => {
      // Our migration source lists plain file names, so knex hands them back as strings.
      const [, pending] = (await k.migrate.list()) as [unknown[], string[]];
      const done: string[] = [];
      for (const [i, m] of pending.entries()) {
        const name = m.replace(/\.(ts|js|mjs)$/, '');
        this.options.onProgress?.({ shardId: this.shard.id, migration: name, step: i + 1, of: pending.length });
        try {
          await k.migrate.up();
        } catch (err) {
          throw new MigrationError(this.shard.id, `migration ${name} failed: ${(err as Error).message}`, { cause: err });
        }
        done.push(name);
      }
      return done;
    });
  }

  /** Undoes the newest applied migration. */
  async rollback(): Promise<string[]> {
    await this.withClient((c) => checkIdentity(c, this.shard, this.options.mapShards));
    return this.run(async (k) => {
      const [, undone] = (await k.migrate.rollback()) as [number, string[]];
      return undone.map((f) => f.replace(/\.(ts|js|mjs)$/, ''));
    });
  }

  /** Refuses unless the shard is at exactly the version this code expects. */
  async assertCurrent(): Promise<void> {
    await this.withClient((c) => assertSchemaCurrent(c, this.shard.id, this.dir));
  }

  private async run<T>(fn: (k: Knex) => Promise<T>): Promise<T> {
    const k = this.knex();
    try {
      return await fn(k);
    } catch (err) {
      throw toShardError(err, this.shard.id, targetOf(this.shard));
    } finally {
      await k.destroy();
    }
  }
}

/** knex pool hook: every migration connection carries the app role name for the grants migration. */
function appRoleSetter(role: string) {
  return (conn: pg.Client, done: (err: Error | null, conn: pg.Client) => void): void => {
    conn.query(`SELECT set_config('shardline.app_role', $1, false)`, [role]).then(
      () => done(null, conn),
      (err: Error) => done(err, conn),
    );
  };
}
