import type { ShardSet } from '../../src/db/index.js';
import type { PlayerId } from '../../src/routing/index.js';

/**
 * Inserts `perShard` players on every shard of the map, straight into `players` (tests of other
 * domains need players, not the Accounts API). Ids come from the router, cycling through the regions
 * until every shard has its count; a shard that owns no buckets gets none, as no id routes to it.
 * Returns them grouped by shard id (every shard of the map has an entry).
 */
export async function createPlayers(shards: ShardSet, perShard: number): Promise<Map<string, PlayerId[]>> {
  const byShard = new Map<string, PlayerId[]>(shards.shards.map((s) => [s.id, []]));
  const owning = shards.shards.filter((s) => s.bucketCount > 0);
  const regions = [...new Set(owning.map((s) => s.region))];
  for (let i = 0; owning.some((s) => (byShard.get(s.id) as PlayerId[]).length < perShard); i++) {
    const id = shards.router.newPlayerId(regions[i % regions.length] as string);
    const list = byShard.get(shards.router.shardFor(id).id) as PlayerId[];
    if (list.length < perShard) list.push(id);
  }
  for (const [shardId, ids] of byShard) {
    if (ids.length === 0) continue;
    const db = await shards.db(shardId);
    const region = shards.router.shard(shardId).region;
    await db
      .insertInto('players')
      .values(ids.map((player_id, k) => ({ player_id, region, nickname: `p${k}` })))
      .execute();
  }
  return byShard;
}
