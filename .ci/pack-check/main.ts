// Compiled and run by .ci/pack-check.sh inside a fresh project that installed the packed tarball:
// what a new user's first program does, through the published entry points and types only.
import { inspect } from 'node:util';
import { Accounts, ShardSet, ShardlineError, loadShardMap } from 'shardline';
import { PlayerNotFoundError } from 'shardline/errors';
import { Router, formatPlayerId, type PlayerId } from 'shardline/routing';
import type { ShardMap, ShardSpec } from 'shardline/shardmap';

const mapFile = process.argv[2];
if (mapFile === undefined) throw new Error('usage: node main.js <map.json>');

const map: ShardMap = await loadShardMap(mapFile, process.env);
const router = new Router(map);
const shards = new ShardSet(map);
try {
  const accounts = new Accounts(shards);
  const created = await accounts.createPlayer({ region: 'pack', nickname: 'pack check' });
  const id: PlayerId = created.id;
  const read = await accounts.getPlayer(id);
  if (read.nickname !== 'pack check') throw new Error(`read back ${inspect(read)}`);
  const shard: ShardSpec = router.shardFor(id);
  // The map says env:PACK_DB_URL, whose URL holds a password (ignored by a trust server): no
  // public object may carry it.
  const password = new URL(process.env.PACK_DB_URL ?? '').password;
  for (const shown of [JSON.stringify(shard), inspect(shard, { depth: null }), inspect(map, { depth: 3 }), inspect(router, { depth: 3 })]) {
    if (password === '' || shown.includes(password)) throw new Error(`a public object shows the connection password: ${shown}`);
  }
  try {
    await accounts.getPlayer(String(id + 1n));
    throw new Error('a player that was never created was found');
  } catch (err) {
    if (!(err instanceof PlayerNotFoundError) || !(err instanceof ShardlineError)) throw err;
  }
  console.log(JSON.stringify({ id: formatPlayerId(id), shard: shard.id, target: shard.target }));
} finally {
  await shards.close();
}
