import type pg from 'pg';
import type { SelfClosureFault } from '../errors/index.js';

/**
 * The rules that keep a shard a self-closed record set once the app adds tables of its own
 * (docs/app-tables.md): every row belongs to one player and points only at that player's rows, or
 * the table is declared per-shard bookkeeping. One list, so the docs, the error and the checks
 * cannot disagree on what exists.
 */
export const SELF_CLOSURE_RULES = {
  'player-id-type': 'the player_id column of a player table is bigint',
  'primary-key': 'a player table has player_id as the first column of its primary key',
  'foreign-key': 'every foreign key of a player table includes player_id, matched to player_id',
  'no-sequence': 'no column of a player table defaults to a sequence (serial, identity)',
  'declared-local': "a table without player_id is declared shard-local: COMMENT ON TABLE … IS 'shardline:local'",
} as const;

export type SelfClosureRule = keyof typeof SELF_CLOSURE_RULES;

/** The exact comment that declares a table shard-local. */
export const LOCAL_TABLE_COMMENT = 'shardline:local';

/**
 * shardline's own tables in the shard's schema, judged by shardline's migrations and not by these
 * rules (a test checks this list against a freshly migrated shard, so a new table cannot be missed).
 */
export const SHARDLINE_TABLES: readonly string[] = [
  'knex_migrations',
  'knex_migrations_lock',
  'shardline_meta',
  'players',
  'player_stats',
  'settlement_ledger',
  'settlement_inbox_claims',
  'settlement_inbox',
  'identities',
  'player_identities',
  'leaderboard_boards',
  'leaderboard_seasons',
  'leaderboard_scores',
  'leaderboard_counts',
  'leaderboard_count_deltas',
  'leaderboard_late_results',
  'shardline_app_migrations',
  'shardline_app_migrations_lock',
  'shardline_moves',
];

export interface ColumnFacts {
  name: string;
  /** format_type(), e.g. "bigint", "text". */
  type: string;
  /** The default expression, if any. */
  default: string | null;
  /** pg_attribute.attidentity: "" (none), "a" (ALWAYS) or "d" (BY DEFAULT). */
  identity: string;
}

export interface ForeignKeyFacts {
  name: string;
  columns: string[];
  /** The referenced table, as regclass text. */
  references: string;
  referencedColumns: string[];
}

export interface TableFacts {
  /** Schema-qualified unless in the shard's own schema. */
  table: string;
  comment: string | null;
  columns: ColumnFacts[];
  /** Columns of the primary key in key order, or null when there is none. */
  primaryKey: { name: string; columns: string[] } | null;
  foreignKeys: ForeignKeyFacts[];
}

type Queryable = Pick<pg.ClientBase, 'query'>;

/** Which rule is broken, and how: pure, so a unit test can feed it tables. */
export function judgeTables(tables: readonly TableFacts[]): SelfClosureFault[] {
  const faults: SelfClosureFault[] = [];
  const fault = (rule: SelfClosureRule, table: string, message: string, at: { column?: string; constraint?: string } = {}) =>
    faults.push({ table, ...at, rule, message });
  for (const t of tables) {
    // A declaration wins: the app says no bucket move carries this table and no query reads it across shards.
    if (t.comment === LOCAL_TABLE_COMMENT) continue;
    const pid = t.columns.find((c) => c.name === 'player_id');
    if (!pid) {
      fault(
        'declared-local',
        t.table,
        `table ${t.table} has no player_id column, so it is not a player table: give it player_id bigint first in its primary key, ` +
          `or declare it per-shard bookkeeping with COMMENT ON TABLE ${t.table} IS '${LOCAL_TABLE_COMMENT}'` +
          (t.comment === null ? '' : ` (its comment is ${JSON.stringify(t.comment)}, not exactly '${LOCAL_TABLE_COMMENT}')`),
      );
      continue;
    }
    if (pid.type !== 'bigint') {
      fault('player-id-type', t.table, `column ${t.table}.player_id is ${pid.type}: player ids are bigint`, { column: 'player_id' });
    }
    if (t.primaryKey === null) {
      fault('primary-key', t.table, `player table ${t.table} has no primary key: make it (player_id, …)`);
    } else if (t.primaryKey.columns[0] !== 'player_id') {
      fault(
        'primary-key',
        t.table,
        `the primary key ${t.primaryKey.name} of player table ${t.table} is (${t.primaryKey.columns.join(', ')}): player_id must come first, e.g. (player_id, ${t.primaryKey.columns.filter((c) => c !== 'player_id').join(', ') || '…'})`,
        { constraint: t.primaryKey.name },
      );
    }
    for (const fk of t.foreignKeys) {
      const i = fk.columns.indexOf('player_id');
      if (i < 0 || fk.referencedColumns[i] !== 'player_id') {
        fault(
          'foreign-key',
          t.table,
          `foreign key ${fk.name} of player table ${t.table} maps (${fk.columns.join(', ')}) to ${fk.references} (${fk.referencedColumns.join(', ')}): ` +
            `it must include player_id matched to player_id, so a row points only at its own player's rows; keep another player's id (a friend's) as plain data, without a foreign key, since that player may live on another shard`,
          { constraint: fk.name },
        );
      }
    }
    for (const c of t.columns) {
      const sequence =
        c.identity !== '' ? 'is an identity column' : c.default !== null && /\bnextval\s*\(/i.test(c.default) ? `defaults to ${c.default}` : null;
      if (sequence === null) continue;
      fault(
        'no-sequence',
        t.table,
        `column ${t.table}.${c.name} ${sequence}: a sequence is per shard, so its values repeat across shards and, after a bucket move, can hit the moved rows' ids; ` +
          `use a uuid (DEFAULT gen_random_uuid()), a per-player counter, or a natural key`,
        { column: c.name },
      );
    }
  }
  return faults;
}

const APP_TABLES_SQL = `SELECT c.oid::text AS oid,
            CASE WHEN n.nspname = current_schema() THEN c.relname::text ELSE n.nspname || '.' || c.relname END AS tname,
            obj_description(c.oid, 'pg_class') AS comment
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
        AND NOT (n.nspname = current_schema() AND c.relname = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb))))
      ORDER BY 2`;

const COLUMNS_SQL = `SELECT a.attrelid::text AS oid, a.attname::text AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
            pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS def, a.attidentity::text AS identity
       FROM pg_catalog.pg_attribute a
       LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.attgenerated = ''
      WHERE a.attrelid = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::oid)) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attrelid, a.attnum`;

const KEYS_SQL = `SELECT con.conrelid::text AS oid, con.conname::text AS name, con.contype::text AS kind,
            ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
                    JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i) AS columns,
            CASE WHEN con.contype = 'f' THEN con.confrelid::regclass::text END AS ref_table,
            ARRAY(SELECT a.attname::text FROM unnest(coalesce(con.confkey, '{}')) WITH ORDINALITY k(n, i)
                    JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i) AS referenced
       FROM pg_catalog.pg_constraint con
      WHERE con.conrelid = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)::oid)) AND con.contype IN ('p', 'f')
      ORDER BY con.conname`;

/**
 * The app's tables as the catalog describes them: every ordinary or partitioned table (partitions
 * are judged through their parent) of every user schema, except shardline's own in the shard's
 * schema. Constant statements, values as parameters (a list as one JSON text), pg_catalog only.
 */
export async function readAppTables(db: Queryable): Promise<TableFacts[]> {
  const tables = (await db.query<{ oid: string; tname: string; comment: string | null }>(APP_TABLES_SQL, [JSON.stringify(SHARDLINE_TABLES)])).rows;
  if (tables.length === 0) return [];
  const oids = tables.map((t) => t.oid);
  const columns = (await db.query<{ oid: string; name: string; type: string; def: string | null; identity: string }>(COLUMNS_SQL, [JSON.stringify(oids)])).rows;
  const constraints = (
    await db.query<{ oid: string; name: string; kind: string; columns: string[]; ref_table: string | null; referenced: string[] }>(KEYS_SQL, [
      JSON.stringify(oids),
    ])
  ).rows;
  return tables.map((t) => {
    const pk = constraints.find((c) => c.oid === t.oid && c.kind === 'p');
    return {
      table: t.tname,
      comment: t.comment,
      columns: columns.filter((c) => c.oid === t.oid).map(({ name, type, def, identity }) => ({ name, type, default: def, identity })),
      primaryKey: pk ? { name: pk.name, columns: pk.columns } : null,
      foreignKeys: constraints
        .filter((c) => c.oid === t.oid && c.kind === 'f')
        .map((c) => ({ name: c.name, columns: c.columns, references: c.ref_table ?? '(unknown)', referencedColumns: c.referenced })),
    };
  });
}

/** Every fault of the app's tables as they stand, through `db` (a migration transaction's connection, or a plain client). */
export async function selfClosureFaults(db: Queryable): Promise<SelfClosureFault[]> {
  return judgeTables(await readAppTables(db));
}
