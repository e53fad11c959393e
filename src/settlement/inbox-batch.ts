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

/** The submit path's steps on a shard: SubmitBatches itself, or a view of it (SubmitBatches.together). */
export interface SubmitSteps {
  read(shardId: string, req: ReadRequest): Promise<MatchOnShard>;
  claim(shardId: string, req: ClaimRequest): Promise<{ claimed: boolean; inserted: boolean }>;
  write(shardId: string, part: PartRow): Promise<boolean>;
  enqueue(shardId: string, matchId: string): Promise<void>;
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

  /**
   * A view for submissions started together (submitSettlements): a step's calls wait for the end of
   * the turn (every submission of the call has reached its next step by then), then go to each
   * shard's group commit at once, so the whole batch shares one statement per step per shard.
   */
  together(): SubmitSteps {
    return new StepsTogether((kind, shardId) => this.group(shardId)[kind] as GroupCommit<unknown, unknown>);
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

type StepKind = keyof ShardGroup;

interface Held {
  item: unknown;
  resolve: (o: unknown) => void;
  reject: (err: unknown) => void;
}

class StepsTogether implements SubmitSteps {
  private held = new Map<string, { kind: StepKind; shardId: string; calls: Held[] }>();
  private scheduled = false;

  constructor(private readonly groupOf: (kind: StepKind, shardId: string) => GroupCommit<unknown, unknown>) {}

  read(shardId: string, req: ReadRequest): Promise<MatchOnShard> {
    return this.hold('read', shardId, req) as Promise<MatchOnShard>;
  }

  claim(shardId: string, req: ClaimRequest): Promise<{ claimed: boolean; inserted: boolean }> {
    return this.hold('claim', shardId, req) as Promise<{ claimed: boolean; inserted: boolean }>;
  }

  write(shardId: string, part: PartRow): Promise<boolean> {
    return this.hold('write', shardId, part) as Promise<boolean>;
  }

  async enqueue(shardId: string, matchId: string): Promise<void> {
    await this.hold('enqueue', shardId, matchId);
  }

  private hold(kind: StepKind, shardId: string, item: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const key = `${kind}\u0000${shardId}`;
      const entry = this.held.get(key) ?? { kind, shardId, calls: [] };
      entry.calls.push({ item, resolve, reject });
      this.held.set(key, entry);
      if (!this.scheduled) {
        this.scheduled = true;
        // setImmediate runs after every pending microtask: each submission resumed by the last
        // step's answers has made its next call by then.
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const held = [...this.held.values()];
    this.held.clear();
    for (const { kind, shardId, calls } of held) {
      const outs = this.groupOf(kind, shardId).submitAll(calls.map((c) => c.item));
      outs.forEach((o, i) => {
        const c = calls[i] as Held;
        o.then(c.resolve, c.reject);
      });
    }
  }
}
