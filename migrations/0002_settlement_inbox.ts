import type { Knex } from 'knex';

/**
 * The durable half of settlement (docs/settlement.md tells users how it behaves).
 *
 * These two tables are per-shard queue/meta tables, not part of any player's record set, so they
 * are keyed by match_id and carry no foreign key to players: a row describes work for the shard,
 * it is not a player's data. The player rows that settlement writes (settlement_ledger,
 * player_stats) keep player_id in their primary keys as migration 0001 laid out.
 */
export async function up(knex: Knex): Promise<void> {
  // One row per match on its *home* shard (chosen from the match id alone, never from the content),
  // so two submissions of one match id with different players always meet on the same row and the
  // second is refused, whichever shards their players live on.
  await knex.schema.createTable('settlement_inbox_claims', (t) => {
    t.text('match_id').primary();
    t.text('content_hash').notNullable();
    t.text('game_id').notNullable();
    t.specificType('shard_ids', 'text[]').notNullable();
    t.integer('player_count').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  // One row per match on every shard the match touches, holding that shard's part of the results:
  // written before the submit call answers, so the work survives the loss of everything in Redis.
  // The worker marks the row applied in the same transaction that writes the ledger and stats.
  await knex.schema.createTable('settlement_inbox', (t) => {
    t.text('match_id').primary();
    t.text('content_hash').notNullable();
    t.text('game_id').notNullable();
    t.timestamp('ended_at', { useTz: true }).notNullable();
    t.jsonb('results').notNullable();
    t.specificType('shard_ids', 'text[]').notNullable();
    t.text('status').notNullable().defaultTo('pending');
    t.integer('attempts').notNullable().defaultTo(0);
    t.text('last_error');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // Last time anything looked at the row (applied, failed, or checked by the reconciler).
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('applied_at', { useTz: true });
  });
  await knex.raw(`ALTER TABLE settlement_inbox ADD CONSTRAINT settlement_inbox_status_check CHECK (status IN ('pending', 'applied', 'failed'))`);
  // The reconciler's scan (oldest pending first) and the dead-letter listing stay small and fast
  // however many applied rows accumulate.
  await knex.raw(`CREATE INDEX settlement_inbox_pending ON settlement_inbox (updated_at) WHERE status = 'pending'`);
  await knex.raw(`CREATE INDEX settlement_inbox_failed ON settlement_inbox (updated_at) WHERE status = 'failed'`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('settlement_inbox');
  await knex.schema.dropTable('settlement_inbox_claims');
}
