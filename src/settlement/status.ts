import type { ShardSet } from '../db/shard-set.js';
import type { SubmitBatches } from './inbox-batch.js';
import type { MatchOnShard } from './inbox-store.js';
import { homeShardOf } from './keys.js';
import type { SettlementStatus, ShardSettlementStatus } from './types.js';

const reasonOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** A shard's part as its inbox (or, once the inbox row is gone, its ledger) tells it. */
export function partState(shardId: string, v: MatchOnShard): ShardSettlementStatus {
  const inbox = v.inbox;
  if (!inbox) {
    const data = Object.fromEntries(v.ledger.flatMap((l) => (l.data ? [[l.playerId, l.data] as const] : [])));
    return { shardId, state: 'applied', players: v.ledger.length, attempts: 0, ...(Object.keys(data).length > 0 ? { data } : {}) };
  }
  return {
    shardId,
    state: inbox.status,
    players: inbox.players,
    attempts: inbox.attempts,
    ...(inbox.status === 'failed' && inbox.error ? { reason: inbox.error } : {}),
    ...(inbox.appliedAt ? { appliedAt: inbox.appliedAt } : {}),
    ...(inbox.data ? { data: inbox.data } : {}),
    ...(inbox.forwardedTo.length > 0 ? { forwardedTo: inbox.forwardedTo } : {}),
  };
}

/** The match's state from its parts': failed over unknown over pending over applied. */
export function summarize(matchId: string, contentHash: string | null, shards: ShardSettlementStatus[], duplicate?: boolean): SettlementStatus {
  const has = (s: ShardSettlementStatus['state']) => shards.some((x) => x.state === s);
  const state = has('failed') ? 'failed' : has('unknown') ? 'unknown' : has('pending') ? 'pending' : 'applied';
  return { matchId, state, contentHash, shards, ...(duplicate !== undefined ? { duplicate } : {}) };
}

/** True when every part is applied or failed: nothing more will happen without a retry. */
export function isFinal(status: SettlementStatus): boolean {
  return status.shards.every((s) => {
    switch (s.state) {
      case 'applied':
      case 'failed':
      case 'forwarded': // the shards it went to are listed too, and decide
        return true;
      case 'pending':
      case 'unknown':
        return false;
      default: {
        const unhandled: never = s.state;
        throw new Error(`unknown part state ${String(unhandled)}`);
      }
    }
  });
}

/**
 * Per-shard state of a match. The home shard's claim names the shards to ask; without it (home
 * shard down, or a match recorded before its claim) every shard of the map is asked. Null when no
 * reachable shard knows the match and none was unreachable. Reads go through the shards' group
 * commit, so many status polls at once cost one statement per shard.
 */
export async function readStatus(shards: ShardSet, batches: SubmitBatches, matchId: string): Promise<SettlementStatus | null> {
  const router = shards.router; // one routing for the whole read
  const home = homeShardOf(router.map, matchId).id;
  const views = new Map<string, MatchOnShard>();
  const unreachable = new Map<string, string>();
  const ask = async (ids: readonly string[]) => {
    const got = await Promise.allSettled(ids.map((id) => batches.read(id, { matchId, playerIds: [] })));
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
    await ask(router.shards.map((s) => s.id).filter((id) => id !== home));
    listed = [];
  }
  // Results of players who moved were forwarded to their new shards: follow them (a part may have
  // been forwarded on again by a later move), asking each shard once.
  const known = new Set(router.shards.map((s) => s.id));
  for (let round = 0; round < router.shards.length; round++) {
    const next = [...views.values()].flatMap((v) => v.inbox?.forwardedTo ?? []).filter((id) => known.has(id) && !views.has(id) && !unreachable.has(id));
    if (next.length === 0) break;
    const fresh = [...new Set(next)];
    listed = [...listed, ...fresh];
    await ask(fresh);
  }

  const out: ShardSettlementStatus[] = [];
  let hash: string | null = claim?.hash ?? null;
  for (const s of router.shards) {
    const id = s.id;
    const v = views.get(id);
    const isListed = listed.includes(id);
    if (v && (v.inbox || v.ledger.length > 0)) {
      hash ??= v.inbox?.hash ?? null;
      out.push(partState(id, v));
    } else if (unreachable.has(id) && (isListed || !claim)) {
      out.push({ shardId: id, state: 'unknown', players: 0, attempts: 0, reason: `shard unavailable: ${unreachable.get(id)}` });
    } else if (v && isListed) {
      out.push({
        shardId: id,
        state: 'unknown',
        players: 0,
        attempts: 0,
        reason: 'part not recorded: the submit did not complete; submit the same match again',
      });
    }
  }
  if (out.length === 0) return null;
  return summarize(matchId, hash, out);
}
