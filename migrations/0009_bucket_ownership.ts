import type { Knex } from 'knex';

/**
 * Bucket ownership with epochs, and the fence that enforces it inside the database (docs/shard-map.md,
 * "Live routing"; docs/guarantees.md).
 *
 * The ownership record is `shardline_meta['ownership']`:
 *   { version, owned: [[lo, hi, epoch]…], incoming: [[lo, hi, moveId]…], frozen: [[lo, hi, moveId]…],
 *     movedTo: [[lo, hi, shardId, epoch]…] }
 * created here from the identity stamp's buckets at epoch 0 (a shard stamped with no buckets owns
 * none). A template database, migrated unstamped, gets none: stamping it creates it
 * (src/db/identity.ts), and without a record no fence is installed.
 *
 * The fence is a pair of row triggers on every player table (shardline's and the app's: a table
 * whose primary key starts with a bigint player_id), on identities (by their bucket column) and on
 * claims (by the match id's home bucket, INSERT only). Their `WHEN` clause holds the owned buckets
 * as a literal int4multirange, so a row in an owned bucket never enters PL/pgSQL (it costs about
 * nothing), and since triggers come from the catalog, a transaction whose snapshot predates a fence
 * change still sees the new fence. The trigger arguments carry the frozen ranges and `movedTo`, so
 * the refusal can say where the bucket went without reading a table through an old snapshot.
 *
 * `shardline_set_ownership(record)` changes ownership: it locks every fenced table IN SHARE ROW
 * EXCLUSIVE MODE in the writers' order (waiting out every transaction in flight, so nothing commits
 * into a bucket after it lost it; readers and foreign-key checks are not blocked), writes the record
 * with version + 1 and re-creates the triggers, all in the caller's transaction (the caller sets
 * `SET LOCAL lock_timeout`). `SET LOCAL shardline.fence = 'off'` lets the mover copy into incoming
 * ranges and purge moved rows: the fence guards against stale writers, not malicious ones.
 *
 * Both functions belong to the owner role: EXECUTE is revoked from PUBLIC and from the application
 * role, which 0003's default privileges would give it. The application role reads the record
 * (SELECT on shardline_meta, as today). The role name is read as in 0003, and must be that role.
 * No `?` appears in this SQL: knex.raw would take it for a binding.
 */
const APP_ROLE = `coalesce(nullif(current_setting('shardline.app_role', true), ''), 'shardline_app')`;

const CHECK_APP_ROLE = `
      IF app = current_user OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app)
         OR NOT has_table_privilege(app, format('%I.players', s), 'SELECT') THEN
        RAISE EXCEPTION 'role "%" is not the application role migration 0003 granted to', app
          USING ERRCODE = '22023', HINT = 'pass the same --app-role (or $SHARDLINE_APP_ROLE) as when the shard was first migrated';
      END IF;`;

/** The bucket expressions by kind, with ROW standing for NEW or OLD (contract A; equal to the TS ones, test/reshard/fence.test.ts). */
const PLAYER_BUCKET = `((ROW.player_id >> 10) & 4095)::int`;
const HOME_BUCKET = `(((get_byte(sha256(convert_to(ROW.match_id, 'UTF8')), 2) & 15) << 8) | get_byte(sha256(convert_to(ROW.match_id, 'UTF8')), 3))`;

export async function up(knex: Knex): Promise<void> {
  // The fenced tables in the writers' lock order (ledger → stats → player_identities → players →
  // identities → claims, then the app's player tables by name), with how each finds its bucket.
  // player_identities before players: creating a player with a login is one statement that inserts
  // its player_identities row first, and a fence taking players first deadlocked with it under load.
  await knex.raw(`
    CREATE FUNCTION shardline_fenced_tables() RETURNS TABLE (rel regclass, kind text)
    LANGUAGE sql STABLE AS $$
      SELECT t.rel, t.kind FROM (
        SELECT c.oid::regclass AS rel,
               CASE WHEN n.nspname = current_schema() AND c.relname = 'identities' THEN 'bucket'
                    WHEN n.nspname = current_schema() AND c.relname = 'settlement_inbox_claims' THEN 'home'
                    ELSE 'player' END AS kind,
               CASE WHEN n.nspname <> current_schema() THEN 100
                    ELSE coalesce(array_position(ARRAY['settlement_ledger', 'player_stats', 'player_identities', 'players', 'identities',
                                                       'settlement_inbox_claims']::name[], c.relname), 100) END AS ord,
               n.nspname, c.relname
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
           AND coalesce(obj_description(c.oid, 'pg_class'), '') <> 'shardline:local'
           AND (
             -- settlement_ledger's key is (match_id, player_id): named, like the two keyed by bucket.
             (n.nspname = current_schema() AND c.relname IN ('settlement_ledger', 'identities', 'settlement_inbox_claims'))
             OR EXISTS (
               SELECT 1 FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
                WHERE k.conrelid = c.oid AND k.contype = 'p' AND a.attname = 'player_id' AND a.atttypid = 'bigint'::regtype)
           )
      ) t
      ORDER BY t.ord, t.nspname, t.relname
    $$`);

  // Raised by the fence triggers: SQLSTATE 23514 with a constraint name the library maps
  // (src/db/pg-errors.ts), a DETAIL that is JSON, and the message naming the bucket.
  // TG_ARGV: kind, frozen ranges (int4multirange text), movedTo (jsonb text).
  // sql-text: the module's own bucket expressions, rewritten for the row variable; no input reaches it
  await knex.raw(`
    CREATE FUNCTION shardline_refuse_moved() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
      r record;
      b integer;
      dest text;
      ep integer;
    BEGIN
      IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
      IF TG_ARGV[0] = 'bucket' THEN
        b := r.bucket;
      ELSIF TG_ARGV[0] = 'home' THEN
        b := ${HOME_BUCKET.replaceAll('ROW.', 'r.')};
      ELSE
        b := ${PLAYER_BUCKET.replaceAll('ROW.', 'r.')};
      END IF;
      IF TG_ARGV[1]::int4multirange @> b THEN
        RAISE EXCEPTION 'bucket % is being moved off this shard (%): retry shortly', b, TG_TABLE_NAME
          USING ERRCODE = '23514', CONSTRAINT = 'shardline_frozen_buckets', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
                DETAIL = jsonb_build_object('bucket', b, 'movedTo', NULL, 'epoch', NULL)::text;
      END IF;
      SELECT e->>2, (e->>3)::int INTO dest, ep
        FROM jsonb_array_elements(TG_ARGV[2]::jsonb) e
       WHERE b BETWEEN (e->>0)::int AND (e->>1)::int
       ORDER BY (e->>3)::int DESC LIMIT 1;
      RAISE EXCEPTION 'bucket % is not owned by this shard (%)%', b, TG_TABLE_NAME, CASE WHEN dest IS NULL THEN '' ELSE format(': moved to shard %s at epoch %s', dest, ep) END
        USING ERRCODE = '23514', CONSTRAINT = 'shardline_owned_buckets', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
              DETAIL = jsonb_build_object('bucket', b, 'movedTo', dest, 'epoch', ep)::text;
    END $$`);

  // Re-creates the fence from the stored record, after locking every fenced table in order.
  // sql-text: the module's own bucket expressions, rewritten for the row variable; no input reaches it
  await knex.raw(`
    CREATE FUNCTION shardline_apply_fence() RETURNS void
    LANGUAGE plpgsql AS $$
    DECLARE
      rec jsonb;
      t record;
      owned text;
      frozen text;
      moved text;
      fn text := format('%I.shardline_refuse_moved', current_schema());
      expr_new text;
      expr_old text;
      pass text := 'current_setting(''shardline.fence'', true) IS DISTINCT FROM ''off''';
    BEGIN
      FOR t IN SELECT * FROM shardline_fenced_tables() LOOP
        EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', t.rel);
      END LOOP;
      SELECT value INTO rec FROM shardline_meta WHERE key = 'ownership';
      IF rec IS NULL THEN
        FOR t IN SELECT * FROM shardline_fenced_tables() LOOP
          EXECUTE format('DROP TRIGGER IF EXISTS shardline_fence_w ON %s', t.rel);
          EXECUTE format('DROP TRIGGER IF EXISTS shardline_fence_d ON %s', t.rel);
        END LOOP;
        RETURN;
      END IF;
      owned := coalesce((SELECT range_agg(int4range((e->>0)::int, (e->>1)::int, '[]'))
                           FROM jsonb_array_elements(coalesce(rec->'owned', '[]')) e)::text, '{}');
      frozen := coalesce((SELECT range_agg(int4range((e->>0)::int, (e->>1)::int, '[]'))
                            FROM jsonb_array_elements(coalesce(rec->'frozen', '[]')) e)::text, '{}');
      moved := coalesce(rec->'movedTo', '[]')::text;
      FOR t IN SELECT * FROM shardline_fenced_tables() LOOP
        expr_new := CASE t.kind WHEN 'bucket' THEN 'NEW.bucket' WHEN 'home' THEN $e$${HOME_BUCKET.replaceAll('ROW.', 'NEW.')}$e$
                    ELSE $e$${PLAYER_BUCKET.replaceAll('ROW.', 'NEW.')}$e$ END;
        expr_old := CASE t.kind WHEN 'bucket' THEN 'OLD.bucket' ELSE $e$${PLAYER_BUCKET.replaceAll('ROW.', 'OLD.')}$e$ END;
        EXECUTE format('CREATE OR REPLACE TRIGGER shardline_fence_w BEFORE %s ON %s FOR EACH ROW WHEN (NOT (%L::int4multirange @> %s) AND %s) EXECUTE FUNCTION %s(%L, %L, %L)',
                       CASE t.kind WHEN 'home' THEN 'INSERT' ELSE 'INSERT OR UPDATE' END, t.rel, owned, expr_new, pass, fn, t.kind, frozen, moved);
        IF t.kind = 'home' THEN
          EXECUTE format('DROP TRIGGER IF EXISTS shardline_fence_d ON %s', t.rel);
        ELSE
          EXECUTE format('CREATE OR REPLACE TRIGGER shardline_fence_d BEFORE DELETE ON %s FOR EACH ROW WHEN (NOT (%L::int4multirange @> %s) AND %s) EXECUTE FUNCTION %s(%L, %L, %L)',
                         t.rel, owned, expr_old, pass, fn, t.kind, frozen, moved);
        END IF;
      END LOOP;
    END $$`);

  // Writes a new record (version = old + 1) and the fence it implies, in the caller's transaction.
  await knex.raw(`
    CREATE FUNCTION shardline_set_ownership(new_record jsonb) RETURNS integer
    LANGUAGE plpgsql AS $$
    DECLARE
      t record;
      k text;
      e jsonb;
      old_version integer;
      v integer;
      rec jsonb;
      owned int4multirange;
      other int4multirange;
    BEGIN
      IF jsonb_typeof(new_record) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'an ownership record is a JSON object, got %', coalesce(jsonb_typeof(new_record), 'null') USING ERRCODE = '22023';
      END IF;
      rec := new_record;
      FOREACH k IN ARRAY ARRAY['owned', 'incoming', 'frozen', 'movedTo'] LOOP
        rec := jsonb_set(rec, ARRAY[k], coalesce(new_record->k, '[]'));
        IF jsonb_typeof(rec->k) <> 'array' THEN
          RAISE EXCEPTION 'ownership record: "%" must be an array', k USING ERRCODE = '22023';
        END IF;
        FOR e IN SELECT * FROM jsonb_array_elements(rec->k) LOOP
          IF NOT (jsonb_typeof(e) = 'array' AND coalesce(e->>0 ~ '^[0-9]{1,4}$', false) AND coalesce(e->>1 ~ '^[0-9]{1,4}$', false)
                  AND CASE k WHEN 'owned' THEN coalesce(e->>2 ~ '^[0-9]{1,9}$', false) AND jsonb_typeof(e->2) = 'number'
                             WHEN 'movedTo' THEN jsonb_typeof(e->2) = 'string' AND jsonb_typeof(e->3) = 'number' AND coalesce(e->>3 ~ '^[0-9]{1,9}$', false)
                             ELSE jsonb_typeof(e->2) = 'string' END) THEN
            RAISE EXCEPTION 'ownership record: % entry % is not of that list''s form', k, e USING ERRCODE = '22023';
          END IF;
          IF (e->>0)::int > (e->>1)::int OR (e->>1)::int > 4095 THEN
            RAISE EXCEPTION 'ownership record: % entry % is not a bucket range (0 <= lo <= hi <= 4095)', k, e USING ERRCODE = '22023';
          END IF;
        END LOOP;
      END LOOP;
      owned := coalesce((SELECT range_agg(int4range((x->>0)::int, (x->>1)::int, '[]')) FROM jsonb_array_elements(rec->'owned') x), '{}');
      other := coalesce((SELECT range_agg(int4range((u.x->>0)::int, (u.x->>1)::int, '[]'))
                           FROM (SELECT * FROM jsonb_array_elements(rec->'incoming') UNION ALL SELECT * FROM jsonb_array_elements(rec->'frozen')) AS u(x)), '{}');
      IF owned && other THEN
        RAISE EXCEPTION 'ownership record: buckets % are owned and also incoming or frozen', (owned * other)::text USING ERRCODE = '22023';
      END IF;
      -- Lock before the record changes: every writer in flight finishes first, under the old fence.
      FOR t IN SELECT * FROM shardline_fenced_tables() LOOP
        EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', t.rel);
      END LOOP;
      SELECT (value->>'version')::int INTO old_version FROM shardline_meta WHERE key = 'ownership' FOR UPDATE;
      v := coalesce(old_version, 0) + 1;
      rec := jsonb_set(rec, '{version}', to_jsonb(v));
      INSERT INTO shardline_meta (key, value) VALUES ('ownership', rec)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
      PERFORM shardline_apply_fence();
      RETURN v;
    END $$`);

  // The first record: the stamp's buckets, owned at epoch 0 ("" or absent: none).
  await knex.raw(`
    INSERT INTO shardline_meta (key, value)
    SELECT 'ownership', jsonb_build_object(
             'version', 1,
             'owned', coalesce((SELECT jsonb_agg(jsonb_build_array(split_part(p, '-', 1)::int,
                                                                   coalesce(nullif(split_part(p, '-', 2), ''), split_part(p, '-', 1))::int, 0))
                                  FROM unnest(string_to_array(replace(coalesce(value->>'buckets', ''), ' ', ''), ',')) p
                                 WHERE p <> ''), '[]'::jsonb),
             'incoming', '[]'::jsonb, 'frozen', '[]'::jsonb, 'movedTo', '[]'::jsonb)
      FROM shardline_meta WHERE key = 'identity'
    ON CONFLICT (key) DO NOTHING`);
  await knex.raw(`SELECT shardline_apply_fence()`);

  await knex.raw(`
    DO $$
    DECLARE
      app text := ${APP_ROLE};
      s text := current_schema();
    BEGIN
${CHECK_APP_ROLE}
      EXECUTE format('REVOKE ALL ON FUNCTION %I.shardline_set_ownership(jsonb), %I.shardline_apply_fence(), %I.shardline_fenced_tables() FROM PUBLIC, %I', s, s, s, app);
    END $$`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DO $$
    DECLARE t record;
    BEGIN
      FOR t IN SELECT * FROM shardline_fenced_tables() LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS shardline_fence_w ON %s', t.rel);
        EXECUTE format('DROP TRIGGER IF EXISTS shardline_fence_d ON %s', t.rel);
      END LOOP;
    END $$`);
  await knex.raw(`DELETE FROM shardline_meta WHERE key = 'ownership'`);
  await knex.raw(`DROP FUNCTION shardline_set_ownership(jsonb)`);
  await knex.raw(`DROP FUNCTION shardline_apply_fence()`);
  await knex.raw(`DROP FUNCTION shardline_refuse_moved()`);
  await knex.raw(`DROP FUNCTION shardline_fenced_tables()`);
}
