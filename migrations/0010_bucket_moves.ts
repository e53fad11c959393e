import type { Knex } from 'knex';

/**
 * Bucket moves (docs/resharding.md): one row per move on both shards of it, the source and the
 * target, so either side tells an operator (and `shards check`) what is under way there, and a mover
 * that died is resumed from what the rows say. The mover (owner role) is the only writer.
 *
 * `artifacts` holds the names of everything the move creates (publication, slot, subscription) and
 * the source ownership it fenced, written *before* each is created: a mover killed between the
 * two leaves a name to clean up, never an unnamed orphan (Citus #6472). `state` is one of
 * MOVE_STATES in src/reshard/states.ts (not a CHECK here: a later state must not need a migration
 * of every shard before a newer mover may write it). `cursor` is the first bucket of the range not
 * yet committed on the target (freeze mode commits batch by batch); `batch_lo`/`batch_hi` the
 * batch in flight.
 *
 * A move reads and deletes a shard's rows bucket by bucket (copy, verify and purge of each batch),
 * so each moved table gets an index on its bucket: an expression index on the player id's bucket
 * bits for the player tables (identities are keyed by bucket already), and on the home bucket of
 * a claim's match id through `shardline_home_bucket(text)`. That function is declared IMMUTABLE
 * although convert_to is only STABLE: the conversion from the database's own encoding to UTF-8 is
 * fixed for the life of the database, which is all an index needs. Without these, every batch
 * would scan every table whole.
 *
 * The application role may read the rows (routing diagnostics) and write none: the default
 * privileges of 0003 would give it DML, so they are taken back here, as 0003 did for
 * shardline_meta. The role name is read as in 0003. No `?` appears in this SQL: knex.raw would
 * take it for a binding.
 */
const APP_ROLE = `coalesce(nullif(current_setting('shardline.app_role', true), ''), 'shardline_app')`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE shardline_moves (
      id text PRIMARY KEY,
      side text NOT NULL,
      range_lo integer NOT NULL,
      range_hi integer NOT NULL,
      from_shard text NOT NULL,
      to_shard text NOT NULL,
      mode text NOT NULL,
      state text NOT NULL,
      cursor integer NOT NULL,
      batch_lo integer,
      batch_hi integer,
      epoch integer,
      artifacts jsonb NOT NULL DEFAULT '{}'::jsonb,
      options jsonb NOT NULL DEFAULT '{}'::jsonb,
      rows_copied bigint NOT NULL DEFAULT 0,
      lag_bytes bigint,
      frozen_ms bigint NOT NULL DEFAULT 0,
      error text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      switched_at timestamptz,
      finished_at timestamptz,
      CONSTRAINT shardline_moves_side_check CHECK (side IN ('source', 'target')),
      CONSTRAINT shardline_moves_mode_check CHECK (mode IN ('freeze', 'logical')),
      CONSTRAINT shardline_moves_range_check CHECK (range_lo >= 0 AND range_lo <= range_hi AND range_hi <= 4095),
      CONSTRAINT shardline_moves_cursor_check CHECK (cursor >= range_lo AND cursor <= range_hi + 1),
      CONSTRAINT shardline_moves_id_check CHECK (id ~ '^[a-z0-9]{1,40}$')
    )`);
  await knex.raw(`
    CREATE FUNCTION shardline_home_bucket(match_id text) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
      SELECT ((get_byte(sha256(convert_to(match_id, 'UTF8')), 2) & 15) << 8) | get_byte(sha256(convert_to(match_id, 'UTF8')), 3)
    $$`);
  for (const t of ['players', 'player_stats', 'settlement_ledger', 'player_identities']) {
    // sql-text: table names from the literal list of the loop
    await knex.raw(`CREATE INDEX ${t}_bucket ON ${t} ((((player_id >> 10) & 4095)::int))`);
  }
  await knex.raw(`CREATE INDEX settlement_inbox_claims_home_bucket ON settlement_inbox_claims (shardline_home_bucket(match_id))`);
  await knex.raw(`
    DO $$
    DECLARE
      app text := ${APP_ROLE};
    BEGIN
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app) THEN
        EXECUTE format('REVOKE ALL ON shardline_moves FROM %I', app);
        EXECUTE format('GRANT SELECT ON shardline_moves TO %I', app);
      END IF;
    END $$`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE shardline_moves`);
  await knex.raw(`DROP INDEX settlement_inbox_claims_home_bucket`);
  // sql-text: table names from the literal list of the loop
  for (const t of ['players', 'player_stats', 'settlement_ledger', 'player_identities']) await knex.raw(`DROP INDEX ${t}_bucket`);
  await knex.raw(`DROP FUNCTION shardline_home_bucket(text)`);
}
