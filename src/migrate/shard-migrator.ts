import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { MigrationError, ShardlineError, ValidationError, type SelfClosureFault, type ShardOwnershipFault } from '../errors/index.js';
import { databaseOf, poolConfig, targetOf, type ConnectionOptions } from '../db/connection.js';
import { checkIdentity, identityProblem, readIdentity, stampIdentity, stampKnowledge, type ShardIdentity, type StampOptions } from '../db/identity.js';
import type { StampKnowledge } from '../db/bucket-ownership.js';
import { parseOwnershipRecord, type OwnershipRecord } from '../db/live-routing.js';
import { sqlState, toShardError } from '../db/pg-errors.js';
import type { ShardSpec } from '../shardmap/index.js';
import { EsmMigrationSource, MIGRATIONS_DIR, migrationNames } from './migration-source.js';
import { appliedMigrations, assertSchemaCurrent } from './schema-version.js';
import { AppMigrationSource } from './app-migrations.js';
import { APP_MIGRATIONS_TABLE, appSchemaStanding, appSchemaProblem, appliedAppMigrations, hasAppMigrationsTables } from './app-schema-version.js';
import { selfClosureFaults } from './self-closure.js';

/** The app's migrations on a shard, as `status()` reads them. */
export interface AppSchemaInfo {
  /** False when no app migrations folder was given: the version is shown, not judged. */
  checked: boolean;
  /** Applied app migrations in order; the last one is the app schema version. */
  applied: string[];
  version: string | null;
  /** The folder's migrations not applied yet (empty when not checked). */
  pending: string[];
  /** When checked: why the shard is not at the folder's version (behind, ahead, out of order). */
  problem?: string;
}

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
  /** The app's own migrations (`appMigrations`), beside shardline's. */
  app: AppSchemaInfo;
  error?: string;
  /**
   * Set when the stamp owns other buckets than the map gives this shard (also described in
   * `identityProblem`): the library and the worker refuse the shard until the map is restored.
   */
  ownershipFault?: ShardOwnershipFault;
  /** The shard's ownership record (migration 0009), when it has one and the stamp is this shard's. */
  ownership?: OwnershipRecord;
}

export interface MigrateProgress {
  shardId: string;
  migration: string;
  step: number;
  of: number;
  /** Whose migration: shardline's own, or the app's (`appMigrations`), which run after. */
  set: 'shardline' | 'app';
}

export interface ShardMigratorOptions extends ConnectionOptions {
  migrationsDir?: string;
  /**
   * The app's own knex migrations folder (TypeScript or JS, ESM), applied after shardline's and
   * tracked in shardline_app_migrations; each runs with the self-closure check in its transaction.
   */
  appMigrations?: string;
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

const quiet = (): void => undefined;

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

  private knex(app = false): Knex {
    const cfg = poolConfig(this.shard, { ...this.options, poolMax: 1 });
    const migrations: Knex.MigratorConfig =
      app && this.options.appMigrations !== undefined
        ? { migrationSource: new AppMigrationSource(this.options.appMigrations, this.shard.id), tableName: APP_MIGRATIONS_TABLE }
        : { migrationSource: new EsmMigrationSource(this.dir) };
    return knexFactory({
      client: 'pg',
      connection: { connectionString: cfg.connectionString, ssl: cfg.ssl, connectionTimeoutMillis: cfg.connectionTimeoutMillis } as Knex.PgConnectionConfig,
      pool: { min: 0, max: 1, ...(this.options.appRole === undefined ? {} : { afterCreate: appRoleSetter(this.options.appRole) }) },
      acquireConnectionTimeout: (cfg.connectionTimeoutMillis ?? 5000) + 1000,
      // knex prints a failed migration itself; the error reaches the caller, which reports it once.
      log: { warn: quiet, error: quiet, deprecate: quiet, debug: quiet },
      migrations,
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
        const problem = identityProblem(this.shard, identity);
        const ownership = identity?.shardId === this.shard.id ? await readOwnership(c) : null;
        return {
          ...base,
          reachable: true,
          identity,
          ...(ownership ? { ownership } : {}),
          ...(problem === null ? {} : { identityProblem: problem }),
          applied,
          version: applied.at(-1) ?? null,
          pending: known.filter((m) => !applied.includes(m)),
          app: this.appInfo(await appliedAppMigrations(c)),
        };
      });
    } catch (err) {
      return { ...base, reachable: false, identity: null, applied: [], version: null, pending: known, app: this.appInfo([]), error: (err as Error).message };
    }
  }

  private appInfo(applied: string[]): AppSchemaInfo {
    const dir = this.options.appMigrations;
    const version = applied.at(-1) ?? null;
    if (dir === undefined) return { checked: false, applied, version, pending: [] };
    const problem = appSchemaProblem(this.shard.id, applied, dir);
    return {
      checked: true,
      applied,
      version,
      pending: migrationNames(dir).filter((m) => !applied.includes(m)),
      ...(problem === null ? {} : { problem: problem.message }),
    };
  }

  /**
   * What the shard's stamp says it owns, for the map-wide check before a migrate: a database that
   * does not exist yet is unstamped; one that cannot be reached is unknown.
   */
  async readStamp(): Promise<StampKnowledge> {
    return (await this.readOwnership()).stamp;
  }

  /** readStamp, with the shard's ownership record (migration 0009) when the stamp is this shard's and it has one. */
  async readOwnership(): Promise<{ stamp: StampKnowledge; record: OwnershipRecord | null }> {
    const client = new pg.Client(poolConfig(this.shard, this.options));
    client.on('error', () => undefined);
    try {
      await client.connect();
      const identity = await readIdentity(client);
      const stamp = stampKnowledge(this.shard, identity);
      return { stamp, record: stamp.kind === 'stamped' ? await readOwnership(client) : null };
    } catch (err) {
      if (sqlState(err) === '3D000') return { stamp: { kind: 'unstamped' }, record: null }; // invalid_catalog_name: no database yet
      const e = toShardError(err, this.shard.id, targetOf(this.shard));
      return { stamp: { kind: 'unknown', reason: e instanceof Error ? e.message : String(e) }, record: null };
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
        this.options.onProgress?.({ shardId: this.shard.id, migration: name, step: i + 1, of: pending.length, set: 'shardline' });
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

  /**
   * Undoes the newest applied migration of shardline's own. Refused while app migrations are
   * applied: the app's tables are built on shardline's, so they are undone first (`appRollback`).
   */
  async rollback(): Promise<string[]> {
    await this.withClient(async (c) => {
      await checkIdentity(c, this.shard);
      const app = await appliedAppMigrations(c);
      if (app.length > 0) {
        throw new MigrationError(
          this.shard.id,
          `app migrations are applied on top of shardline's (newest ${app.at(-1) ?? ''}): undo them first with "shardline migrate rollback --app-migrations DIR", once per app migration`,
        );
      }
    });
    return this.run(async (k) => {
      const [, undone] = (await k.migrate.rollback()) as [number, string[]];
      return undone.map((f) => f.replace(/\.(ts|js|mjs)$/, ''));
    });
  }

  /**
   * The app migrations applied here, and the self-closure faults of the app's tables as they
   * stand; refused (MigrationError) on a shard without shardline's migration 0006.
   */
  async appState(): Promise<{ applied: string[]; faults: SelfClosureFault[] }> {
    return this.withClient(async (c) => {
      if (!(await hasAppMigrationsTables(c))) {
        throw new MigrationError(this.shard.id, 'shardline\'s migration 0006 (the app migrations tables) is not applied: run "shardline migrate latest" first');
      }
      return { applied: await appliedAppMigrations(c), faults: await selfClosureFaults(c) };
    });
  }

  /** The self-closure faults of the app's tables as they stand (read-only, any shard). */
  async selfClosureFaults(): Promise<SelfClosureFault[]> {
    return this.withClient((c) => selfClosureFaults(c));
  }

  /**
   * Applies the app migration `name` (the next pending one), in one transaction with the
   * self-closure check: SelfClosureError when a table breaks a rule (the migration is rolled back),
   * MigrationError when the migration itself fails.
   */
  async appUp(name: string): Promise<void> {
    this.requireAppDir();
    try {
      await this.run((k) => k.migrate.up({ name }), true);
    } catch (err) {
      if (err instanceof ShardlineError) throw err;
      throw new MigrationError(this.shard.id, `app migration ${name} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Undoes the newest applied app migration (none when there is none); refuses a shard ahead of the folder. */
  async appRollback(): Promise<string[]> {
    const dir = this.requireAppDir();
    const ready = await this.withClient(async (c) => {
      await checkIdentity(c, this.shard);
      const applied = await appliedAppMigrations(c);
      const standing = appSchemaStanding(applied, migrationNames(dir));
      const problem = appSchemaProblem(this.shard.id, applied, dir);
      if (problem && (standing.kind === 'ahead' || standing.kind === 'out-of-order')) throw problem;
      return hasAppMigrationsTables(c);
    });
    if (!ready) return []; // before 0006: no app migration can be applied, so none is undone
    return this.run(async (k) => {
      const [, undone] = (await k.migrate.rollback()) as [number, string[]];
      return undone.map((f) => f.replace(/\.(ts|js|mjs)$/, ''));
    }, true);
  }

  private requireAppDir(): string {
    const dir = this.options.appMigrations;
    if (dir === undefined) throw new ValidationError('appMigrations', 'no app migrations folder given');
    return dir;
  }

  /** Refuses unless the shard is at exactly the version this code expects. */
  async assertCurrent(): Promise<void> {
    await this.withClient((c) => assertSchemaCurrent(c, this.shard.id, this.dir));
  }

  private async run<T>(fn: (k: Knex) => Promise<T>, app = false): Promise<T> {
    const k = this.knex(app);
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

/** The ownership record of a shard (migration 0009), or null before 0009 (or when unreadable as one). */
async function readOwnership(c: pg.ClientBase): Promise<OwnershipRecord | null> {
  const r = await c.query<{ value: unknown }>(`SELECT value FROM shardline_meta WHERE key = 'ownership'`);
  return parseOwnershipRecord(r.rows[0]?.value);
}
