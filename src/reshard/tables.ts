import pg from 'pg';
import { readAppTables } from '../migrate/self-closure.js';

/**
 * What a move carries: shardline's player tables by the player id's bucket, the identity directory
 * by its `bucket` column, claims by the home bucket of their match id (a publication row filter cannot
 * compute sha256, so the mover copies them itself), and every app player table by player_id.
 */
export type BucketKey = 'player' | 'bucket' | 'home';

export interface MovedTable {
  /** As written in SQL: quoted, schema-qualified when outside the shard's schema. */
  readonly sql: string;
  /** Plain name for reports: "players", "game.wallets". */
  readonly name: string;
  readonly key: BucketKey;
  /** Columns copied and checksummed, in the source's order, quoted (generated columns left out). */
  readonly columns: readonly string[];
  /** False for claims: the mover copies them itself in logical mode. */
  readonly replicated: boolean;
  /**
   * Rows of the range the move leaves to the target's own triggers, as a SQL condition on the rows it
   * does carry: the plain game's board rows (`period = ''`) are written on the target by the
   * player_stats triggers of migration 0012 when the stats arrive, so copying them too would collide.
   */
  readonly filter?: string;
}

/** The bucket of a row of a table keyed `key`, in SQL (contract A's expressions). */
export function bucketExpr(key: BucketKey): string {
  switch (key) {
    case 'player':
      return '((player_id >> 10) & 4095)::int';
    case 'bucket':
      return 'bucket';
    case 'home':
      // Contract A's home-bucket expression, through the function of migration 0010 that its index is on.
      return 'shardline_home_bucket(match_id)';
  }
}

/** `<bucket> BETWEEN lo AND hi` for a table; lo and hi are checked integers, inlined because COPY takes no parameters. */
export function inRange(key: BucketKey, lo: number, hi: number): string {
  if (!Number.isInteger(lo) || !Number.isInteger(hi)) throw new Error('bucket bounds must be integers');
  return `${bucketExpr(key)} BETWEEN ${lo} AND ${hi}`;
}

/** The rows of table `t` a move of lo..hi carries: its bucket range and the table's own filter. */
export function rowsIn(t: Pick<MovedTable, 'key' | 'filter'>, lo: number, hi: number): string {
  const range = inRange(t.key, lo, hi);
  return t.filter === undefined ? range : `${range} AND (${t.filter})`;
}

/**
 * shardline's own moved tables, parents first (players before the tables whose foreign keys point at
 * it). The leaderboards' player rows (migration 0012) come after player_stats, whose triggers have
 * then written the plain boards' rows on the target; their counts follow by the statement triggers of
 * leaderboard_scores, which fire for COPY (freeze mode) but not in a subscription's apply worker, so
 * logical mode rebuilds them on the target before the commit point.
 */
const OWN_TABLES: readonly { name: string; key: BucketKey; replicated: boolean; filter?: string }[] = [
  { name: 'players', key: 'player', replicated: true },
  { name: 'player_stats', key: 'player', replicated: true },
  { name: 'settlement_ledger', key: 'player', replicated: true },
  { name: 'player_identities', key: 'player', replicated: true },
  { name: 'leaderboard_scores', key: 'player', replicated: true, filter: `period <> ''` },
  { name: 'leaderboard_late_results', key: 'player', replicated: true },
  { name: 'identities', key: 'bucket', replicated: true },
  { name: 'settlement_inbox_claims', key: 'home', replicated: false },
];

type Queryable = Pick<pg.ClientBase, 'query'>;

const quoteName = (name: string) =>
  name
    .split('.')
    .map((p) => pg.escapeIdentifier(p))
    .join('.');

async function columnsOf(db: Queryable, sqlName: string): Promise<string[]> {
  const r = await db.query<{ name: string }>(
    `SELECT attname::text AS name FROM pg_catalog.pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`,
    [sqlName],
  );
  return r.rows.map((row) => pg.escapeIdentifier(row.name));
}

/**
 * The tables a move carries on this shard, in copy order: shardline's, then the app's player tables
 * (primary key starting with a bigint player_id, not declared local) with parents before children.
 */
export async function movedTables(db: Queryable): Promise<MovedTable[]> {
  const out: MovedTable[] = [];
  for (const t of OWN_TABLES) {
    const sql = pg.escapeIdentifier(t.name);
    out.push({
      sql,
      name: t.name,
      key: t.key,
      replicated: t.replicated,
      columns: await columnsOf(db, sql),
      ...(t.filter === undefined ? {} : { filter: t.filter }),
    });
  }
  const app = (await readAppTables(db)).filter(
    (t) => t.comment !== 'shardline:local' && t.primaryKey?.columns[0] === 'player_id' && t.columns.find((c) => c.name === 'player_id')?.type === 'bigint',
  );
  // Parents first: a table comes after every app table its foreign keys reference.
  const names = new Set(app.map((t) => t.table));
  const placed = new Set<string>();
  const ordered: typeof app = [];
  while (ordered.length < app.length) {
    const before = ordered.length;
    for (const t of app) {
      if (placed.has(t.table)) continue;
      const parents = t.foreignKeys.map((f) => f.references).filter((r) => names.has(r) && r !== t.table);
      if (parents.every((p) => placed.has(p))) {
        ordered.push(t);
        placed.add(t.table);
      }
    }
    if (ordered.length === before) {
      // A cycle: the rest in catalog order.
      for (const t of app) {
        if (placed.has(t.table)) continue;
        ordered.push(t);
        placed.add(t.table);
      }
    }
  }
  for (const t of ordered) {
    const sql = quoteName(t.table);
    out.push({ sql, name: t.table, key: 'player', replicated: true, columns: await columnsOf(db, sql) });
  }
  return out;
}
