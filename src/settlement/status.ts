import type { ShardSet } from '../db/shard-set.js';
import { readMatch, type MatchOnShard } from './inbox-store.js';
import { homeShardOf } from './keys.js';
import { partState, summarize } from './submit.js';
import type { SettlementStatus, ShardSettlementStatus } from './types.js';

const reasonOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Per-shard state of a match. The home shard's claim names the shards to ask; without it (home
 * shard down, or a match recorded before its claim) every shard of the map is asked. Null when no
 * reachable shard knows the match and none was unreachable.
 */
export async function readStatus(shards: ShardSet, matchId: string): Promise<SettlementStatus | null> {
  const home = homeShardOf(shards.map, matchId).id;
  const views = new Map<string, MatchOnShard>();
  const unreachable = new Map<string, string>();
  const ask = async (ids: readonly string[]) => {
    const got = await Promise.allSettled(ids.map((id) => shards.withShard(id, (db) => readMatch(db, matchId))));
    got.forEach((g, i) => {
      const id = ids[i] as string;
      if (g.status === 'fulfilled') views.set(id, g.value);
      else unreachable.set(id, reasonOf(g.reason));
    });
  };

  await ask([home]);
  const claim = views.get(home)?.claim ?? null;
  let listed: readonly string[];
  if (claim) {
    listed = claim.shardIds;
    await ask(listed.filter((id) => id !== home));
  } else {
    await ask(shards.shards.map((s) => s.id).filter((id) => id !== home));
    listed = [];
  }

  const out: ShardSettlementStatus[] = [];
  let hash: string | null = claim?.hash ?? null;
  for (const s of shards.shards) {
    const id = s.id;
    const v = views.get(id);
    const isListed = listed.includes(id);
    if (v && (v.inbox || v.ledger.length > 0)) {
      hash ??= v.inbox?.hash ?? null;
      out.push(partState(id, v));
    } else if (unreachable.has(id) && (isListed || !claim)) {
      out.push({ shardId: id, state: 'unknown', players: 0, attempts: 0, reason: `shard unavailable: ${unreachable.get(id)}` });
    } else if (v && isListed) {
      out.push({ shardId: id, state: 'unknown', players: 0, attempts: 0, reason: 'part not recorded: the submit did not complete; submit the same match again' });
    }
  }
  if (out.length === 0) return null;
  return summarize(matchId, hash, out);
}
