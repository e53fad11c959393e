import type { Knex } from 'knex';

/**
 * The self-closed record set of a player. Every table is keyed by player_id and every foreign key
 * stays inside one player's rows, so a shard never needs another shard to be consistent.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE SEQUENCE player_id_seq`);
  // Instagram-style ids: the low 10 bits come from this shard's own sequence, so any number of
  // application processes can create players at once without coordinating (docs/shard-map.md, "Player ids
  // and routing"; migration 0005 replaces the sequence with a logical clock).
  await knex.raw(`
    CREATE FUNCTION shardline_player_id(bucket integer) RETURNS bigint
    LANGUAGE plpgsql VOLATILE AS $$
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

  await knex.schema.createTable('players', (t) => {
    t.bigInteger('player_id').primary();
    t.text('region').notNullable();
    t.text('nickname').notNullable();
    t.text('status').notNullable().defaultTo('active');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw(`ALTER TABLE players ADD CONSTRAINT players_status_check CHECK (status IN ('active', 'suspended', 'deleted'))`);

  await knex.schema.createTable('player_stats', (t) => {
    t.bigInteger('player_id').notNullable().references('player_id').inTable('players').onDelete('CASCADE');
    t.text('game_id').notNullable();
    t.bigInteger('score').notNullable().defaultTo(0);
    t.integer('wins').notNullable().defaultTo(0);
    t.integer('losses').notNullable().defaultTo(0);
    t.integer('draws').notNullable().defaultTo(0);
    t.integer('games_played').notNullable().defaultTo(0);
    t.text('last_match_id');
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['player_id', 'game_id']);
  });
  // Leaderboards: top-K per game, ties broken by player_id so every shard orders them alike.
  await knex.raw(`CREATE INDEX player_stats_leaderboard ON player_stats (game_id, score DESC, player_id ASC)`);

  await knex.schema.createTable('settlement_ledger', (t) => {
    t.text('match_id').notNullable();
    t.bigInteger('player_id').notNullable().references('player_id').inTable('players').onDelete('CASCADE');
    t.text('game_id').notNullable();
    t.integer('score_delta').notNullable();
    t.text('outcome').notNullable();
    t.timestamp('ended_at', { useTz: true }).notNullable();
    t.timestamp('applied_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // (match_id, player_id) makes applying a settlement idempotent: a second insert is a no-op.
    t.primary(['match_id', 'player_id']);
  });
  await knex.raw(`ALTER TABLE settlement_ledger ADD CONSTRAINT settlement_ledger_outcome_check CHECK (outcome IN ('win', 'loss', 'draw'))`);
  // Match history: a player's matches newest first, keyset-paginated on (ended_at, match_id).
  await knex.raw(`CREATE INDEX settlement_ledger_history ON settlement_ledger (player_id, ended_at DESC, match_id DESC)`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('settlement_ledger');
  await knex.schema.dropTable('player_stats');
  await knex.schema.dropTable('players');
  await knex.raw(`DROP FUNCTION shardline_player_id(integer)`);
  await knex.raw(`DROP SEQUENCE player_id_seq`);
}
