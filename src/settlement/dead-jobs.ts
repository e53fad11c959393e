import type { ShardSet } from '../db/shard-set.js';
import { printable } from '../errors/show-value.js';
import { inboxRowsAmong } from './inbox-store.js';
import type { RawFailedJob, SettlementQueues } from './queues.js';
import type { DeadJob } from './types.js';
import { parseJobData } from './validate.js';

const PAGE = 200;
// Anyone with Redis access can write a job: its reason and id are escaped and bounded when shown.
const REASON_MAX = 500;

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
