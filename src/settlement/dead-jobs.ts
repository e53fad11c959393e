import type { ShardSet } from '../db/shard-set.js';
import { inboxRowsAmong } from './inbox-store.js';
import type { RawFailedJob, SettlementQueues } from './queues.js';
import type { DeadJob } from './types.js';
import { parseJobData } from './validate.js';

const PAGE = 200;
const REASON_MAX = 500;
// What a terminal or log viewer acts on but JSON.stringify leaves raw (see errors/show-value.ts).
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

/**
 * The failed jobs of a shard's queue that no inbox row of that shard accounts for, oldest first.
 * The inbox is where dead letters normally live, but a job that names no part of this shard
 * (malformed data, another shard's name, a match this shard never recorded) fails without one, and
 * the reconciler only walks the inbox: without this listing nobody would ever see it.
 */
export async function listDeadJobs(
  shards: ShardSet,
  queues: SettlementQueues,
  shardId: string,
  options: { limit: number; matchId?: string | undefined },
): Promise<DeadJob[]> {
  const out: DeadJob[] = [];
  for (let start = 0; out.length < options.limit; start += PAGE) {
    const { scanned, jobs } = await queues.failedJobs(shardId, start, PAGE);
    const named = jobs.map((job) => ({ job, data: readData(job.data) }));
    const candidates = named.filter(({ data }) => options.matchId === undefined || data?.matchId === options.matchId);
    const own = candidates.flatMap(({ data }) => (data && data.shardId === shardId ? [data.matchId] : []));
    const withRow = own.length > 0 ? await shards.withShard(shardId, (db) => inboxRowsAmong(db, own)) : new Set<string>();
    for (const { job, data } of candidates) {
      if (data && data.shardId === shardId && withRow.has(data.matchId)) continue;
      out.push(deadJob(shardId, job, data?.matchId ?? null));
      if (out.length === options.limit) break;
    }
    if (scanned < PAGE) break;
  }
  return out;
}

function readData(text: string | null): { matchId: string; shardId: string } | null {
  if (text === null) return null;
  try {
    return parseJobData(JSON.parse(text));
  } catch {
    return null;
  }
}

function deadJob(shardId: string, job: RawFailedJob, matchId: string | null): DeadJob {
  return {
    source: 'queue',
    matchId,
    shardId,
    gameId: null,
    reason: printable(job.failedReason || '(no reason recorded)', REASON_MAX),
    attempts: job.attemptsMade,
    failedAt: new Date(job.finishedOn),
    jobId: printable(job.jobId, REASON_MAX),
  };
}

/** Anyone with Redis access can write a job: escape what would act on a terminal, and bound it. */
function printable(s: string, max: number): string {
  let head = s;
  if (s.length > max) {
    const high = s.charCodeAt(max - 1) >= 0xd800 && s.charCodeAt(max - 1) <= 0xdbff; // never half a surrogate pair
    head = `${s.slice(0, high ? max - 1 : max)}… (${s.length} characters)`;
  }
  return head.replace(UNSAFE, (c) => c.split('').map((unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''));
}
