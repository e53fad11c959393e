import type { Knex } from 'knex';

/**
 * Makes `shardline_player_id(bucket)` collision-free at any rate. The 0001 version took the low 10
 * bits from `nextval(player_id_seq) % 1024` next to the wall-clock millisecond, so two calls 1024
 * sequence values apart inside one millisecond got the same id (a burst of 2000 ids from five
 * sessions did it on a 2-core machine), and a clock stepping back could repeat an old one.
 *
 * Now player_id_seq holds a logical clock, `(ms since 2024-01-01) << 10 | counter`, the last value
 * handed out on this shard. Each call takes `greatest(last + 1, now << 10)` and stores it back:
 * strictly increasing, so never repeated; it follows the wall clock while calls are slower than
 * 1024 per millisecond, borrows the next millisecond when they are faster (like PlayerIdGenerator),
 * and keeps counting when the clock steps back. The id layout is unchanged, and every id 0001 made
 * is older than the clock's first value here, so old and new ids cannot meet.
 *
 * The read and the store are one step under a session advisory lock: a sequence is not
 * transactional, so what one call stores is seen by the next at once, and no caller's transaction
 * holds anything after the call returns. The lock is released on every error path too (cancel
 * included), or a pooled connection would keep it and stop id creation on the shard.
 *
 * SECURITY DEFINER because `setval` needs UPDATE on the sequence, which the application role must
 * not have (it could rewind the clock). As in 0004: search_path pinned, names schema-qualified,
 * EXECUTE revoked from PUBLIC; the application role keeps the EXECUTE grant 0003 gave it, since
 * CREATE OR REPLACE keeps a function's privileges.
 *
 * No `?` appears in this SQL: knex.raw would take it for a binding.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    DO $$
    DECLARE
      s text := current_schema();
    BEGIN
      -- The body goes in as a literal (%L), so no schema name can break out of its quotes.
      EXECUTE format(
        'CREATE OR REPLACE FUNCTION %I.shardline_player_id(bucket integer) RETURNS bigint '
          || 'LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %L',
        s, format($body$
    DECLARE
      epoch_ms constant bigint := 1704067200000; -- 2024-01-01T00:00:00Z
      lock_key constant bigint := hashtext('shardline:player_id');
      last bigint;
      called boolean;
      next bigint;
    BEGIN
      IF bucket IS NULL OR bucket < 0 OR bucket > 4095 THEN
        RAISE EXCEPTION 'bucket %% out of range', bucket USING ERRCODE = '22003';
      END IF;
      PERFORM pg_advisory_lock(lock_key);
      BEGIN
        SELECT last_value, is_called INTO last, called FROM %1$I.player_id_seq;
        next := greatest(
          CASE WHEN called THEN last + 1 ELSE last END,
          (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - epoch_ms) << 10);
        PERFORM setval(%2$L::regclass, next);
      EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock(lock_key);
        RAISE;
      END;
      PERFORM pg_advisory_unlock(lock_key);
      RETURN ((next >> 10) << 22) | (bucket::bigint << 10) | (next & 1023);
    END $body$, s, format('%I.player_id_seq', s)));
      EXECUTE format('REVOKE EXECUTE ON FUNCTION %I.shardline_player_id(integer) FROM PUBLIC', s);
    END $$`);
}

export async function down(knex: Knex): Promise<void> {
  // Back to the 0001 function, and its privileges (EXECUTE for PUBLIC, as functions get by default).
  await knex.raw(`
    CREATE OR REPLACE FUNCTION shardline_player_id(bucket integer) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
    DECLARE
      epoch_ms constant bigint := 1704067200000; -- 2024-01-01T00:00:00Z
      now_ms bigint := floor(extract(epoch FROM clock_timestamp()) * 1000);
      seq bigint := nextval('player_id_seq') % 1024;
    BEGIN
      IF bucket < 0 OR bucket > 4095 THEN
        RAISE EXCEPTION 'bucket % out of range', bucket USING ERRCODE = '22003';
      END IF;
      RETURN ((now_ms - epoch_ms) << 22) | (bucket::bigint << 10) | seq;
    END $$`);
  await knex.raw(`GRANT EXECUTE ON FUNCTION shardline_player_id(integer) TO PUBLIC`);
}
