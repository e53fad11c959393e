import type { Knex } from 'knex';

/**
 * A match result may carry `data` (a JSON object the app's schema checked at submit, e.g. coins and
 * drops), kept with the ledger row so history shows what the effect was given. The inbox needs no
 * change: its `results` jsonb carries each result's data from submit to the worker.
 *
 * Nullable and without a default, so adding it rewrites no row and existing rows read as "no data".
 * The application role's grants on settlement_ledger (0003) cover the new column: table-level
 * privileges apply to every column, present and future.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE settlement_ledger ADD COLUMN data jsonb`);
  // Only an object or nothing: submit refuses anything else, and the check keeps a hand-written row
  // honest. NOT VALID: every existing row has NULL there, so scanning a large ledger under the
  // ALTER's exclusive lock would prove nothing; new and updated rows are checked all the same.
  await knex.raw(`ALTER TABLE settlement_ledger ADD CONSTRAINT settlement_ledger_data_object CHECK (data IS NULL OR jsonb_typeof(data) = 'object') NOT VALID`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE settlement_ledger DROP COLUMN data`);
}
