/**
 * Compile test of `ShardSet<AppDatabase>`: never run, only type-checked (`npm run typecheck`
 * includes test/). Each `@ts-expect-error` line must stay an error: if one compiles, the directive
 * is unused and the type-check fails. test/types/app-database.test.ts also checks that each one
 * fails for the reason it names, and that the rest of the file compiles.
 */
import type { ColumnType, Kysely } from 'kysely';
import { Accounts, Leaderboards, SettlementClient, SettlementWorker, ShardSet, type PlayerId, type ShardDatabase, type ShardMap } from '../../src/index.js';

interface WalletsTable {
  player_id: ColumnType<PlayerId, PlayerId, never>;
  coins: ColumnType<bigint, bigint | number | undefined, bigint | number>;
}
interface InventoryTable {
  player_id: ColumnType<PlayerId, PlayerId, never>;
  item: string;
  quantity: number;
}
interface AppDatabase {
  wallets: WalletsTable;
  inventory: InventoryTable;
}

declare const map: ShardMap;
declare const pid: PlayerId;

export async function appCode(): Promise<void> {
  const shards = new ShardSet<AppDatabase>(map);

  // What an app writes, all typed: its tables and shardline's in one transaction.
  const coins: bigint = await shards.transaction(pid, async (trx) => {
    await trx.insertInto('inventory').values({ player_id: pid, item: 'gem', quantity: 1 }).execute();
    const p = await trx.selectFrom('players').select('nickname').where('player_id', '=', pid).executeTakeFirstOrThrow();
    const nickname: string = p.nickname;
    void nickname;
    const w = await trx.selectFrom('wallets').select(['coins']).where('player_id', '=', pid).executeTakeFirstOrThrow();
    return w.coins;
  });
  void coins;

  const { results } = await shards.scatter((db) => db.selectFrom('inventory').select(['player_id', 'quantity']).execute());
  const quantity: number | undefined = results[0]?.value[0]?.quantity;
  void quantity;

  const db: Kysely<ShardDatabase & AppDatabase> = await shards.db(map.shards[0]!.id);

  // @ts-expect-error: `coinz` is not a column of wallets
  await db.selectFrom('wallets').select(['coinz']).execute();

  // @ts-expect-error: `qty` is not a column of inventory
  await db.selectFrom('inventory').selectAll().where('qty', '>', 0).execute();

  // @ts-expect-error: `wallet` is not a table (wallets is)
  await db.selectFrom('wallet').selectAll().execute();

  await shards.transaction(pid, async (trx) => {
    // @ts-expect-error: the column is coins, not `coin`
    await trx.updateTable('wallets').set({ coin: 1 }).where('player_id', '=', pid).execute();
  });

  // @ts-expect-error: quantity is a number, not a `string`
  await db.insertInto('inventory').values({ player_id: pid, item: 'gem', quantity: 'one' }).execute();

  // @ts-expect-error: `nick` is not a column of shardline's players table
  await shards.scatter((d) => d.selectFrom('players').select('nick').execute());

  // @ts-expect-error: player_id is `never` updated (a player's rows stay on its shard)
  await db.updateTable('wallets').set({ player_id: pid }).execute();

  // A plain ShardSet sees shardline's tables only.
  const plain = new ShardSet(map);
  // @ts-expect-error: `wallets` is not a table of a ShardSet without app tables
  await (await plain.db('sz-1')).selectFrom('wallets').selectAll().execute();

  // shardline's own classes take the typed set as it is.
  void new Accounts(shards);
  void new Leaderboards(shards);
  void new SettlementClient({ shards, connection: {} });
  void new SettlementWorker({ shards, connection: {} });
}

interface ClashingDatabase {
  players: WalletsTable;
}
// @ts-expect-error: an app table may not take the name of one of shardline's tables (`players`)
export const clashing = (m: ShardMap) => new ShardSet<ClashingDatabase>(m);
