import type { Knex } from 'knex';

/**
 * Least privilege. Migrations run as the owner role (it owns every table); the library and the
 * settlement worker run as the application role, which gets only what they need:
 *
 * - SELECT, INSERT, UPDATE, DELETE on every data table (player record set, settlement inbox), USAGE
 *   on their sequences, EXECUTE on their functions (shardline_player_id);
 * - SELECT on shardline_meta (the identity check) and knex_migrations (the schema-version check),
 *   nothing on knex_migrations_lock, and no write to any of the three (0004 takes knex_migrations
 *   back, leaving a SECURITY DEFINER function for the check);
 * - no DDL: it owns nothing, so it can neither ALTER nor DROP, and it may not CREATE in the schema.
 *
 * Tables of later migrations are covered without each one granting: ALTER DEFAULT PRIVILEGES gives
 * every table, sequence and function the owner creates from now on the same DML grants. That holds
 * as long as migrations always run as the same owner role (the default privileges belong to it). A
 * later bookkeeping table that the application must not write has to REVOKE explicitly.
 *
 * The role name comes from the session setting `shardline.app_role`, which ShardMigrator sets from
 * its `appRole` option (CLI: --app-role or $SHARDLINE_APP_ROLE); default `shardline_app`. The role is
 * created NOLOGIN when missing (the owner needs CREATEROLE for that, or an operator creates it
 * first); production logins are separate roles that are granted membership in it.
 *
 * No `?` appears in this SQL: knex.raw would take it for a binding.
 */
const APP_ROLE = `coalesce(nullif(current_setting('shardline.app_role', true), ''), 'shardline_app')`;

export async function up(knex: Knex): Promise<void> {
  // shardline_meta is normally created by the identity stamp before any migration, but a template
  // database is migrated unstamped: create it now, so it exists before the default privileges
  // below and does not inherit write grants from them.
  await knex.raw(`CREATE TABLE IF NOT EXISTS shardline_meta (key text PRIMARY KEY, value jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
  await knex.raw(`
    DO $$
    DECLARE
      app text := ${APP_ROLE};
      s text := current_schema();
      seq text;
    BEGIN
      IF app = current_user THEN
        RAISE EXCEPTION 'the application role "%" is the role running the migrations; use a separate role', app
          USING ERRCODE = '22023';
      END IF;
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app) THEN
        BEGIN
          EXECUTE format('CREATE ROLE %I NOLOGIN', app);
        EXCEPTION
          -- Another shard on this server created it a moment ago: roles are per server.
          WHEN duplicate_object OR unique_violation THEN NULL;
          WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'role "%" does not exist and "%" may not create it', app, current_user
              USING ERRCODE = '42501', HINT = format('create it once per server: CREATE ROLE %I NOLOGIN', app);
        END;
      END IF;
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'the application role "%" is a superuser or bypasses row security: grants would mean nothing', app
          USING ERRCODE = '22023';
      END IF;

      EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, app);
      EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I', s, app);
      EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', s, app);
      EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %I TO %I', s, app);

      -- Bookkeeping: readable where the library checks it, never writable.
      EXECUTE format('REVOKE ALL ON shardline_meta, knex_migrations, knex_migrations_lock FROM %I', app);
      EXECUTE format('GRANT SELECT ON shardline_meta, knex_migrations TO %I', app);
      FOR seq IN
        SELECT pg_get_serial_sequence(t, c) FROM (VALUES ('knex_migrations', 'id'), ('knex_migrations_lock', 'index')) AS v(t, c)
      LOOP
        IF seq IS NOT NULL THEN EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', seq, app); END IF;
      END LOOP;

      -- Whatever later migrations create (as this same role) gets the same DML grants.
      EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', s, app);
      EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO %I', s, app);
      EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT EXECUTE ON FUNCTIONS TO %I', s, app);

      -- No DDL through the schema: PostgreSQL before 15 let every role CREATE in public. (A warning,
      -- not an error, when the migration role does not own the schema; 15+ already revokes it.)
      EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', s);
    END $$`);
}

export async function down(knex: Knex): Promise<void> {
  // The role itself stays: it is shared by every shard database on the server.
  await knex.raw(`
    DO $$
    DECLARE
      app text := ${APP_ROLE};
      s text := current_schema();
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app) THEN RETURN; END IF;
      EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM %I', s, app);
      EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON SEQUENCES FROM %I', s, app);
      EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON FUNCTIONS FROM %I', s, app);
      EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', s, app);
      EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I', s, app);
      EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM %I', s, app);
      EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %I', s, app);
    END $$`);
}
