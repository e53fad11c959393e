import type { Knex } from 'knex';

/**
 * A player table keyed (player_id, item): player_id first, a natural key instead of a serial (a
 * sequence would hand out ids that repeat across shards and collide after a bucket move).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE inventory (
      player_id bigint NOT NULL REFERENCES players (player_id) ON DELETE CASCADE,
      item text NOT NULL,
      quantity integer NOT NULL CHECK (quantity > 0),
      PRIMARY KEY (player_id, item)
    )`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE inventory`);
}
