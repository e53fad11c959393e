import type { Knex } from 'knex';

/**
 * Room for the app's own migrations (`shardline migrate latest --app-migrations DIR`,
 * docs/app-tables.md), tracked apart from shardline's so that neither set looks corrupt or ahead
 * to the other: `shardline_app_migrations` and `shardline_app_migrations_lock`, the layout knex
 * gives any migrations table (knex finds them here and uses them).
 *
 * They are created now, by this migration, rather than by knex on the first app migration: the
 * default privileges of 0003 give everything the owner creates the application role's DML grants,
 * and bookkeeping must not be writable by it. So, as 0003 did for knex_migrations, the grants are
 * taken back at once, and as 0004 did, `shardline_applied_app_migrations()` (SECURITY DEFINER,
 * search_path pinned, the table schema-qualified, EXECUTE revoked from PUBLIC) hands the
 * application role just the applied names, for the drift check of ShardSet and the worker.
 *
 * down() refuses while app migrations are applied: dropping the table would forget them, and the
 * next `latest` would run them again on tables that exist.
 *
 * The role name is read as in 0003 and 0004, and must be the role 0003 granted to.
 * No `?` appears in this SQL: knex.raw would take it for a binding.
 */
const APP_ROLE = `coalesce(nullif(current_setting('shardline.app_role', true), ''), 'shardline_app')`;

const CHECK_APP_ROLE = `
      IF app = current_user OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app)
         OR NOT has_table_privilege(app, format('%I.players', s), 'SELECT') THEN
        RAISE EXCEPTION 'role "%" is not the application role migration 0003 granted to', app
          USING ERRCODE = '22023', HINT = 'pass the same --app-role (or $SHARDLINE_APP_ROLE) as when the shard was first migrated';
      END IF;`;

export async function up(knex: Knex): Promise<void> {
  // The same columns knex creates for a migrations table and its lock.
  await knex.schema.createTable('shardline_app_migrations', (t) => {
    t.increments();
    t.string('name');
    t.integer('batch');
    t.timestamp('migration_time');
  });
  await knex.schema.createTable('shardline_app_migrations_lock', (t) => {
    t.increments('index').primary();
    t.integer('is_locked');
  });
  await knex('shardline_app_migrations_lock').insert({ is_locked: 0 });
  await knex.raw(`
    DO $$
    DECLARE
      app text := ${APP_ROLE};
      s text := current_schema();
      seq text;
    BEGIN
${CHECK_APP_ROLE}

      EXECUTE format('REVOKE ALL ON shardline_app_migrations, shardline_app_migrations_lock FROM %I', app);
      FOR seq IN
        SELECT pg_get_serial_sequence(t, c) FROM (VALUES ('shardline_app_migrations', 'id'), ('shardline_app_migrations_lock', 'index')) AS v(t, c)
      LOOP
        IF seq IS NOT NULL THEN EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', seq, app); END IF;
      END LOOP;

      -- The body goes in as a literal (%L), so no schema name can break out of its quotes.
      EXECUTE format(
        'CREATE FUNCTION %I.shardline_applied_app_migrations() RETURNS text[] LANGUAGE sql STABLE SECURITY DEFINER '
          || 'SET search_path = pg_catalog, pg_temp AS %L',
        s, format($body$SELECT coalesce(array_agg(name ORDER BY id), '{}') FROM %I.shardline_app_migrations$body$, s));
      EXECUTE format('REVOKE ALL ON FUNCTION %I.shardline_applied_app_migrations() FROM PUBLIC', s);
      EXECUTE format('GRANT EXECUTE ON FUNCTION %I.shardline_applied_app_migrations() TO %I', s, app);
    END $$`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DO $$
    DECLARE
      newest text;
    BEGIN
      SELECT name INTO newest FROM shardline_app_migrations ORDER BY id DESC LIMIT 1;
      IF newest IS NOT NULL THEN
        RAISE EXCEPTION 'app migrations are applied on this shard (newest %); roll them back first', newest
          USING ERRCODE = '55000', HINT = 'shardline migrate rollback --app-migrations DIR, once per app migration';
      END IF;
    END $$`);
  await knex.raw(`DROP FUNCTION IF EXISTS shardline_applied_app_migrations()`);
  await knex.schema.dropTable('shardline_app_migrations_lock');
  await knex.schema.dropTable('shardline_app_migrations');
}
