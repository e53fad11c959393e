import type { Transaction } from 'kysely';
import { describe, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import type { ShardDatabase } from '../../src/db/index.js';
import type { AppliedResult, EffectsFor, SettlementWorkerOptions } from '../../src/settlement/index.js';

// Compile-time checks (the type-check of test/ runs them); the runtime body is trivial.
const _games = { doudizhu: { data: z.object({ coins: z.number(), drops: z.array(z.string()).default([]) }) }, chess: {} };
type AppDb = ShardDatabase & { wallet: { player_id: bigint; coins: bigint } };

describe('effect typing', () => {
  it("types each game's applied data from its schema and trx with the app's tables", () => {
    const effects: EffectsFor<typeof _games, AppDb> = {
      async doudizhu(trx, applied) {
        expectTypeOf(trx).toEqualTypeOf<Transaction<AppDb>>();
        expectTypeOf(applied).toEqualTypeOf<readonly AppliedResult<{ coins: number; drops: string[] }>[]>();
        const first = applied[0];
        if (first?.data) {
          expectTypeOf(first.data.coins).toBeNumber();
          // @ts-expect-error: the schema has no xp
          void first.data.xp;
        }
        // @ts-expect-error: no such table
        void trx.selectFrom('wallets');
        await trx.selectFrom('wallet').select('coins').execute();
      },
    };
    expectTypeOf(effects).toExtend<NonNullable<SettlementWorkerOptions['effects']>>();
  });
});
