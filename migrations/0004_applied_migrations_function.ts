import type { Knex } from 'knex';

/**
 * Takes knex_migrations away from the application role. 0003 let it SELECT the table because the
 * library and the worker refuse a shard whose schema is behind the code, and that check reads the
 * applied migrations. Instead, `shardline_applied_migrations()` (SECURITY DEFINER, owned by the
 * owner role running this migration) hands out just the applied names, and the application role
 * gets EXECUTE on it and nothing on either knex table.
 *
 * search_path is pinned on the function and the table is schema-qualified in its body: a SECURITY
 * DEFINER function runs with the owner's rights, so it must not resolve names through a schema (or
 * pg_temp) the caller controls. EXECUTE is revoked from PUBLIC, which functions get by default.
 *
 * The role name is read as in 0003 (session setting `shardline.app_role`, default `shardline_app`),
 * and must be the role 0003 granted to: a different --app-role here would revoke from the wrong
 * role and leave the real one reading the table (or, rolling back, grant to the wrong one and
 * leave the real one with no schema check at all), so either way that is refused.
 *
 * No `?` appears in this SQL: knex.raw would take it for a binding.
 */
const APP_ROLE = `coalesce(nullif(current_setting('shardline.app_role', true), ''), 'shardline_app')`;

/** The guard of both directions: up revokes from this role, down grants back to it. */
const CHECK_APP_ROLE = `
      IF app = current_user OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app)
         OR NOT has_table_privilege(app, format('%I.players', s), 'SELECT') THEN
        RAISE EXCEPTION 'role "%" is not the application role migration 0003 granted to', app
          USING ERRCODE = '22023', HINT = 'pass the same --app-role (or $SHARDLINE_APP_ROLE) as when the shard was first migrated';
      END IF;`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    DO $$
    DECLARE
      app text := ${APP_ROLE};
      s text := current_schema();
    BEGIN
${CHECK_APP_ROLE}

      -- The body goes in as a literal (%L), so no schema name can break out of its quotes.
      EXECUTE format(
        'CREATE FUNCTION %I.shardline_applied_migrations() RETURNS text[] LANGUAGE sql STABLE SECURITY DEFINER '
          || 'SET search_path = pg_catalog, pg_temp AS %L',
        s, format($body$SELECT coalesce(array_agg(name ORDER BY id), '{}') FROM %I.knex_migrations$body$, s));
      EXECUTE format('REVOKE ALL ON FUNCTION %I.shardline_applied_migrations() FROM PUBLIC', s);
      EXECUTE format('GRANT EXECUTE ON FUNCTION %I.shardline_applied_migrations() TO %I', s, app);

      EXECUTE format('REVOKE ALL ON knex_migrations, knex_migrations_lock FROM %I', app);
    END $$`);
}

export async function down(knex: Knex): Promise<void> {
  // Back to 0003: the application role reads the table itself again.
  await knex.raw(`
    DO $$
    DECLARE
      app text := ${APP_ROLE};
      s text := current_schema();
    BEGIN
${CHECK_APP_ROLE}
      EXECUTE format('DROP FUNCTION IF EXISTS %I.shardline_applied_migrations()', s);
      EXECUTE format('GRANT SELECT ON knex_migrations TO %I', app);
    END $$`);
}
