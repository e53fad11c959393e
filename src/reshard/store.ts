import type pg from 'pg';
import { isMoveState, type MoveState } from './states.js';

/** What a move records about itself, on both of its shards (table shardline_moves, migration 0010). */
export interface MoveArtifacts {
  /** Logical mode: the names, recorded before each is created. */
  publication?: string;
  slot?: string;
  subscription?: string;
  /** The subscription's oid on the target: names the initial-sync slots it may leave on the source. */
  subscriptionOid?: string;
  /** The source's owned entries a fence took out, to give back on an abort or a failed cut-over. */
  restore?: [number, number, number][];
  /** The source's WAL position right after the fence (logical mode). */
  fenceLsn?: string;
}

export interface MoveOptionsRecord {
  batchBuckets: number;
  purge: 'after-grace' | 'never';
  graceMs: number;
  maxLagBytes: number | null;
  maxFreezeMs: number | null;
}

export interface MoveRow {
  id: string;
  side: 'source' | 'target';
  range: [number, number];
  from: string;
  to: string;
  mode: 'freeze' | 'logical';
  state: MoveState;
  cursor: number;
  batch: [number, number] | null;
  epoch: number | null;
  artifacts: MoveArtifacts;
  options: MoveOptionsRecord;
  rowsCopied: number;
  lagBytes: number | null;
  frozenMs: number;
  error: string | null;
  createdAt: string;
  updatedAt: string;
}

type Queryable = Pick<pg.ClientBase, 'query'>;

interface RawRow {
  id: string;
  side: string;
  range_lo: number;
  range_hi: number;
  from_shard: string;
  to_shard: string;
  mode: string;
  state: string;
  cursor: number;
  batch_lo: number | null;
  batch_hi: number | null;
  epoch: number | null;
  artifacts: MoveArtifacts;
  options: MoveOptionsRecord;
  rows_copied: bigint | string | number;
  lag_bytes: bigint | string | number | null;
  frozen_ms: bigint | string | number;
  error: string | null;
  created_at: Date;
  updated_at: Date;
}

function fromRaw(r: RawRow): MoveRow {
  return {
    id: r.id,
    side: r.side === 'source' ? 'source' : 'target',
    range: [r.range_lo, r.range_hi],
    from: r.from_shard,
    to: r.to_shard,
    mode: r.mode === 'logical' ? 'logical' : 'freeze',
    state: isMoveState(r.state) ? r.state : 'planned',
    cursor: r.cursor,
    batch: r.batch_lo === null || r.batch_hi === null ? null : [r.batch_lo, r.batch_hi],
    epoch: r.epoch,
    artifacts: r.artifacts,
    options: r.options,
    rowsCopied: Number(r.rows_copied),
    lagBytes: r.lag_bytes === null ? null : Number(r.lag_bytes),
    frozenMs: Number(r.frozen_ms),
    error: r.error,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

/** Every move row of a shard, newest first; none when the shard predates migration 0010. */
export async function readMoves(db: Queryable): Promise<MoveRow[]> {
  try {
    const r = await db.query<RawRow>(`SELECT * FROM shardline_moves ORDER BY created_at DESC, id`);
    return r.rows.map(fromRaw);
  } catch (err) {
    if ((err as { code?: string }).code === '42P01') return [];
    throw err;
  }
}

export async function readMove(db: Queryable, id: string): Promise<MoveRow | null> {
  const r = await db.query<RawRow>(`SELECT * FROM shardline_moves WHERE id = $1`, [id]);
  return r.rows[0] ? fromRaw(r.rows[0]) : null;
}

/** Writes the row of one side (insert, or a no-op when it exists: plan is idempotent). */
export async function insertMove(db: Queryable, m: Omit<MoveRow, 'createdAt' | 'updatedAt'>): Promise<void> {
  await db.query(
    `INSERT INTO shardline_moves (id, side, range_lo, range_hi, from_shard, to_shard, mode, state, cursor, batch_lo, batch_hi, epoch,
                                  artifacts, options, rows_copied, lag_bytes, frozen_ms, error)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
     ON CONFLICT (id) DO NOTHING`,
    [
      m.id,
      m.side,
      m.range[0],
      m.range[1],
      m.from,
      m.to,
      m.mode,
      m.state,
      m.cursor,
      m.batch?.[0] ?? null,
      m.batch?.[1] ?? null,
      m.epoch,
      JSON.stringify(m.artifacts),
      JSON.stringify(m.options),
      m.rowsCopied,
      m.lagBytes,
      m.frozenMs,
      m.error,
    ],
  );
}

export interface MovePatch {
  state?: MoveState;
  cursor?: number;
  batch?: [number, number] | null;
  epoch?: number;
  artifacts?: MoveArtifacts;
  rowsCopied?: number;
  lagBytes?: number | null;
  frozenMs?: number;
  error?: string | null;
  switched?: boolean;
  finished?: boolean;
}

/** Updates the row of this shard's side; `artifacts` are merged into what is stored. Returns the rows updated (0: no row here). */
export async function patchMove(db: Queryable, id: string, p: MovePatch): Promise<number> {
  const sets: string[] = ['updated_at = now()'];
  const values: unknown[] = [id];
  const set = (col: string, v: unknown, cast = '') => {
    values.push(v);
    sets.push(`${col} = $${values.length}${cast}`);
  };
  if (p.state !== undefined) set('state', p.state);
  if (p.cursor !== undefined) set('cursor', p.cursor);
  if (p.batch !== undefined) {
    set('batch_lo', p.batch?.[0] ?? null);
    set('batch_hi', p.batch?.[1] ?? null);
  }
  if (p.epoch !== undefined) set('epoch', p.epoch);
  if (p.artifacts !== undefined) {
    values.push(JSON.stringify(p.artifacts));
    sets.push(`artifacts = artifacts || $${values.length}::jsonb`);
  }
  if (p.rowsCopied !== undefined) set('rows_copied', p.rowsCopied);
  if (p.lagBytes !== undefined) set('lag_bytes', p.lagBytes);
  if (p.frozenMs !== undefined) set('frozen_ms', p.frozenMs);
  if (p.error !== undefined) set('error', p.error);
  if (p.switched) sets.push('switched_at = coalesce(switched_at, now())');
  if (p.finished) sets.push('finished_at = coalesce(finished_at, now())');
  // sql-text: column assignments from the fixed names above; every value is a parameter
  return (await db.query(`UPDATE shardline_moves SET ${sets.join(', ')} WHERE id = $1`, values)).rowCount ?? 0;
}
