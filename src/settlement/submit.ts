import type { Logger } from '../logging/logger.js';
import { BucketMovedError, BucketMovingError, SettlementConflictError, ShardUnavailableError, ValidationError } from '../errors/index.js';
import type { ShardSet } from '../db/shard-set.js';
import { bucketOf, type Router } from '../routing/index.js';
import type { SubmitSteps } from './inbox-batch.js';
import { isFresh, type ClaimOutcome, type LedgerRow, type MatchOnShard, type PartRow } from './inbox-store.js';
import { homeShardOf } from './keys.js';
import { partState, summarize } from './status.js';
import type { SettlementStatus, ShardSettlementStatus } from './types.js';
import { toStored, type NormalizedMatch, type NormalizedResult } from './validate.js';

export interface SubmitContext {
  shards: ShardSet;
  /** Concurrent submissions share each shard's statements and commits (group commit). */
  batches: SubmitSteps;
  logger: Logger;
  enqueueTimeoutMs: number;
  /** The routing this submission keeps throughout (read once at its start). */
  router: Router;
}

/**
 * The submit protocol (all-or-nothing answer; docs/settlement.md tells it to users):
 *  1. read, on the home shard and every touched shard at once: claim, inbox part, ledger rows,
 *     which players exist. Nothing is written unless every check passes everywhere.
 *  2. claim the match id on its home shard (with the home shard's part in the same statement);
 *     a concurrent submission with other content loses here, before it writes anything else.
 *  3. record each other shard's part in its inbox, all at once.
 *  4. enqueue one job per pending part. Only then does the call resolve.
 * A match whose home shard is its only shard (all its players there) takes 1 and 2 in ONE
 * statement: the claim and the part are written only if that shard holds nothing of the match and
 * every player exists there (the checks of 1, made in the statement), and the statement returns
 * what it read, so a duplicate, a conflict or a missing player is answered as after 1.
 * If a shard fails during 3, the call throws; the parts already recorded are kept and enqueued,
 * and submitting the same match again records the rest.
 *
 * Routing may be stale (buckets moved): a claim the old home's fence refuses, or a player missing
 * from a bucket the shard no longer owns, throws BucketMovedError (BucketMovingError while the
 * bucket is in its cut-over) before anything is written; the client refreshes routing and submits
 * again. A part recorded on a shard its players left is forwarded by that shard's worker.
 */
export async function submitMatch(ctx: SubmitContext, match: NormalizedMatch): Promise<SettlementStatus> {
  const { router } = ctx;
  const parts = new Map<string, NormalizedResult[]>();
  for (const r of match.results) {
    const id = router.shardFor(r.playerId).id;
    const list = parts.get(id) ?? [];
    list.push(r);
    parts.set(id, list);
  }
  const touched = [...parts.keys()].sort();
  const home = homeShardOf(router.map, match.matchId).id;
  const involved = touched.includes(home) ? touched : [home, ...touched];

  const claimRow = { matchId: match.matchId, contentHash: match.contentHash, gameId: match.gameId, shardIds: touched, playerCount: match.results.length };
  const playerIdsOn = (id: string) => (parts.get(id) ?? []).map((r) => r.playerId.toString());
  const partRow = (id: string): PartRow => ({
    matchId: match.matchId,
    contentHash: match.contentHash,
    gameId: match.gameId,
    endedAt: match.endedAt,
    results: toStored(parts.get(id) ?? []),
    shardIds: touched,
  });

  // 1. Read everything; a shard that cannot be asked stops the submit before any write.
  const views = new Map<string, MatchOnShard>();
  let early: ClaimOutcome | null = null;
  if (involved.length === 1) {
    // 1 and 2 at once: written only if the checks of 1 pass, in that statement.
    early = await ctx.batches.claim(home, { claim: claimRow, part: partRow(home), checkPlayers: playerIdsOn(home) });
    if (!early.view) throw new Error(`the claim of ${match.matchId} on shard ${home} came back without the match's view (checkPlayers was not passed on)`);
    views.set(home, early.view);
  } else {
    const read = await Promise.allSettled(involved.map((id) => ctx.batches.read(id, { matchId: match.matchId, playerIds: playerIdsOn(id) })));
    read.forEach((r, i) => {
      if (r.status === 'rejected') throw r.reason;
      views.set(involved[i] as string, r.value);
    });
  }

  const conflict = (detail: string) => new SettlementConflictError(match.matchId, detail);
  const homeView = views.get(home) as MatchOnShard;
  let duplicate = false;
  if (homeView.claim) {
    if (homeView.claim.hash !== match.contentHash)
      throw conflict(`content hash ${short(match.contentHash)} differs from the first submission's ${short(homeView.claim.hash)}`);
    duplicate = true;
  }
  const states = new Map<string, ShardSettlementStatus>();
  const toWrite: string[] = [];
  const missing: NormalizedResult[] = [];
  for (const id of touched) {
    const v = views.get(id) as MatchOnShard;
    const part = parts.get(id) as NormalizedResult[];
    if (v.inbox) {
      if (v.inbox.hash !== match.contentHash) throw conflict(`shard ${id} holds a part with content hash ${short(v.inbox.hash)}`);
      states.set(id, partState(id, v));
    } else if (v.ledger.length > 0) {
      // The inbox row is gone but the ledger still holds the match: compare the applied rows.
      const diff = ledgerDiff(v.ledger, match, part);
      if (diff) throw conflict(`shard ${id} already applied it differently: ${diff}`);
      states.set(id, { shardId: id, state: 'applied', players: v.ledger.length, attempts: 0 });
    } else {
      const gone = part.filter((r) => !v.found.has(r.playerId.toString()));
      for (const r of gone) refuseIfMoved(id, v, r);
      missing.push(...gone);
      toWrite.push(id);
    }
  }
  if (missing.length > 0) {
    const first = missing.sort((a, b) => a.index - b.index)[0] as NormalizedResult;
    throw new ValidationError(`results.${first.index}.playerId`, `player ${first.playerId} does not exist (shard ${router.shardFor(first.playerId).id})`);
  }
  if (states.size === touched.length) duplicate = true;

  const recorded = (id: string) => states.set(id, { shardId: id, state: 'pending', players: parts.get(id)?.length ?? 0, attempts: 0 });

  // 2. Claim on the home shard.
  let remaining = toWrite;
  if (!homeView.claim) {
    // The claim made with the read stands when the read found the match new (else it wrote nothing).
    const r: ClaimOutcome =
      early && isFresh(homeView, playerIdsOn(home))
        ? early
        : await ctx.batches.claim(home, { claim: claimRow, part: toWrite.includes(home) ? partRow(home) : null });
    if (!r.claimed) {
      const hash = r.heldHash ?? (await ctx.batches.read(home, { matchId: match.matchId, playerIds: [] })).claim?.hash ?? null;
      if (hash !== match.contentHash) throw conflict(`a concurrent submission with content hash ${short(hash ?? '?')} claimed it first`);
      duplicate = true;
    }
    if (r.inserted) {
      recorded(home);
      remaining = toWrite.filter((id) => id !== home);
    }
  }

  // 3. Record the other parts.
  const written = await Promise.allSettled(
    remaining.map(async (id) => {
      const inserted = await ctx.batches.write(id, partRow(id));
      if (!inserted) {
        const hash = (await ctx.batches.read(id, { matchId: match.matchId, playerIds: [] })).inbox?.hash ?? null;
        if (hash !== match.contentHash) throw conflict(`shard ${id} holds a part with content hash ${short(hash ?? '?')}`);
      }
      recorded(id);
    }),
  );

  // 4. Enqueue every pending part (also on failure below: what was recorded must run).
  const pending = [...states.values()].filter((s) => s.state === 'pending').map((s) => s.shardId);
  await enqueueAll(ctx, match.matchId, pending);
  const failure = written.find((w): w is PromiseRejectedResult => w.status === 'rejected');
  if (failure) {
    const err: unknown = failure.reason;
    if (err instanceof ShardUnavailableError || err instanceof SettlementConflictError) throw err;
    throw err instanceof Error ? err : new Error(String(err));
  }
  return summarize(
    match.matchId,
    match.contentHash,
    touched.map((id) => states.get(id) as ShardSettlementStatus),
    duplicate,
  );
}

/**
 * submitMatch under the current routing, following bucket moves: a BucketMovedError (the routing
 * was stale) refreshes routing and submits once more on the new owners; a BucketMovingError (a
 * bucket in its cut-over, about a second) backs off and retries for up to `freezeWaitMs`. Safe:
 * a refused submission wrote nothing, and a repeated one is recognised as the same.
 */
export async function submitFollowingMoves(
  ctx: Omit<SubmitContext, 'router'>,
  normalize: (router: Router) => NormalizedMatch,
  freezeWaitMs = 10_000,
): Promise<SettlementStatus> {
  const deadline = Date.now() + freezeWaitMs;
  let refreshed = false;
  let pause = 25;
  for (;;) {
    // Input is checked before any shard is asked; then routed once the first-use checks have read the
    // ownership records (a new process routes live at once). If they cannot run, the reads below say why.
    let router = ctx.shards.router;
    let match = normalize(router);
    const ready = await ctx.shards.routerReady().catch(() => router);
    if (ready !== router) {
      router = ready;
      match = normalize(router);
    }
    try {
      return await submitMatch({ ...ctx, router }, match);
    } catch (err) {
      if (err instanceof BucketMovedError && !refreshed) {
        refreshed = true;
        await ctx.shards.refreshRouting().catch(() => false);
        continue;
      }
      if (err instanceof BucketMovingError && Date.now() + pause <= deadline) {
        await new Promise((resolve) => setTimeout(resolve, pause));
        pause = Math.min(pause * 2, 500);
        await ctx.shards.refreshRouting().catch(() => false);
        continue;
      }
      throw err;
    }
  }
}

/**
 * A player missing from a shard that no longer owns its bucket has moved, not vanished: the
 * shard's ownership record (read with the players) says so, and the submit goes to the new owner.
 */
function refuseIfMoved(shardId: string, v: MatchOnShard, r: NormalizedResult): void {
  const bucket = bucketOf(r.playerId);
  const place = v.ownership.placementOf(bucket);
  const playerIds = [r.playerId.toString()];
  switch (place.kind) {
    case 'own':
      return;
    case 'moved':
      throw new BucketMovedError(shardId, bucket, place.to, null, { playerIds });
    case 'wait':
      throw new BucketMovingError(shardId, bucket, { playerIds });
    case 'foreign':
      throw new BucketMovedError(shardId, bucket, null, null, { playerIds });
    default: {
      const unhandled: never = place;
      throw new Error(`unhandled bucket placement ${JSON.stringify(unhandled)}`);
    }
  }
}

async function enqueueAll(ctx: SubmitContext, matchId: string, shardIds: readonly string[]): Promise<void> {
  if (shardIds.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ctx.enqueueTimeoutMs} ms`)), ctx.enqueueTimeoutMs);
  });
  try {
    await Promise.race([Promise.all(shardIds.map((id) => ctx.batches.enqueue(id, matchId))), timeout]);
  } catch (err) {
    // The parts are durable in the shard inboxes: the reconciler enqueues them once Redis answers.
    ctx.logger.warn({ err, matchId, shardIds }, 'settlement recorded but not enqueued; the reconciler will enqueue it');
  } finally {
    clearTimeout(timer);
  }
}

/** Why the ledger's rows for a match differ from a part, or null when they are the same. */
function ledgerDiff(ledger: readonly LedgerRow[], match: NormalizedMatch, part: readonly NormalizedResult[]): string | null {
  if (ledger.length !== part.length) return `${ledger.length} players applied, ${part.length} submitted`;
  const byId = new Map(ledger.map((l) => [l.playerId, l]));
  for (const r of part) {
    const l = byId.get(r.playerId.toString());
    if (!l) return `player ${r.playerId} was not in it`;
    if (l.scoreDelta !== r.scoreDelta || l.outcome !== r.outcome) return `player ${r.playerId} had ${l.scoreDelta}/${l.outcome}`;
    // jsonb orders keys its own way: compare in the canonical form (r.data is key-sorted already).
    if (canonicalJson(l.data ?? undefined) !== canonicalJson(r.data)) return `player ${r.playerId} had other data`;
    if (l.gameId !== match.gameId) return `game ${l.gameId}`;
    if (new Date(l.endedAt).getTime() !== match.endedAt.getTime()) return `ended at ${l.endedAt}`;
  }
  return null;
}

const short = (hash: string) => hash.slice(0, 12);

function canonicalJson(v: unknown): string | undefined {
  return JSON.stringify(v, (_k, x: unknown) =>
    typeof x === 'object' && x !== null && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : x,
  );
}
