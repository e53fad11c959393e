import { formatBuckets } from '../db/bucket-ownership.js';
import type { ConnectionOptions } from '../db/connection.js';
import type { ShardMap } from '../shardmap/index.js';
import { add } from './ownership-record.js';
import { MoverShards } from './session.js';

/**
 * The map file as the ownership records stand now (`--write-map FILE`, for the deploy repository):
 * `file` (the map file's parsed JSON) with each shard's `buckets` replaced by the buckets whose
 * highest-epoch claim (owned, or movedTo naming it; owned wins a tie) is that shard's, and `epoch`
 * set to the highest epoch known. A bucket no record claims keeps the map's owner; a frozen bucket
 * stays with the shard freezing it (it claims none while frozen, so the map's owner stands). Everything
 * else is kept as written (connections stay `env:NAME` or password-free URLs).
 */
export async function liveMapJson(
  map: ShardMap,
  file: Record<string, unknown>,
  options: { connection?: ConnectionOptions } = {},
): Promise<Record<string, unknown>> {
  const shards = new MoverShards(map, options.connection);
  try {
    const records = await shards.records();
    const owner: (string | undefined)[] = Array.from(map.bucketOwner, (i) => map.shards[i]?.id);
    const epochOf = new Int32Array(4096).fill(-1);
    const ownedClaim = new Uint8Array(4096);
    const claim = (lo: number, hi: number, shard: string, epoch: number, owned: boolean) => {
      for (let b = lo; b <= hi; b++) {
        const e = epochOf[b] as number;
        if (epoch > e || (epoch === e && owned && !ownedClaim[b])) {
          epochOf[b] = epoch;
          owner[b] = shard;
          ownedClaim[b] = owned ? 1 : 0;
        }
      }
    };
    let epoch = (map as { epoch?: number }).epoch ?? 0;
    for (const [id, r] of records) {
      for (const [lo, hi, e] of r.owned) claim(lo, hi, id, e, true);
      for (const [lo, hi, to, e] of r.movedTo) claim(lo, hi, to, e, false);
      epoch = Math.max(epoch, ...r.owned.map((x) => x[2]), ...r.movedTo.map((x) => x[3]));
    }
    const list = Array.isArray(file.shards) ? (file.shards as Record<string, unknown>[]) : [];
    return {
      ...file,
      epoch,
      shards: list.map((s) => {
        let ranges: [number, number, number][] = [];
        owner.forEach((o, b) => {
          if (o === s.id) ranges = add(ranges, [b, b, 0] as [number, number, number]);
        });
        return { ...s, buckets: ranges.length ? formatBuckets(ranges.map(([a, b]) => [a, b] as const)).split(',') : [] };
      }),
    };
  } finally {
    await shards.close();
  }
}
