import type { Knex } from 'knex';

/**
 * Settlement in flight across a bucket move (docs/settlement.md, "Moves"). Inbox parts do not move
 * with their players: they are each shard's own work queue. When a pending part on the old owner S
 * holds results of players whose buckets moved to T, S's worker forwards those results into T's
 * inbox and removes them from its own part, recording T in `forwarded_to` so that the settlement
 * status can follow the results there. A part left with no result of its own is `forwarded`: done
 * on this shard, its work now lives on the shards it names.
 *
 * `forwarded` joins the one list of part states (PART_STATES in src/db/schema.ts); the CHECK is
 * replaced whole, since a migration never edits an earlier one. The pending index (0002) needs no
 * change: a forwarded part is not pending, so the reconciler never re-drives it on S; the parts it
 * forwarded are pending on T and T's reconciler re-drives those.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE settlement_inbox ADD COLUMN forwarded_to text[] NOT NULL DEFAULT '{}'`);
  await knex.raw(`ALTER TABLE settlement_inbox DROP CONSTRAINT settlement_inbox_status_check`);
  await knex.raw(`ALTER TABLE settlement_inbox ADD CONSTRAINT settlement_inbox_status_check CHECK (status IN ('pending', 'applied', 'failed', 'forwarded'))`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE settlement_inbox DROP CONSTRAINT settlement_inbox_status_check`);
  await knex.raw(`UPDATE settlement_inbox SET status = 'applied' WHERE status = 'forwarded'`);
  await knex.raw(`ALTER TABLE settlement_inbox ADD CONSTRAINT settlement_inbox_status_check CHECK (status IN ('pending', 'applied', 'failed'))`);
  await knex.raw(`ALTER TABLE settlement_inbox DROP COLUMN forwarded_to`);
}
