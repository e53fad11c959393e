import type pg from 'pg';

/**
 * The ownership record of a shard (contract A: `shardline_meta['ownership']`), as the mover reads and
 * rewrites it. Pure range arithmetic here; the write goes through `shardline_set_ownership` (migration
 * 0009), which locks the fenced tables in writer order and re-creates the fence triggers.
 */
export interface OwnershipRecord {
  version: number;
  owned: [number, number, number][];
  incoming: [number, number, string][];
  frozen: [number, number, string][];
  movedTo: [number, number, string, number][];
}

type Tagged = readonly [number, number, ...unknown[]];

/** Entries of `list` minus the buckets lo..hi, splitting an entry that straddles them (tags kept). */
export function subtract<T extends Tagged>(list: readonly T[], lo: number, hi: number): T[] {
  const out: T[] = [];
  for (const e of list) {
    const [a, b, ...tag] = e;
    if (b < lo || a > hi) {
      out.push(e);
      continue;
    }
    if (a < lo) out.push([a, lo - 1, ...tag] as unknown as T);
    if (b > hi) out.push([hi + 1, b, ...tag] as unknown as T);
  }
  return out.sort((x, y) => x[0] - y[0]);
}

/** `list` with the entry added (its buckets first taken out of any other entry), merged with same-tag neighbours. */
export function add<T extends Tagged>(list: readonly T[], entry: T): T[] {
  const out = [...subtract(list, entry[0], entry[1]), entry].sort((x, y) => x[0] - y[0]);
  const merged: T[] = [];
  for (const e of out) {
    const last = merged.at(-1);
    if (last && last[1] + 1 === e[0] && sameTag(last, e)) merged[merged.length - 1] = [last[0], e[1], ...e.slice(2)] as unknown as T;
    else merged.push(e);
  }
  return merged;
}

function sameTag(a: Tagged, b: Tagged): boolean {
  return JSON.stringify(a.slice(2)) === JSON.stringify(b.slice(2));
}

/** The parts of `list` inside lo..hi (clipped). */
export function within<T extends Tagged>(list: readonly T[], lo: number, hi: number): T[] {
  return list
    .filter(([a, b]) => b >= lo && a <= hi)
    .map(([a, b, ...tag]) => [Math.max(a, lo), Math.min(b, hi), ...tag] as unknown as T)
    .sort((x, y) => x[0] - y[0]);
}

/** True when every bucket lo..hi is inside some entry of `list`. */
export function covers(list: readonly Tagged[], lo: number, hi: number): boolean {
  let next = lo;
  for (const [a, b] of [...list].sort((x, y) => x[0] - y[0])) {
    if (a > next) break;
    if (b >= next) next = b + 1;
    if (next > hi) return true;
  }
  return next > hi;
}

/** True when some bucket lo..hi is inside an entry of `list`. */
export function overlaps(list: readonly Tagged[], lo: number, hi: number): boolean {
  return list.some(([a, b]) => b >= lo && a <= hi);
}

/** The highest epoch the record gives any bucket (owned or movedTo), 0 when none. */
export function maxEpoch(r: OwnershipRecord): number {
  return Math.max(0, ...r.owned.map((e) => e[2]), ...r.movedTo.map((e) => e[3]));
}

export function emptyRecord(): OwnershipRecord {
  return { version: 0, owned: [], incoming: [], frozen: [], movedTo: [] };
}

function normalize(value: unknown): OwnershipRecord {
  const v = (value ?? {}) as Partial<OwnershipRecord>;
  return {
    version: typeof v.version === 'number' ? v.version : 0,
    owned: Array.isArray(v.owned) ? v.owned : [],
    incoming: Array.isArray(v.incoming) ? v.incoming : [],
    frozen: Array.isArray(v.frozen) ? v.frozen : [],
    movedTo: Array.isArray(v.movedTo) ? v.movedTo : [],
  };
}

type Queryable = Pick<pg.ClientBase, 'query'>;

const READ = `SELECT value FROM shardline_meta WHERE key = 'ownership'`;
const READ_FOR_UPDATE = `${READ} FOR UPDATE`;

/** The record as stored (an empty one when the shard has none yet). `forUpdate` inside a transaction locks its row. */
export async function readOwnership(db: Queryable, forUpdate = false): Promise<OwnershipRecord> {
  const r = forUpdate ? await db.query<{ value: unknown }>(READ_FOR_UPDATE) : await db.query<{ value: unknown }>(READ);
  return normalize(r.rows[0]?.value);
}

/**
 * Changes the record in the caller's transaction: read under a row lock, `change` applied, written
 * through shardline_set_ownership (which takes the fence locks: the caller has set lock_timeout).
 * Returns the record written.
 */
export async function changeOwnership(client: Queryable, change: (r: OwnershipRecord) => OwnershipRecord): Promise<OwnershipRecord> {
  const current = await readOwnership(client, true);
  const next = change(structuredClone(current));
  const r = await client.query<{ version: number }>(`SELECT shardline_set_ownership($1::jsonb) AS version`, [JSON.stringify(next)]);
  return { ...next, version: Number(r.rows[0]?.version ?? next.version) };
}
