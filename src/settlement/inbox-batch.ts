import { ShardUnavailableError } from '../errors/index.js';
import type { ShardSet } from '../db/shard-set.js';
import { GroupCommit } from './group-commit.js';
import { claimMatches, readMatches, writeParts, type ClaimRequest, type MatchOnShard, type PartRow, type ReadRequest } from './inbox-store.js';
import type { SettlementQueues } from './queues.js';

export interface SubmitBatchOptions {
  /** Most submissions per statement (default 64). */
  maxBatch?: number;
  /** Statements of one kind in flight per shard (default 1). */
  maxInFlight?: number;
}

interface ShardGroup {
  read: GroupCommit<ReadRequest, MatchOnShard>;
  claim: GroupCommit<ClaimRequest, { claimed: boolean; inserted: boolean }>;
  write: GroupCommit<PartRow, boolean>;
  enqueue: GroupCommit<string, undefined>;
}

// An unreachable shard fails every submission alike: no point trying them one by one.
const isolate = (err: unknown) => !(err instanceof ShardUnavailableError);

/**
 * Per shard, one group commit per step of the submit (and status) path: concurrent callers share
 * each shard's statements and commits, every caller still answered only after its own commit.
 */
export class SubmitBatches {
  private readonly groups = new Map<string, ShardGroup>();

  constructor(
    private readonly shards: ShardSet,
    private readonly queues: SettlementQueues,
    private readonly options: SubmitBatchOptions = {},
  ) {}

  read(shardId: string, req: ReadRequest): Promise<MatchOnShard> {
    return this.group(shardId).read.submit(req);
  }

  claim(shardId: string, req: ClaimRequest): Promise<{ claimed: boolean; inserted: boolean }> {
    return this.group(shardId).claim.submit(req);
  }

  write(shardId: string, part: PartRow): Promise<boolean> {
    return this.group(shardId).write.submit(part);
  }

  async enqueue(shardId: string, matchId: string): Promise<void> {
    await this.group(shardId).enqueue.submit(matchId);
  }

  private group(shardId: string): ShardGroup {
    const existing = this.groups.get(shardId);
    if (existing) return existing;
    const shards = this.shards;
    const opts = { maxBatch: Math.max(1, this.options.maxBatch ?? 64), maxInFlight: Math.max(1, this.options.maxInFlight ?? 1), isolate };
    const g: ShardGroup = {
      // Reads are not keyed by match id: two submissions of one id may name other players.
      read: new GroupCommit((reqs) => shards.withShard(shardId, (db) => readMatches(db, reqs)), opts),
      claim: new GroupCommit((reqs) => shards.withShard(shardId, (db) => claimMatches(db, reqs)), { ...opts, keyOf: (r) => r.claim.matchId }),
      write: new GroupCommit((parts) => shards.withShard(shardId, (db) => writeParts(db, parts)), { ...opts, keyOf: (p) => p.matchId }),
      enqueue: new GroupCommit(
        async (ids) => {
          await this.queues.enqueueMany(shardId, ids);
          return ids.map(() => undefined);
        },
        { ...opts, keyOf: (id) => id },
      ),
    };
    this.groups.set(shardId, g);
    return g;
  }
}
