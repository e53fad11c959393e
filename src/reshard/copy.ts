import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { rowsIn, type MovedTable } from './tables.js';

const { from: copyFrom, to: copyTo } = copyStreams;

/**
 * Streams one table's rows of buckets lo..hi from the source into the target: `COPY (SELECT …) TO
 * STDOUT` piped into `COPY … FROM STDIN`, binary (both shards are at one schema version, so the
 * types are the same), with nothing buffered beyond the stream's own chunks. Runs on the target
 * client's transaction, which has the fence off. Returns the rows written.
 */
export async function copyTable(source: pg.ClientBase, target: pg.ClientBase, t: MovedTable, lo: number, hi: number): Promise<number> {
  const cols = t.columns.join(', ');
  // sql-text: table and column names escaped by movedTables(), bucket bounds checked integers (inRange); COPY and DDL take no parameters
  const out = source.query(copyTo(`COPY (SELECT ${cols} FROM ${t.sql} WHERE ${rowsIn(t, lo, hi)}) TO STDOUT (FORMAT binary)`));
  // sql-text: table and column names escaped by movedTables(), bucket bounds checked integers (inRange); COPY and DDL take no parameters
  const into = target.query(copyFrom(`COPY ${t.sql} (${cols}) FROM STDIN (FORMAT binary)`));
  await pipeline(out, into);
  return into.rowCount;
}

/** Deletes the rows of buckets lo..hi from every table, children first (the caller's transaction has the fence off). */
export async function deleteRange(db: Pick<pg.ClientBase, 'query'>, tables: readonly MovedTable[], lo: number, hi: number): Promise<number> {
  let n = 0;
  // sql-text: table and column names escaped by movedTables(), bucket bounds checked integers (inRange); COPY and DDL take no parameters
  for (const t of [...tables].reverse()) n += (await db.query(`DELETE FROM ${t.sql} WHERE ${rowsIn(t, lo, hi)}`)).rowCount ?? 0;
  return n;
}

/**
 * Claims of buckets lo..hi not yet on the target, added (ON CONFLICT DO NOTHING): logical mode's
 * back-fill before the fence and its delta under it. Claims are insert-only, so a present row is
 * already the same row.
 */
export async function copyMissingRows(source: pg.ClientBase, target: pg.ClientBase, t: MovedTable, lo: number, hi: number): Promise<number> {
  const cols = t.columns.join(', ');
  // sql-text: table and column names escaped by movedTables(), bucket bounds checked integers (inRange); COPY and DDL take no parameters
  await target.query(`CREATE TEMP TABLE IF NOT EXISTS shardline_mv_claims (LIKE ${t.sql} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`);
  await target.query(`TRUNCATE shardline_mv_claims`);
  // sql-text: table and column names escaped by movedTables(), bucket bounds checked integers (inRange); COPY and DDL take no parameters
  const out = source.query(copyTo(`COPY (SELECT ${cols} FROM ${t.sql} WHERE ${rowsIn(t, lo, hi)}) TO STDOUT (FORMAT binary)`));
  // sql-text: table and column names escaped by movedTables(), bucket bounds checked integers (inRange); COPY and DDL take no parameters
  const into = target.query(copyFrom(`COPY shardline_mv_claims (${cols}) FROM STDIN (FORMAT binary)`));
  await pipeline(out, into);
  // sql-text: table and column names escaped by movedTables(), bucket bounds checked integers (inRange); COPY and DDL take no parameters
  const r = await target.query(`INSERT INTO ${t.sql} (${cols}) SELECT ${cols} FROM shardline_mv_claims ON CONFLICT DO NOTHING`);
  return r.rowCount ?? 0;
}
