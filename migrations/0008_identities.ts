import type { Knex } from 'knex';

/**
 * Login identities (docs/identities.md): `{ provider, subject }` pairs that find a player without a
 * lookup service, in two tables that follow the self-closure rules of docs/app-tables.md in spirit.
 *
 * `identities` is the directory: one row per identity, on the shard that owns the identity's
 * bucket (SHA-256 of `provider:subject`, like a match id's home shard in 0002). It is a record set
 * keyed by bucket, not by player: its primary key starts with `bucket`, so a bucket move (a later
 * issue) carries its rows by that one column, and a lookup is one primary-key read. It points at a
 * player on another shard, so it has no foreign key, and no sequence. The CHECK recomputes the
 * bucket from the row, so a row can never sit under a bucket other than its own.
 *
 * `player_identities` is on the player's shard, a player table (primary key starting with
 * player_id, no sequence): one row per identity request that touched the player, holding its
 * outcome. `linked` rows are the player's list; `unlinked` a link undone later; `removed` an unlink
 * request's own row; `aborted` a request given up by a resolver, so that it can never take effect
 * late. An aborted creation is recorded under the player id it had minted, for a player that was
 * never created: that is why this table has no foreign key to players.
 *
 * The application role gets DML on both (as 0003's default privileges would give it; granted here
 * explicitly so the migration says what it grants), never TRUNCATE or DDL. The role name is read as
 * in 0003, and must be the role 0003 granted to. No `?` appears in this SQL: knex.raw would take it
 * for a binding.
 */
const APP_ROLE = `coalesce(nullif(current_setting('shardline.app_role', true), ''), 'shardline_app')`;

const CHECK_APP_ROLE = `
      IF app = current_user OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app)
         OR NOT has_table_privilege(app, format('%I.players', s), 'SELECT') THEN
        RAISE EXCEPTION 'role "%" is not the application role migration 0003 granted to', app
          USING ERRCODE = '22023', HINT = 'pass the same --app-role (or $SHARDLINE_APP_ROLE) as when the shard was first migrated';
      END IF;`;

/** The bucket of (provider, subject) in SQL: the low 12 bits of the first four bytes of the SHA-256 = that uint32 mod 4096. */
const BUCKET_OF_ROW = `((get_byte(sha256(convert_to(provider || ':' || subject, 'UTF8')), 2) & 15) << 8)
                        | get_byte(sha256(convert_to(provider || ':' || subject, 'UTF8')), 3)`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE identities (
      bucket integer NOT NULL,
      provider text NOT NULL,
      subject text NOT NULL,
      player_id bigint NOT NULL,
      state text NOT NULL,
      request_id text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (bucket, provider, subject),
      CONSTRAINT identities_provider_check CHECK (provider ~ '^[a-z0-9_.-]{1,32}$'),
      CONSTRAINT identities_subject_check CHECK (char_length(subject) BETWEEN 1 AND 256),
      CONSTRAINT identities_bucket_check CHECK (bucket = (${BUCKET_OF_ROW})),
      CONSTRAINT identities_state_check CHECK (state IN ('pending', 'confirmed', 'unlinking')),
      CONSTRAINT identities_request_id_check CHECK (char_length(request_id) BETWEEN 1 AND 128)
    )`);
  // The sweeper's scan: only the rows still being settled, oldest first.
  await knex.raw(`CREATE INDEX identities_unsettled ON identities (updated_at) WHERE state <> 'confirmed'`);

  await knex.raw(`
    CREATE TABLE player_identities (
      player_id bigint NOT NULL,
      request_id text NOT NULL,
      provider text NOT NULL,
      subject text NOT NULL,
      state text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (player_id, request_id),
      CONSTRAINT player_identities_state_check CHECK (state IN ('linked', 'unlinked', 'removed', 'aborted'))
    )`);
  // A player holds an identity at most once.
  await knex.raw(`CREATE UNIQUE INDEX player_identities_linked ON player_identities (player_id, provider, subject) WHERE state = 'linked'`);

  await knex.raw(`
    DO $$
    DECLARE
      app text := ${APP_ROLE};
      s text := current_schema();
    BEGIN
${CHECK_APP_ROLE}
      EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.identities, %I.player_identities TO %I', s, s, app);
    END $$`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE player_identities`);
  await knex.raw(`DROP TABLE identities`);
}
