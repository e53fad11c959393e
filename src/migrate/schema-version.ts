import type pg from 'pg';
import { SchemaVersionError } from '../errors/index.js';
import { sqlState } from '../db/pg-errors.js';
import { MIGRATIONS_DIR, expectedVersion, migrationNames } from './migration-source.js';

// No knex here (its type-only import in migration-source aside): ShardSet checks every shard's
// schema on first use, and shardline/db must not load knex.

/**
 * Refuses (SchemaVersionError) unless the shard behind `db` is at exactly the version this code
 * expects. Takes any client or pool, so a long-running process checks through the connections it
 * already has, with their timeouts, instead of opening one of its own.
 */
export async function assertSchemaCurrent(db: Pick<pg.ClientBase, 'query'>, shardId: string, dir: string = MIGRATIONS_DIR): Promise<void> {
  const expected = expectedVersion(dir);
  const version = (await appliedMigrations(db)).at(-1) ?? null;
  if (version === expected) return;
  const known = migrationNames(dir);
  const hint = version !== null && !known.includes(version) ? 'the shard is ahead of this code: deploy the newer code' : 'run "shardline migrate latest"';
  throw new SchemaVersionError(shardId, version, expected, hint);
}

const withoutExtension = (names: readonly string[]) => names.map((n) => n.replace(/\.(ts|js|mjs)$/, ''));

/**
 * The applied migrations, as the application role may read them: through the SECURITY DEFINER
 * function of 0004, since that role has no grant on knex_migrations. A shard still before 0004 has
 * no function, and there the table is readable (0003 granted SELECT; an owner always can).
 */
export async function appliedMigrations(c: Pick<pg.ClientBase, 'query'>): Promise<string[]> {
  try {
    const r = await c.query<{ names: string[] }>('SELECT shardline_applied_migrations() AS names');
    return withoutExtension(r.rows[0]?.names ?? []);
  } catch (err) {
    if (sqlState(err) !== '42883') throw err; // undefined_function: before 0004, or never migrated
  }
  try {
    const r = await c.query<{ name: string }>('SELECT name FROM knex_migrations ORDER BY id');
    return withoutExtension(r.rows.map((row) => row.name));
  } catch (err) {
    if (sqlState(err) === '42P01') return [];
    throw err;
  }
}
