import type { Knex } from 'knex';

/** A player table: `player_id bigint` alone is the key, the foreign key stays inside the player's rows. */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE wallet (
      player_id bigint PRIMARY KEY REFERENCES players (player_id) ON DELETE CASCADE,
      coins bigint NOT NULL DEFAULT 0 CHECK (coins >= 0),
      xp bigint NOT NULL DEFAULT 0,
      updated_at timestamptz NOT NULL DEFAULT now()
    )`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE wallet`);
}
