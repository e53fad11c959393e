import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OUTCOMES, PART_STATES } from '../../src/settlement/index.js';
import { createTestShards, type TestShards } from '../support/shards.js';

// The TypeScript lists are the source of truth for the code; the migrations' CHECK constraints are
// a copy that cannot import them (a migration never changes). This keeps the two from drifting.
describe('settlement domain lists', () => {
  let t: TestShards;
  beforeAll(async () => {
    t = await createTestShards('one-shard');
  });
  afterAll(() => t?.cleanup());

  async function checkValues(constraint: string): Promise<string[]> {
    const db = await t.shardSet.db('sz-1');
    const r = await sql<{ def: string }>`SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname = ${constraint}`.execute(db);
    const def = r.rows[0]?.def ?? '';
    return [...def.matchAll(/'([^']*)'/g)].map((m) => m[1] as string).sort();
  }

  it('OUTCOMES is what settlement_ledger accepts', async () => {
    expect(await checkValues('settlement_ledger_outcome_check')).toEqual([...OUTCOMES].sort());
  });

  it('PART_STATES is what settlement_inbox accepts', async () => {
    expect(await checkValues('settlement_inbox_status_check')).toEqual([...PART_STATES].sort());
  });
});
