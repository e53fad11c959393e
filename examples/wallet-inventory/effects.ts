// The worker's effects: `npx shardline worker --map MAP --effects examples/wallet-inventory/effects.ts`.
// Each runs inside the apply transaction, over the results inserted in it, so coins, XP and drops
// are credited exactly once, together with the stats.
import type { EffectsFor, PlayerId, ShardTables } from '../../src/index.js';
import type { AppDb, games } from './game.js';

export const effects: EffectsFor<typeof games, ShardTables<AppDb>> = {
  async doudizhu(trx, applied) {
    // `applied` may hold several matches: a player can appear more than once, and one statement
    // may not touch a row twice, so sum per player (and per item) first.
    const wallets = new Map<PlayerId, { coins: number; xp: number }>();
    const items = new Map<string, { playerId: PlayerId; item: string; quantity: number }>();
    for (const r of applied) {
      if (!r.data) continue;
      const w = wallets.get(r.playerId) ?? { coins: 0, xp: 0 };
      w.coins += r.data.coins;
      w.xp += r.data.xp;
      wallets.set(r.playerId, w);
      for (const item of r.data.drops) {
        const key = `${r.playerId}:${item}`;
        const it = items.get(key) ?? { playerId: r.playerId, item, quantity: 0 };
        it.quantity++;
        items.set(key, it);
      }
    }
    if (wallets.size > 0)
      await trx
        .insertInto('wallet')
        .values([...wallets].map(([player_id, w]) => ({ player_id, coins: w.coins, xp: w.xp })))
        .onConflict((oc) =>
          oc.column('player_id').doUpdateSet((eb) => ({
            coins: eb('wallet.coins', '+', eb.ref('excluded.coins')),
            xp: eb('wallet.xp', '+', eb.ref('excluded.xp')),
            updated_at: new Date(),
          })),
        )
        .execute();
    if (items.size > 0)
      await trx
        .insertInto('inventory')
        .values([...items.values()].map((it) => ({ player_id: it.playerId, item: it.item, quantity: it.quantity })))
        .onConflict((oc) => oc.columns(['player_id', 'item']).doUpdateSet((eb) => ({ quantity: eb('inventory.quantity', '+', eb.ref('excluded.quantity')) })))
        .execute();
  },
};
