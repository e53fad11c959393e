// Creates three players, settles one dou dizhu match whose results carry coins, XP and drops, waits
// for the worker to apply it, and prints each player's wallet and inventory.
//
//   npx tsx examples/wallet-inventory/settle-a-match.ts MAP   (or SHARDLINE_MAP=MAP; REDIS_URL as for the CLI)
//
// Before it: the app's tables migrated and a worker running with the effects (see README.md here).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Accounts, SettlementClient, ShardSet, loadShardMap, redisOptionsFromUrl, type PlayerId } from '../../src/index.js';
import { games, type AppDb } from './game.js';

const mapFile = process.argv[2] ?? process.env.SHARDLINE_MAP;
if (!mapFile) {
  console.error('usage: settle-a-match.ts MAP (or set SHARDLINE_MAP)');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));

const map = await loadShardMap(mapFile, process.env);
// With appMigrations, a shard whose app tables are behind (or ahead of) migrations/ is refused.
const shards = new ShardSet<AppDb>(map, { appMigrations: path.join(here, 'migrations') });
const settlement = new SettlementClient({ shards, connection: redisOptionsFromUrl(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'), games });
try {
  const accounts = new Accounts(shards);
  const players: PlayerId[] = [];
  const regions = map.regions.map((r) => r.name);
  for (let i = 0; i < 3; i++) {
    const region = regions[i % regions.length] as string;
    players.push((await accounts.createPlayer({ region, nickname: `example-${i + 1}` })).id);
  }

  const matchId = `example-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  await settlement.submitSettlement({
    matchId,
    gameId: 'doudizhu',
    endedAt: new Date(),
    results: [
      { playerId: players[0] as PlayerId, scoreDelta: 24, outcome: 'win', data: { coins: 30, xp: 120, drops: ['gem'] } },
      { playerId: players[1] as PlayerId, scoreDelta: -12, outcome: 'loss', data: { coins: 5, xp: 40 } },
      { playerId: players[2] as PlayerId, scoreDelta: -12, outcome: 'loss', data: { coins: 5, xp: 40, drops: ['feather', 'feather'] } },
    ],
  });
  const status = await settlement.waitFor(matchId, { timeoutMs: 60_000 });
  console.log(`match ${matchId}: ${status.state}`);

  for (const id of players) {
    // One transaction on the player's shard, typed with the app's tables.
    const { wallet, items } = await shards.transaction(id, async (trx) => ({
      wallet: await trx.selectFrom('wallet').select(['coins', 'xp']).where('player_id', '=', id).executeTakeFirst(),
      items: await trx.selectFrom('inventory').select(['item', 'quantity']).where('player_id', '=', id).orderBy('item').execute(),
    }));
    const inventory = items.map((it) => `${it.item} x${it.quantity}`).join(', ') || '(empty)';
    console.log(`player ${id} (${shards.router.shardFor(id).id}): coins ${wallet?.coins ?? 0}, xp ${wallet?.xp ?? 0}, inventory ${inventory}`);
  }
} finally {
  await settlement.close();
  await shards.close();
}
