import { sql, type Kysely } from 'kysely';
import type { PartState, ShardDatabase } from '../db/schema.js';
import type { ShardSet } from '../db/shard-set.js';
import { Coalescer } from './coalesce.js';
import type { ClaimRow, LedgerRow, MatchOnShard, PartRow } from './inbox-store.js';
import type { SettlementQueues } from './queues.js';

/**
 * The submit path's statements for many concurrent submissions at once (see Coalescer): the same
 * reads and writes as inbox-store.ts's readMatch / claimMatch / writePart, one statement (and, for
 * the writes, one durable commit) per shard for every submission waiting at that moment.
 */

type Db = Kysely<ShardDatabase>;

export interface ReadRequest {
  matchId: string;
  playerIds: readonly string[];
}

export interface ClaimRequest {
  claim: ClaimRow;
  part: PartRow | null;
}

interface RawRow {
  i: number;
  claim: { hash: string; shardIds: string[] } | null;
  inbox: { hash: string; status: PartState; attempts: number; error: string | null; appliedAt: string | null; players: number } | null;
  ledger: LedgerRow[] | null;
  found: string[] | null;
}

export async function readMatches(db: Db, reqs: readonly ReadRequest[]): Promise<MatchOnShard[]> {
  const pi: number[] = [];
  const pids: string[] = [];
  reqs.forEach((r, i) => {
    for (const p of r.playerIds) {
      pi.push(i + 1);
      pids.push(p);
    }
  });
  const r = await sql<RawRow>`
    WITH m AS (SELECT match_id, i::int AS i FROM unnest(${reqs.map((q) => q.matchId)}::text[]) WITH ORDINALITY AS m(match_id, i)),
    f AS (SELECT x.i, array_agg(p.player_id::text) AS found
          FROM unnest(${pi}::int[], ${pids}::bigint[]) AS x(i, pid) JOIN players p ON p.player_id = x.pid GROUP BY x.i)
    SELECT m.i,
      (SELECT json_build_object('hash', content_hash, 'shardIds', shard_ids)
         FROM settlement_inbox_claims c WHERE c.match_id = m.match_id) AS claim,
      (SELECT json_build_object('hash', content_hash, 'status', status, 'attempts', attempts, 'error', last_error,
                                'appliedAt', applied_at, 'players', jsonb_array_length(results))
         FROM settlement_inbox b WHERE b.match_id = m.match_id) AS inbox,
      (SELECT json_agg(json_build_object('playerId', player_id::text, 'scoreDelta', score_delta, 'outcome', outcome,
                                         'gameId', game_id, 'endedAt', ended_at))
         FROM settlement_ledger l WHERE l.match_id = m.match_id) AS ledger,
      f.found
    FROM m LEFT JOIN f ON f.i = m.i ORDER BY m.i`.execute(db);
  if (r.rows.length !== reqs.length) throw new Error(`readMatches returned ${r.rows.length} rows for ${reqs.length} matches`);
  return r.rows.map((row) => ({
    claim: row.claim,
    inbox: row.inbox ? { ...row.inbox, appliedAt: row.inbox.appliedAt ? new Date(row.inbox.appliedAt) : null } : null,
    ledger: row.ledger ?? [],
    found: new Set(row.found ?? []),
  }));
}

const partJson = (p: PartRow) => ({
  match_id: p.matchId,
  content_hash: p.contentHash,
  game_id: p.gameId,
  ended_at: p.endedAt.toISOString(),
  results: p.results,
  shard_ids: p.shardIds,
});

/**
 * Claims each match id on this (its home) shard and, for a claim won, records the home part in the
 * same statement and commit. Match ids must be distinct (the Coalescer sees to it).
 */
export async function claimMatches(db: Db, reqs: readonly ClaimRequest[]): Promise<{ claimed: boolean; inserted: boolean }[]> {
  const rows = reqs.map(({ claim, part }) => ({
    match_id: claim.matchId,
    content_hash: claim.contentHash,
    game_id: claim.gameId,
    shard_ids: claim.shardIds,
    player_count: claim.playerCount,
    part: part ? partJson(part) : null,
  }));
  const r = await sql<{ claimed: string[]; inserted: string[] }>`
    WITH x AS (
      SELECT * FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
        AS x(match_id text, content_hash text, game_id text, shard_ids text[], player_count int, part jsonb)),
    c AS (
      INSERT INTO settlement_inbox_claims (match_id, content_hash, game_id, shard_ids, player_count)
      SELECT match_id, content_hash, game_id, shard_ids, player_count FROM x ORDER BY match_id
      ON CONFLICT (match_id) DO NOTHING RETURNING match_id),
    p AS (
      INSERT INTO settlement_inbox (match_id, content_hash, game_id, ended_at, results, shard_ids)
      SELECT y.match_id, y.content_hash, y.game_id, y.ended_at, y.results, y.shard_ids
      FROM x JOIN c USING (match_id),
        LATERAL jsonb_to_record(x.part) AS y(match_id text, content_hash text, game_id text, ended_at timestamptz, results jsonb, shard_ids text[])
      WHERE jsonb_typeof(x.part) = 'object' ORDER BY y.match_id
      ON CONFLICT (match_id) DO NOTHING RETURNING match_id)
    SELECT (SELECT coalesce(array_agg(match_id), '{}') FROM c) AS claimed, (SELECT coalesce(array_agg(match_id), '{}') FROM p) AS inserted`.execute(db);
  const claimed = new Set(r.rows[0]?.claimed ?? []);
  const inserted = new Set(r.rows[0]?.inserted ?? []);
  return reqs.map(({ claim }) => ({ claimed: claimed.has(claim.matchId), inserted: inserted.has(claim.matchId) }));
}

/** Records parts (distinct match ids); for each, false when a row for the match was already there. */
export async function writeParts(db: Db, parts: readonly PartRow[]): Promise<boolean[]> {
  const r = await sql<{ match_id: string }>`
    INSERT INTO settlement_inbox (match_id, content_hash, game_id, ended_at, results, shard_ids)
    SELECT match_id, content_hash, game_id, ended_at, results, shard_ids
    FROM jsonb_to_recordset(${JSON.stringify(parts.map(partJson))}::jsonb)
      AS x(match_id text, content_hash text, game_id text, ended_at timestamptz, results jsonb, shard_ids text[])
    ORDER BY match_id
    ON CONFLICT (match_id) DO NOTHING RETURNING match_id`.execute(db);
  const inserted = new Set(r.rows.map((row) => row.match_id));
  return parts.map((p) => inserted.has(p.matchId));
}

export interface SubmitBatchOptions {
  /** Most submissions per statement (default 64). */
  maxBatch?: number;
  /** Statements of one kind in flight per shard (default 1). */
  maxInFlight?: number;
}

interface ShardGroup {
  read: Coalescer<ReadRequest, MatchOnShard>;
  claim: Coalescer<ClaimRequest, { claimed: boolean; inserted: boolean }>;
  write: Coalescer<PartRow, boolean>;
  enqueue: Coalescer<string, undefined>;
}

/** Per shard, one Coalescer per submit step: concurrent submissions share statements and commits. */
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
    const opts = { maxBatch: Math.max(1, this.options.maxBatch ?? 64), maxInFlight: Math.max(1, this.options.maxInFlight ?? 1) };
    const g: ShardGroup = {
      // Reads are not deduplicated by match id: two submissions of one id may name other players.
      read: new Coalescer((reqs) => shards.withShard(shardId, (db) => readMatches(db, reqs)), opts),
      claim: new Coalescer((reqs) => shards.withShard(shardId, (db) => claimMatches(db, reqs)), { ...opts, keyOf: (r) => r.claim.matchId }),
      write: new Coalescer((parts) => shards.withShard(shardId, (db) => writeParts(db, parts)), { ...opts, keyOf: (p) => p.matchId }),
      enqueue: new Coalescer(
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
