import type pg from 'pg';
import { AppSchemaVersionError } from '../errors/index.js';
import { sqlState } from '../db/pg-errors.js';
import { migrationNames } from './migration-source.js';

// No knex here (its type-only import in migration-source aside): ShardSet runs this check on
// first use of a shard, and shardline/db must not load knex.

/** knex's migrations table for the app's migrations (its lock table is this name + "_lock"; both made by migration 0006). */
export const APP_MIGRATIONS_TABLE = 'shardline_app_migrations';

type Queryable = Pick<pg.ClientBase, 'query'>;

const withoutExtension = (names: readonly string[]) => names.map((n) => n.replace(/\.(ts|js|mjs)$/, ''));

/**
 * The app migrations applied on a shard, in order, as the application role may read them: through
 * the SECURITY DEFINER function of 0006. A shard before 0006 has no function, and no app
 * migrations either.
 */
export async function appliedAppMigrations(db: Queryable): Promise<string[]> {
  try {
    const r = await db.query<{ names: string[] }>('SELECT shardline_applied_app_migrations() AS names');
    return withoutExtension(r.rows[0]?.names ?? []);
  } catch (err) {
    if (sqlState(err) === '42883') return []; // undefined_function: before 0006, or never migrated
    throw err;
  }
}

/**
 * True once migration 0006 made the app's migrations tables. Before, knex would create them itself
 * on first use, with the application role's default grants on them, so nothing runs app
 * migrations there.
 */
export async function hasAppMigrationsTables(db: Queryable): Promise<boolean> {
  const r = await db.query<{ ok: boolean }>(`SELECT to_regprocedure('shardline_applied_app_migrations()') IS NOT NULL AS ok`);
  return r.rows[0]?.ok === true;
}

/** How a shard's applied app migrations stand against the folder. */
export type AppSchemaStanding =
  | { kind: 'current' }
  | { kind: 'behind'; pending: string[] }
  /** Applied names the folder does not have: newer code migrated this shard. */
  | { kind: 'ahead'; unknown: string[] }
  /** Every applied name is known, but not as the folder's first ones in order. */
  | { kind: 'out-of-order' };

/** Pure: where `applied` stands against the folder's `known` names (both in order). */
export function appSchemaStanding(applied: readonly string[], known: readonly string[]): AppSchemaStanding {
  const unknown = applied.filter((a) => !known.includes(a));
  if (unknown.length > 0) return { kind: 'ahead', unknown };
  if (applied.some((a, i) => known[i] !== a)) return { kind: 'out-of-order' };
  return applied.length === known.length ? { kind: 'current' } : { kind: 'behind', pending: known.slice(applied.length) };
}

/** The refusal for a shard whose app schema is not the folder's, or null when it is. */
export function appSchemaProblem(shardId: string, applied: readonly string[], dir: string): AppSchemaVersionError | null {
  const known = migrationNames(dir);
  const standing = appSchemaStanding(applied, known);
  const version = applied.at(-1) ?? null;
  const expected = known.at(-1) ?? null;
  switch (standing.kind) {
    case 'current':
      return null;
    case 'behind':
      return new AppSchemaVersionError(
        shardId,
        version,
        expected,
        `${standing.pending.length} app migration(s) pending: run "shardline migrate latest --app-migrations ${dir}"`,
      );
    case 'ahead':
      return new AppSchemaVersionError(
        shardId,
        version,
        expected,
        `the shard has app migrations this folder lacks (${standing.unknown.join(', ')}): the shard is ahead of this code, deploy the newer code`,
      );
    case 'out-of-order':
      return new AppSchemaVersionError(
        shardId,
        version,
        expected,
        `the shard applied ${applied.join(', ')}, not the folder's first migrations in order: the folder was edited after they ran`,
      );
    default: {
      const unhandled: never = standing;
      throw new Error(`unhandled standing ${JSON.stringify(unhandled)}`);
    }
  }
}

/** Refuses (AppSchemaVersionError) unless the shard behind `db` has applied exactly the folder's app migrations. */
export async function assertAppSchemaCurrent(db: Queryable, shardId: string, dir: string): Promise<void> {
  const problem = appSchemaProblem(shardId, await appliedAppMigrations(db), dir);
  if (problem) throw problem;
}

/**
 * The app schema check of a long-running process (ShardSet, the worker): with a folder, a shard
 * not at it is refused; without one, a shard that has app migrations is served, and the first
 * such shard is reported once (`warn`), since nothing checks its app schema.
 */
export class AppSchemaGate {
  private warned = false;
  constructor(
    private readonly dir: string | undefined,
    private readonly warn: (message: string, fields: { shardId: string; appVersion: string }) => void = defaultWarn,
  ) {}

  async check(db: Queryable, shardId: string): Promise<void> {
    if (this.dir !== undefined) return assertAppSchemaCurrent(db, shardId, this.dir);
    if (this.warned) return;
    const version = (await appliedAppMigrations(db)).at(-1);
    if (version === undefined || this.warned) return;
    this.warned = true;
    this.warn(
      `shard "${shardId}" has app migrations up to ${version}, not checked: this process was given no app migrations folder (option appMigrations, flag --app-migrations)`,
      { shardId, appVersion: version },
    );
  }
}

function defaultWarn(message: string): void {
  process.emitWarning(message, { code: 'SHARDLINE_APP_SCHEMA_UNCHECKED' });
}
