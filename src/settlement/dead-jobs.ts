import type { ShardSet } from '../db/shard-set.js';
import { printable } from '../errors/show-value.js';
import { inboxRowsAmong } from './inbox-store.js';
import type { RawFailedJob, SettlementQueues } from './queues.js';
import type { DeadJob } from './types.js';
import { parseJobData, type SettlementJob } from './validate.js';

const PAGE = 200;
// Anyone with Redis access can write a job: its reason and id are escaped and bounded when shown.
const REASON_MAX = 500;

/**
 * The failed jobs of a shard's queue that no inbox row of that shard accounts for, oldest first.
 * The inbox is where dead letters normally live, but a job that names no part of this shard
 * (malformed data, another shard's name, a match this shard never recorded) fails without one, and
 * the reconciler only walks the inbox: without this listing nobody would ever see it. A job carries
 * one part or several: it is listed once per match it names that has no inbox row here (all of
 * them when it names another shard), or once, without a match, when its data is unreadable.
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
    const own = named.flatMap(({ data }) => (data && data.shardId === shardId ? data.matchIds : []));
    const wanted = options.matchId === undefined ? own : own.filter((m) => m === options.matchId);
    const withRow = wanted.length > 0 ? await shards.withShard(shardId, (db) => inboxRowsAmong(db, wanted)) : new Set<string>();
    for (const { job, data } of named) {
      const unaccounted: (string | null)[] = !data
        ? [null]
        : data.matchIds.filter((m) => (data.shardId !== shardId || !withRow.has(m)) && (options.matchId === undefined || m === options.matchId));
      for (const matchId of unaccounted) {
        if (matchId === null && options.matchId !== undefined) continue;
        out.push(deadJob(shardId, job, matchId));
        if (out.length === options.limit) return out;
      }
    }
    if (scanned < PAGE) break;
  }
  return out;
}

function readData(text: string | null): SettlementJob | null {
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
