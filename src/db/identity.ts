import type pg from 'pg';
import { ShardIdentityError } from '../errors/index.js';
import type { ShardSpec } from '../shardmap/index.js';
import { sqlState } from './pg-errors.js';
import { targetOf } from './connection.js';
import { connectionUrlOf } from '../shardmap/connection-url.js';

/** What a shard knows about itself, stamped by `shardline migrate`. */
export interface ShardIdentity {
  shardId: string;
  region: string;
  buckets: string;
  stampedAt: string;
}

type Queryable = Pick<pg.ClientBase, 'query'>;

export function bucketsText(shard: ShardSpec): string {
  return shard.buckets.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
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

/** Refuses unless the database is the shard `shard` (same id and region). */
export async function checkIdentity(db: Queryable, shard: ShardSpec): Promise<ShardIdentity> {
  const found = await readIdentity(db);
  if (!found) {
    throw new ShardIdentityError(shard.id, targetOf(shard), null, 'run "shardline migrate latest" to set up and stamp this shard');
  }
  if (found.shardId !== shard.id) throw new ShardIdentityError(shard.id, targetOf(shard), found.shardId);
  if (found.region !== shard.region) {
    throw new ShardIdentityError(shard.id, targetOf(shard), found.shardId, `it belongs to region "${found.region}", the map says "${shard.region}"`);
  }
  return found;
}

/**
 * Why `found` is not the stamp of `shard` (the faults checkIdentity refuses), or null when it is:
 * for reports that list every shard's fault instead of stopping at the first.
 */
export function identityProblem(shard: ShardSpec, found: ShardIdentity | null): string | null {
  if (!found) return 'no identity stamp: not migrated';
  if (found.shardId !== shard.id) return `the database is shard "${found.shardId}"`;
  if (found.region !== shard.region) return `the database belongs to region "${found.region}", the map says "${shard.region}"`;
  return null;
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

/**
 * Stamps the identity on a database, or checks it when already stamped. Runs in one transaction
 * under an advisory lock, so two map entries racing onto one database cannot both claim it.
 */
export async function stampIdentity(client: pg.ClientBase, shard: ShardSpec): Promise<ShardIdentity> {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('shardline:identity'))`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS shardline_meta (key text PRIMARY KEY, value jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`,
    );
    const existing = await readIdentity(client);
    if (existing && existing.shardId !== shard.id) {
      throw new ShardIdentityError(shard.id, targetOf(shard), existing.shardId, 'refusing to migrate another shard\'s database');
    }
    if (existing && existing.region !== shard.region) {
      throw new ShardIdentityError(shard.id, targetOf(shard), existing.shardId, `it belongs to region "${existing.region}", the map says "${shard.region}"`);
    }
    const identity: ShardIdentity = {
      shardId: shard.id,
      region: shard.region,
      buckets: bucketsText(shard),
      stampedAt: existing?.stampedAt ?? new Date().toISOString(),
    };
    await client.query(
      `INSERT INTO shardline_meta (key, value) VALUES ('identity', $1)
       ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
      [JSON.stringify(identity)],
    );
    await client.query('COMMIT');
    return identity;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
