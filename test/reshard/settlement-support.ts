import pg from 'pg';
import { urlFor } from '../support/env.js';
import { createTwoShards, SHARD_IDS, type TwoShards } from './two-shards.js';

export { SHARD_IDS };

/** Shards for the settlement-in-flight tests: the two-shard map of two-shards.ts (`sz-1` owning every bucket, `sz-2` empty). */
export type ForwardShards = TwoShards;

export function createForwardShards(): Promise<ForwardShards> {
  return createTwoShards('fwd', '<settlement forwarding test>');
}

async function withDb<T>(database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: urlFor(database) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

type Range = [number, number];
interface OwnershipRecord {
  version: number;
  owned: [number, number, number][];
  incoming: [number, number, string][];
  frozen: [number, number, string][];
  movedTo: [number, number, string, number][];
}

async function readRecord(c: pg.Client): Promise<OwnershipRecord> {
  const r = await c.query<{ value: OwnershipRecord }>(`SELECT value FROM shardline_meta WHERE key = 'ownership'`);
  const v = r.rows[0]?.value;
  if (!v) throw new Error('shard has no ownership record');
  return { version: v.version, owned: v.owned ?? [], incoming: v.incoming ?? [], frozen: v.frozen ?? [], movedTo: v.movedTo ?? [] };
}

async function setRecord(c: pg.Client, change: (r: OwnershipRecord) => OwnershipRecord): Promise<void> {
  await c.query('BEGIN');
  try {
    await c.query(`SET LOCAL lock_timeout = '10s'`);
    const rec = change(await readRecord(c));
    await c.query(`SELECT shardline_set_ownership($1::jsonb)`, [JSON.stringify(rec)]);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** `owned` less one range, each piece keeping its epoch. */
function without<T extends [number, number, ...unknown[]]>(ranges: T[], [lo, hi]: Range): T[] {
  const out: T[] = [];
  for (const r of ranges) {
    const [a, b, ...rest] = r;
    if (b < lo || a > hi) out.push(r);
    else {
      if (a < lo) out.push([a, lo - 1, ...rest] as unknown as T);
      if (b > hi) out.push([hi + 1, b, ...rest] as unknown as T);
    }
  }
  return out;
}

const PLAYER_BUCKET = `((player_id >> 10) & 4095)`;
const HOME_BUCKET = `(((get_byte(sha256(convert_to(match_id, 'UTF8')), 2) & 15) << 8) | get_byte(sha256(convert_to(match_id, 'UTF8')), 3))`;
/** What a move carries, in foreign-key order, with each table's bucket expression. */
const CARRIED: [string, string][] = [
  ['players', PLAYER_BUCKET],
  ['player_stats', PLAYER_BUCKET],
  ['settlement_ledger', PLAYER_BUCKET],
  ['player_identities', PLAYER_BUCKET],
  ['identities', 'bucket'],
  ['settlement_inbox_claims', HOME_BUCKET],
];

/**
 * A cut-over by hand, as the mover does it in freeze mode (until the tests use moveBuckets): the
 * target records the range incoming, the source freezes it, the rows are copied past the target's
 * fence, the target commits ownership at `epoch`, the source records where the range went.
 * `whileFrozen` runs with the range frozen on the source and not yet owned by the target.
 */
export async function simulateMove(
  s: ForwardShards,
  range: Range,
  options: { from?: number; to?: number; epoch?: number; appTables?: string[]; whileFrozen?: () => Promise<void> } = {},
): Promise<void> {
  const from = options.from ?? 0;
  const to = options.to ?? 1;
  const epoch = options.epoch ?? 1;
  const [lo, hi] = range;
  const moveId = `sim-${lo}-${hi}-${epoch}`;
  const toId = SHARD_IDS[to] as string;
  const src = new pg.Client({ connectionString: urlFor(s.databases[from] as string) });
  const dst = new pg.Client({ connectionString: urlFor(s.databases[to] as string) });
  await src.connect();
  await dst.connect();
  try {
    await setRecord(dst, (r) => ({ ...r, incoming: [...r.incoming, [lo, hi, moveId]] }));
    await setRecord(src, (r) => ({ ...r, owned: without(r.owned, range), frozen: [...r.frozen, [lo, hi, moveId]] }));
    const tables: [string, string][] = [...CARRIED, ...(options.appTables ?? []).map((t): [string, string] => [t, PLAYER_BUCKET])];
    await dst.query('BEGIN');
    await dst.query(`SET LOCAL shardline.fence = 'off'`);
    for (const [table, bucket] of tables) {
      const rows = await src.query<{ rows: unknown }>(
        `SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]'::jsonb) AS rows FROM ${pg.escapeIdentifier(table)} t WHERE ${bucket} BETWEEN $1 AND $2`,
        [lo, hi],
      );
      await dst.query(
        `INSERT INTO ${pg.escapeIdentifier(table)} SELECT * FROM jsonb_populate_recordset(NULL::${pg.escapeIdentifier(table)}, $1::jsonb) ON CONFLICT DO NOTHING`,
        [JSON.stringify(rows.rows[0]?.rows ?? [])],
      );
    }
    // The target mints ids in the moved buckets from now on: its clock starts past the source's.
    await dst.query(`SELECT setval('player_id_seq', greatest((SELECT last_value FROM player_id_seq), $1::bigint))`, [
      (await src.query<{ v: string }>(`SELECT last_value::text AS v FROM player_id_seq`)).rows[0]?.v ?? '1',
    ]);
    await dst.query('COMMIT');
    await options.whileFrozen?.();
    await setRecord(dst, (r) => ({ ...r, incoming: r.incoming.filter((x) => x[2] !== moveId), owned: [...r.owned, [lo, hi, epoch]] }));
    await setRecord(src, (r) => ({ ...r, frozen: r.frozen.filter((x) => x[2] !== moveId), movedTo: [...r.movedTo, [lo, hi, toId, epoch]] }));
  } finally {
    await src.end();
    await dst.end();
  }
}

/** Deletes the source's copy of a moved range (the purge), past its fence. */
export async function purgeRange(s: ForwardShards, range: Range, from = 0): Promise<void> {
  await withDb(s.databases[from] as string, async (c) => {
    await c.query('BEGIN');
    await c.query(`SET LOCAL shardline.fence = 'off'`);
    for (const [table, bucket] of [...CARRIED].reverse()) await c.query(`DELETE FROM ${pg.escapeIdentifier(table)} WHERE ${bucket} BETWEEN $1 AND $2`, range);
    await c.query('COMMIT');
  });
}

/** A player id in `bucket` (the id's time part from `n`, so ids differ). */
export function playerInBucket(bucket: number, n: number): bigint {
  return (BigInt(2_000_000 + n) << 22n) | (BigInt(bucket) << 10n) | BigInt(n % 1024);
}
