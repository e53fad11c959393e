import { sql } from 'kysely';
import { BUCKET_COUNT } from '../shardmap/schema.js';

/**
 * What one shard's ownership record (shardline_meta 'ownership', migration 0009) says about each
 * bucket, as the settlement paths need it: apply here, wait (the range is in its cut-over, or being
 * copied here), forward (moved to another shard), or nobody's business of this shard. Read inside
 * the statement or transaction that acts on it, never cached: the record is the fence's own truth.
 */
export type Placement =
  | { readonly kind: 'own' }
  | { readonly kind: 'wait'; readonly why: 'frozen' | 'incoming' }
  | { readonly kind: 'moved'; readonly to: string }
  | { readonly kind: 'foreign' };

const OWN: Placement = { kind: 'own' };
const FOREIGN: Placement = { kind: 'foreign' };
const FROZEN: Placement = { kind: 'wait', why: 'frozen' };
const INCOMING: Placement = { kind: 'wait', why: 'incoming' };

export interface OwnershipView {
  /** The record's version, or null when the shard has none (before migration 0009: it owns what it serves). */
  readonly version: number | null;
  placementOf(bucket: number): Placement;
  /** Ranges moved away, by the shard they went to. */
  readonly movedTo: ReadonlyMap<string, readonly (readonly [number, number])[]>;
}

/** The ownership record as a scalar subquery, for reading it in the same statement as the rows. */
export const OWNERSHIP_RECORD = sql<unknown>`(SELECT value FROM shardline_meta WHERE key = 'ownership')`;

/** A shard without a record owns everything routed to it (the map and its stamp agreed at start). */
export const OWNS_ALL: OwnershipView = { version: null, placementOf: () => OWN, movedTo: new Map() };

const isBucket = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0 && (x as number) < BUCKET_COUNT;

function rangesOf(value: unknown, field: string): unknown[][] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`ownership record: ${field} is not an array`);
  return value.map((r: unknown) => {
    if (!Array.isArray(r) || !isBucket(r[0]) || !isBucket(r[1]) || r[0] > r[1]) throw new Error(`ownership record: ${field} holds ${JSON.stringify(r)}`);
    return r as unknown[];
  });
}

/**
 * The view of a record as stored (jsonb, as pg returns it). A record that cannot be read throws:
 * acting on a guess could apply a moved player's result on the wrong shard.
 */
export function parseOwnership(value: unknown): OwnershipView {
  if (value === null || value === undefined) return OWNS_ALL;
  if (typeof value !== 'object' || Array.isArray(value)) throw new Error('ownership record is not an object');
  const rec = value as Record<string, unknown>;
  const place = new Array<Placement>(BUCKET_COUNT).fill(FOREIGN);
  const movedTo = new Map<string, [number, number][]>();
  // Later kinds win where a broken record overlaps: owned is the fence's own list, so it is last.
  for (const r of rangesOf(rec.movedTo, 'movedTo')) {
    const to = r[2];
    if (typeof to !== 'string' || to.length === 0) throw new Error(`ownership record: movedTo holds ${JSON.stringify(r)}`);
    const target: Placement = { kind: 'moved', to };
    place.fill(target, r[0] as number, (r[1] as number) + 1);
    movedTo.set(to, [...(movedTo.get(to) ?? []), [r[0] as number, r[1] as number]]);
  }
  for (const r of rangesOf(rec.incoming, 'incoming')) place.fill(INCOMING, r[0] as number, (r[1] as number) + 1);
  for (const r of rangesOf(rec.frozen, 'frozen')) place.fill(FROZEN, r[0] as number, (r[1] as number) + 1);
  for (const r of rangesOf(rec.owned, 'owned')) place.fill(OWN, r[0] as number, (r[1] as number) + 1);
  const version = typeof rec.version === 'number' ? rec.version : 0;
  return { version, placementOf: (bucket) => place[bucket] ?? FOREIGN, movedTo };
}
