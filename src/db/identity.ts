import type pg from 'pg';
import { ShardIdentityError, ShardOwnershipError, ShardOwnershipUnverifiedError, type ShardOwnershipFault } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import type { ShardSpec } from '../shardmap/index.js';
import { sqlState } from './pg-errors.js';
import { targetOf } from './connection.js';
import { connectionUrlOf } from '../shardmap/connection-url.js';
import { formatBuckets, parseBuckets, showBuckets, type StampKnowledge } from './bucket-ownership.js';

/**
 * What a shard knows about itself, stamped by `shardline migrate` when it is first set up. Its
 * `buckets` are the buckets it was set up with, from which its ownership record starts (migration
 * 0009); after a bucket move they are history, and the record says what it owns.
 */
export interface ShardIdentity {
  shardId: string;
  region: string;
  /** Inclusive ranges, "0-1023" or "0-10,20-30"; "" for a shard that owns none yet. */
  buckets: string;
  stampedAt: string;
}

type Queryable = Pick<pg.ClientBase, 'query'>;

export function bucketsText(shard: ShardSpec): string {
  return formatBuckets(shard.buckets);
}

/** The identity stored on the database, or null when it has none (never migrated). */
export async function readIdentity(db: Queryable): Promise<ShardIdentity | null> {
  try {
    const r = await db.query<{ value: ShardIdentity }>(`SELECT value FROM shardline_meta WHERE key = 'identity'`);
    return r.rows[0]?.value ?? null;
  } catch (err) {
    if (sqlState(err) === '42P01') return null; // undefined_table: not migrated yet
    throw err;
  }
}

/**
 * Refuses unless the database is the shard `shard`: same id and region (ShardIdentityError). What
 * it owns is no longer the stamp's to say: its ownership record is (migration 0009), and live
 * routing checks the map against every shard's record (src/db/live-routing.ts).
 */
export async function checkIdentity(db: Queryable, shard: ShardSpec): Promise<ShardIdentity> {
  return assertIdentity(shard, await readIdentity(db));
}

/** checkIdentity on a stamp already read (null: none). */
export function assertIdentity(shard: ShardSpec, found: ShardIdentity | null): ShardIdentity {
  if (!found) {
    throw new ShardIdentityError(shard.id, targetOf(shard), null, 'run "shardline migrate latest" to set up and stamp this shard');
  }
  refuseForeignStamp(shard, found);
  return found;
}

/** The stamp is another shard's, of another region, or unreadable: ShardIdentityError. */
function refuseForeignStamp(shard: ShardSpec, found: ShardIdentity, detail?: string): void {
  if (found.shardId !== shard.id) throw new ShardIdentityError(shard.id, targetOf(shard), found.shardId, detail);
  if (found.region !== shard.region) {
    throw new ShardIdentityError(shard.id, targetOf(shard), found.shardId, `it belongs to region "${found.region}", the map says "${shard.region}"`);
  }
  if (parseBuckets(found.buckets) === null) {
    throw new ShardIdentityError(shard.id, targetOf(shard), found.shardId, `its stamp's buckets ${showValue(found.buckets)} are not bucket ranges`);
  }
}

/**
 * What a stamp read from `shard`'s database says it owns. Another shard's stamp, or one whose
 * buckets cannot be read, counts as unknown: what that database owns is not this shard's to say.
 */
export function stampKnowledge(shard: ShardSpec, found: ShardIdentity | null): StampKnowledge {
  if (!found) return { kind: 'unstamped' };
  if (found.shardId !== shard.id) return { kind: 'unknown', reason: `its database is stamped as shard ${showValue(found.shardId)}` };
  const buckets = parseBuckets(found.buckets);
  if (buckets === null) return { kind: 'unknown', reason: `its stamp's buckets ${showValue(found.buckets)} are not bucket ranges` };
  return { kind: 'stamped', buckets };
}

/**
 * Why `found` is not the stamp of `shard` (the faults checkIdentity refuses), or null when it is:
 * for reports that list every shard's fault instead of stopping at the first.
 */
export function identityProblem(shard: ShardSpec, found: ShardIdentity | null): string | null {
  if (!found) return 'no identity stamp: not migrated';
  if (found.shardId !== shard.id) return `the database is shard "${found.shardId}"`;
  if (found.region !== shard.region) return `the database belongs to region "${found.region}", the map says "${shard.region}"`;
  if (parseBuckets(found.buckets) === null) return `its stamp's buckets ${showValue(found.buckets)} are not bucket ranges`;
  return null;
}

/** A fault of ShardOwnershipError as one line of a per-shard report, with what to do. */
export function ownershipProblem(fault: ShardOwnershipFault): string {
  return `${ShardOwnershipError.describe(fault)}; restore the map (give it ${fault.owned}), or move the buckets with "shardline buckets move"`;
}

/**
 * Each shard the map points at a host:port/database that an earlier shard of the map already has,
 * in map order, with that earlier shard: the one test behind refusing such a map (ShardSet,
 * migrate) and reporting it per shard (status).
 */
export function sharedDatabases(shards: readonly ShardSpec[]): { shardId: string; sharedWith: string; target: string }[] {
  const first = new Map<string, string>();
  const repeats: { shardId: string; sharedWith: string; target: string }[] = [];
  for (const s of shards) {
    if (!connectionUrlOf(s)) continue;
    const target = targetOf(s);
    const earlier = first.get(target);
    if (earlier === undefined) first.set(target, s.id);
    else repeats.push({ shardId: s.id, sharedWith: earlier, target });
  }
  return repeats;
}

/** sharedDatabases as a reason for every shard involved (the first of each group too), by shard id. */
export function sharedDatabaseProblems(shards: readonly ShardSpec[]): Map<string, string> {
  const groups = new Map<string, string[]>();
  for (const r of sharedDatabases(shards)) groups.set(r.target, [...(groups.get(r.target) ?? [r.sharedWith]), r.shardId]);
  const problems = new Map<string, string>();
  for (const [target, ids] of groups) {
    const names = ids.map((id) => `"${id}"`).join(' and ');
    for (const id of ids) problems.set(id, `the map points shards ${names} at the same database ${target}`);
  }
  return problems;
}

export interface StampOptions {
  /** Every shard of the map: names, in a refusal, the shard the map gives this one's buckets to. */
  mapShards?: readonly ShardSpec[];
  /**
   * Shards of the map whose stamps could not be read. A shard never stamped is then not stamped
   * as owner of its map buckets (ShardOwnershipUnverifiedError): one of them may own them.
   */
  unknownShards?: readonly { readonly shardId: string; readonly reason: string }[];
}

/**
 * Stamps the identity on a database that has none, or checks it when already stamped; an
 * existing stamp is never rewritten, so its buckets stay what the shard owns. Runs in one
 * transaction under an advisory lock, so two map entries racing onto one database cannot both claim it.
 */
export async function stampIdentity(client: pg.ClientBase, shard: ShardSpec, options: StampOptions = {}): Promise<ShardIdentity> {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('shardline:identity'))`);
    await client.query(`CREATE TABLE IF NOT EXISTS shardline_meta (key text PRIMARY KEY, value jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
    const existing = await readIdentity(client);
    if (existing) {
      // What it owns is checked map-wide against the ownership records before a migrate (src/migrate/run.ts).
      refuseForeignStamp(shard, existing, "refusing to migrate another shard's database");
      await client.query('COMMIT');
      return existing;
    }
    const unknown = (options.unknownShards ?? []).filter((u) => u.shardId !== shard.id);
    if (shard.bucketCount > 0 && unknown.length > 0) throw new ShardOwnershipUnverifiedError(shard.id, showBuckets(shard.buckets), unknown);
    const identity: ShardIdentity = {
      shardId: shard.id,
      region: shard.region,
      buckets: bucketsText(shard),
      stampedAt: new Date().toISOString(),
    };
    await client.query(`INSERT INTO shardline_meta (key, value) VALUES ('identity', $1)`, [JSON.stringify(identity)]);
    await initOwnership(client, shard);
    await client.query('COMMIT');
    return identity;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * A database cloned from a template migrated unstamped has migration 0009 but no ownership record
 * (0009 makes it from the stamp): the stamp's buckets at epoch 0, and the fence they imply.
 * Before 0009 there is nothing to do: the migration makes the record when it runs.
 */
async function initOwnership(client: Queryable, shard: ShardSpec): Promise<void> {
  const r = await client.query<{ fenced: boolean }>(`SELECT to_regprocedure('shardline_apply_fence()') IS NOT NULL AS fenced`);
  if (!r.rows[0]?.fenced) return;
  const record = { version: 1, owned: shard.buckets.map(([lo, hi]) => [lo, hi, 0]), incoming: [], frozen: [], movedTo: [] };
  await client.query(`INSERT INTO shardline_meta (key, value) VALUES ('ownership', $1) ON CONFLICT (key) DO NOTHING`, [JSON.stringify(record)]);
  await client.query(`SELECT shardline_apply_fence()`);
}
