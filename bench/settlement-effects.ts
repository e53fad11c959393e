/**
 * The effect of the bench's effects run: one wallet row per result credited, in one statement per
 * apply transaction (sums per player first: one statement may not touch a row twice), the way an
 * app's effect should write (docs/effects.md).
 */
import { sql, type Transaction } from 'kysely';
import type { ShardDatabase } from '../src/db/index.js';
import type { AppliedResult, SettlementEffect } from '../src/settlement/index.js';

export const BENCH_WALLET_DDL = `CREATE TABLE bench_wallet (
  player_id bigint PRIMARY KEY REFERENCES players (player_id) ON DELETE CASCADE,
  coins bigint NOT NULL DEFAULT 0)`;

export const BENCH_EFFECT_GAME = 'e2e-effects';

const byDecimal = (a: string, b: string) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);

export const creditWallet: SettlementEffect<{ coins: number }, ShardDatabase> = async (
  trx: Transaction<ShardDatabase>,
  applied: readonly AppliedResult<{ coins: number }>[],
) => {
  const sums = new Map<string, number>();
  for (const r of applied) {
    const id = r.playerId.toString();
    sums.set(id, (sums.get(id) ?? 0) + (r.data?.coins ?? 0));
  }
  const ids = [...sums.keys()].sort(byDecimal);
  await sql`
    INSERT INTO bench_wallet AS w (player_id, coins)
    SELECT * FROM unnest(${ids}::bigint[], ${ids.map((id) => sums.get(id) ?? 0)}::bigint[])
    ON CONFLICT (player_id) DO UPDATE SET coins = w.coins + EXCLUDED.coins`.execute(trx);
};
