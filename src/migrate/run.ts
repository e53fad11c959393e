import { refuseSharedDatabases } from '../db/shard-set.js';
import { targetOf } from '../db/connection.js';
import { ownershipProblem, sharedDatabaseProblems, stampKnowledge } from '../db/identity.js';
import { formatBuckets, showBuckets, type StampKnowledge } from '../db/bucket-ownership.js';
import { combineRouting, type OwnershipRecord } from '../db/live-routing.js';
import {
  MapAheadOfOwnershipError,
  MigrationError,
  SelfClosureError,
  ShardInMoveError,
  ShardOwnershipError,
  ShardOwnershipUnverifiedError,
  ShardUnavailableError,
  type ShardOwnershipFault,
} from '../errors/index.js';
import { BUCKET_COUNT } from '../shardmap/schema.js';
import type { ShardMap, ShardSpec } from '../shardmap/index.js';
import { expectedVersion, migrationNames } from './migration-source.js';
import { appSchemaProblem, appSchemaStanding } from './app-schema-version.js';
import { ShardMigrator, type ShardMigratorOptions, type ShardSchemaStatus } from './shard-migrator.js';

export type MigrateAction = 'latest' | 'rollback';

export interface ShardMigrateResult {
  shardId: string;
  region: string;
  target: string;
  ok: boolean;
  /** Migrations applied (latest) or undone (rollback) by this run. */
  changed: string[];
  /** Schema version after the run, as read back from the shard. */
  version: string | null;
  createdDatabase: boolean;
  /** With `appMigrations`: the app migrations applied (latest) or undone (rollback) by this run. */
  appChanged?: string[];
  /** With `appMigrations`: the app schema version after the run (null when none, or not known). */
  appVersion?: string | null;
  error?: string;
  errorCode?: string;
}

export interface MigrateShardsOptions extends ShardMigratorOptions {
  /** Shards migrated at once (default 4). */
  concurrency?: number;
  /** Create missing databases first (local development). */
  createDatabases?: boolean;
  /** A shard's turn has come (it was waiting for a slot of `concurrency`). */
  onShardStart?: (shardId: string) => void;
  /** A shard has finished, successfully or not, while others may still run. */
  onShardDone?: (result: ShardMigrateResult) => void;
  /** The map's `"epoch"` (default 0), for the check of the map against the shards' ownership records. */
  mapEpoch?: number;
}

/**
 * Runs one action on many shards, up to `concurrency` at a time. A failing shard never stops the
 * others: each result says what happened there, and a rerun continues from where each shard stands.
 *
 * First it reads the stamp of every shard of the map (`mapShards`, default `shards`): a map that
 * gives a stamped shard other buckets than it owns is refused whole (ShardOwnershipError), before
 * any database is created or written. A shard never stamped is stamped with its map buckets only
 * when every other shard's stamp could be read (or it has none to claim); otherwise its result is
 * ShardOwnershipUnverifiedError, since an unreadable shard may own them.
 */
export async function migrateShards(shards: readonly ShardSpec[], action: MigrateAction, options: MigrateShardsOptions = {}): Promise<ShardMigrateResult[]> {
  const mapShards = options.mapShards ?? shards;
  refuseSharedDatabases({ shards: mapShards });
  const read = await readOwnerships(mapShards, options);
  const stamps = new Map([...read].map(([id, r]) => [id, r.stamp]));
  combineRouting(ownershipMap(mapShards, options.mapEpoch ?? 0), recordsOf(read));
  const unknown = [...stamps].flatMap(([shardId, k]) => (k.kind === 'unknown' ? [{ shardId, reason: k.reason }] : []));
  const withMap = { ...options, mapShards };
  const app = options.appMigrations;
  if (action === 'rollback' && app !== undefined) {
    return mapLimit(shards, options.concurrency ?? 4, async (shard) => {
      options.onShardStart?.(shard.id);
      const moving = inMove(shard, read.get(shard.id)?.record ?? null);
      const result = moving ? refused(shard, moving) : await rollbackAppOne(shard, withMap);
      options.onShardDone?.(result);
      return result;
    });
  }
  const results = await mapLimit(shards, options.concurrency ?? 4, async (shard) => {
    options.onShardStart?.(shard.id);
    const others = unknown.filter((u) => u.shardId !== shard.id);
    const claims = action === 'latest' && stamps.get(shard.id)?.kind !== 'stamped' && shard.bucketCount > 0;
    const moving = inMove(shard, read.get(shard.id)?.record ?? null);
    const result = moving
      ? refused(shard, moving)
      : claims && others.length > 0
        ? refused(shard, new ShardOwnershipUnverifiedError(shard.id, showBuckets(shard.buckets), others))
        : await migrateOne(shard, action, withMap, others);
    if (app === undefined) options.onShardDone?.(result);
    return result;
  });
  return app === undefined ? results : applyAppMigrations(shards, results, withMap, app);
}

/** One shard's way through the app migrations in applyAppMigrations. */
interface AppLane {
  shard: ShardSpec;
  migrator: ShardMigrator;
  applied: string[];
  pending: string[];
  changed: string[];
  failed?: Error & { code?: string };
  done: boolean;
}

/**
 * The app's migrations, after shardline's, on every shard whose shardline migrations succeeded.
 * Before any runs, each shard is checked: app migrations the folder lacks (ahead) or in another
 * order refuse that shard, and so do tables that already break a self-closure rule (altered by
 * hand), so they cannot be blamed on the next migration.
 *
 * Then one migration at a time, in folder order: it runs on one shard first (the canary, in map
 * order), and only when it committed there on the others, in parallel. A migration the canary
 * refuses (a self-closure fault, or a failure of the migration itself) was rolled back there and
 * never ran elsewhere; the run stops, so every shard is left where it was before that migration.
 * A canary that cannot be reached hands the turn to the next shard. A shard failing later on is
 * left behind, the others go on; a rerun continues from where each shard stands.
 */
async function applyAppMigrations(
  shards: readonly ShardSpec[],
  results: readonly ShardMigrateResult[],
  options: MigrateShardsOptions,
  dir: string,
): Promise<ShardMigrateResult[]> {
  const known = migrationNames(dir);
  const concurrency = options.concurrency ?? 4;
  const ok = new Set(results.filter((r) => r.ok).map((r) => r.shardId));
  const finish = (lane: AppLane) => {
    if (lane.done) return;
    lane.done = true;
    options.onShardDone?.(resultOf(results.find((r) => r.shardId === lane.shard.id) as ShardMigrateResult, lane));
  };
  for (const r of results) if (!r.ok) options.onShardDone?.({ ...r, appChanged: [], appVersion: null });

  const lanes = await mapLimit(
    shards.filter((s) => ok.has(s.id)),
    concurrency,
    async (shard): Promise<AppLane> => {
      const lane: AppLane = {
        shard,
        migrator: new ShardMigrator(shard, { ...options, appMigrations: dir }),
        applied: [],
        pending: [],
        changed: [],
        done: false,
      };
      try {
        const state = await lane.migrator.appState();
        lane.applied = state.applied;
        const standing = appSchemaStanding(state.applied, known);
        const problem = appSchemaProblem(shard.id, state.applied, dir);
        if (problem && (standing.kind === 'ahead' || standing.kind === 'out-of-order')) throw problem;
        lane.pending = standing.kind === 'behind' ? standing.pending : [];
        if (lane.pending.length > 0 && state.faults.length > 0) throw new SelfClosureError(shard.id, null, state.faults);
      } catch (err) {
        lane.failed = err as Error;
      }
      if (lane.failed || lane.pending.length === 0) finish(lane);
      return lane;
    },
  );

  const step = async (lane: AppLane, name: string): Promise<boolean> => {
    options.onProgress?.({ shardId: lane.shard.id, migration: name, step: lane.changed.length + 1, of: lane.pending.length, set: 'app' });
    try {
      await lane.migrator.appUp(name);
      lane.applied.push(name);
      lane.changed.push(name);
      if (lane.changed.length === lane.pending.length) finish(lane);
      return true;
    } catch (err) {
      lane.failed = err as Error;
      finish(lane);
      return false;
    }
  };

  for (const name of known) {
    const group = lanes.filter((l) => !l.failed && l.pending.includes(name));
    let canaryOk = false;
    while (!canaryOk && group.length > 0) {
      const canary = group.shift() as AppLane;
      canaryOk = await step(canary, name);
      if (canaryOk || canary.failed instanceof ShardUnavailableError) continue;
      const reason = `not migrated further: app migration ${name} was refused on shard "${canary.shard.id}" (${canary.failed?.message ?? 'failed'}), so it ran on no other shard`;
      for (const l of lanes) {
        if (l.failed || l.done) continue;
        l.failed = new MigrationError(l.shard.id, reason);
        finish(l);
      }
      return results.map((r) =>
        resultOf(
          r,
          lanes.find((l) => l.shard.id === r.shardId),
        ),
      );
    }
    await mapLimit(group, concurrency, (l) => step(l, name));
  }
  return results.map((r) =>
    resultOf(
      r,
      lanes.find((l) => l.shard.id === r.shardId),
    ),
  );
}

function resultOf(r: ShardMigrateResult, lane: AppLane | undefined): ShardMigrateResult {
  if (!lane) return { ...r, appChanged: [], appVersion: null };
  const base = { ...r, appChanged: lane.changed, appVersion: lane.applied.at(-1) ?? null };
  if (!lane.failed) return base;
  const e = lane.failed;
  return { ...base, ok: false, error: e.message, ...(e.code ? { errorCode: e.code } : {}) };
}

async function rollbackAppOne(shard: ShardSpec, options: MigrateShardsOptions): Promise<ShardMigrateResult> {
  const m = new ShardMigrator(shard, options);
  const base = { shardId: shard.id, region: shard.region, target: targetOf(shard), createdDatabase: false, changed: [] };
  try {
    const undone = await m.appRollback();
    const st = await m.status();
    return { ...base, ok: true, version: st.version, appChanged: undone, appVersion: st.app.version };
  } catch (err) {
    const st = await m.status();
    const e = err as Error & { code?: string };
    return { ...base, ok: false, version: st.version, appChanged: [], appVersion: st.app.version, error: e.message, ...(e.code ? { errorCode: e.code } : {}) };
  }
}

type OwnershipRead = { stamp: StampKnowledge; record: OwnershipRecord | null };

/** Every shard's stamp and ownership record, by shard id, read `concurrency` at a time. */
async function readOwnerships(shards: readonly ShardSpec[], options: MigrateShardsOptions): Promise<Map<string, OwnershipRead>> {
  const read = await mapLimit(shards, options.concurrency ?? 4, (s) => new ShardMigrator(s, options).readOwnership());
  return new Map(shards.map((s, i) => [s.id, read[i] as OwnershipRead]));
}

/** The records to judge a map by: a shard's own, or before migration 0009 its stamp's buckets at epoch 0. */
function recordsOf(read: ReadonlyMap<string, { stamp: StampKnowledge; record?: OwnershipRecord | null }>): Map<string, OwnershipRecord> {
  const records = new Map<string, OwnershipRecord>();
  for (const [id, r] of read) {
    if (r.record) records.set(id, r.record);
    else if (r.stamp.kind === 'stamped') {
      records.set(id, { version: 0, owned: r.stamp.buckets.map(([lo, hi]) => [lo, hi, 0] as const), incoming: [], frozen: [], movedTo: [] });
    }
  }
  return records;
}

/** The shards of a map (or a part of one) as a map live routing can judge; buckets no listed shard has stay unassigned. */
function ownershipMap(shards: readonly ShardSpec[], epoch: number): ShardMap {
  const owner = new Uint16Array(BUCKET_COUNT).fill(0xffff);
  const specs = shards.map((s, index) => ({ ...s, index }));
  specs.forEach((s) => s.buckets.forEach(([lo, hi]) => owner.fill(s.index, lo, hi + 1)));
  return { file: '<map>', version: 1, epoch, regions: [], shards: specs, bucketOwner: owner };
}

/** ShardInMoveError when the shard's record holds a move in progress (incoming or frozen ranges). */
function inMove(shard: ShardSpec, record: OwnershipRecord | null): ShardInMoveError | null {
  if (!record || (record.incoming.length === 0 && record.frozen.length === 0)) return null;
  const entries = [...record.incoming.map((e) => ['incoming', ...e] as const), ...record.frozen.map((e) => ['frozen', ...e] as const)];
  const moves = [...new Set(entries.map((e) => e[3]))];
  const ranges = entries.map(([kind, lo, hi]) => `${kind} ${formatBuckets([[lo, hi]])}`).join(', ');
  return new ShardInMoveError(shard.id, moves, ranges);
}

function refused(shard: ShardSpec, err: Error & { code: string }): ShardMigrateResult {
  return {
    shardId: shard.id,
    region: shard.region,
    target: targetOf(shard),
    ok: false,
    changed: [],
    version: null,
    createdDatabase: false,
    error: err.message,
    errorCode: err.code,
  };
}

async function migrateOne(
  shard: ShardSpec,
  action: MigrateAction,
  options: MigrateShardsOptions,
  unknownShards: readonly { shardId: string; reason: string }[],
): Promise<ShardMigrateResult> {
  const m = new ShardMigrator(shard, options);
  const base = { shardId: shard.id, region: shard.region, target: targetOf(shard) };
  let createdDatabase = false;
  try {
    if (options.createDatabases) createdDatabase = await m.createDatabase();
    const changed = action === 'latest' ? await m.latest({ unknownShards }) : await m.rollback();
    const st = await m.status();
    return { ...base, ok: true, changed, version: st.version, createdDatabase };
  } catch (err) {
    const st = await m.status();
    const e = err as Error & { code?: string };
    return { ...base, ok: false, changed: [], version: st.version, createdDatabase, error: e.message, ...(e.code ? { errorCode: e.code } : {}) };
  }
}

export interface SchemaStatusReport {
  expected: string | null;
  /**
   * The app's migrations: `checked` when a folder was given (`appMigrations`), then `expected` is
   * its newest and `drift` says a shard is not at it (behind, ahead or out of order). Unchecked, the
   * shards' app versions are shown (each status's `app`) and never count as drift.
   */
  app: { checked: boolean; expected: string | null; drift: boolean };
  shards: ShardSchemaStatus[];
  /** Shards not at the same version as the others, or not at the version the code expects. */
  drift: boolean;
  unreachable: string[];
  /**
   * Shards that may not serve as themselves: a missing or foreign stamp, or a database the map
   * also gives another shard (each status says which, in `identityProblem`).
   */
  identityProblems: string[];
  /** Shards whose stamp owns other buckets than the map gives them (a subset of identityProblems). */
  ownershipFaults: string[];
}

export async function schemaStatus(shards: readonly ShardSpec[], options: MigrateShardsOptions = {}): Promise<SchemaStatusReport> {
  const expected = expectedVersion(options.migrationsDir);
  // Reported, not thrown as migrateShards does: a status command must show every shard's fault.
  const shared = sharedDatabaseProblems(shards);
  const mapShards = options.mapShards ?? shards;
  const read = await mapLimit(shards, options.concurrency ?? 8, (s) => new ShardMigrator(s, { ...options, mapShards }).status());
  // Across the shards read, so a fault names the stamped shard that holds what the map gives away.
  const known = new Map(
    read.flatMap((st, i) =>
      st.reachable ? [[st.shardId, { stamp: stampKnowledge(shards[i] as ShardSpec, st.identity), record: st.ownership }] as const] : [],
    ),
  );
  const faults = new Map(liveFaults(mapShards, options.mapEpoch ?? 0, recordsOf(known)).map((f) => [f.shardId, f]));
  const statuses = read.map((s) => {
    const fault = faults.get(s.shardId);
    // A fault replaces the per-shard wording of the same fault, which could not name other shards' stamps.
    const own = fault ? ownershipProblem(fault) : s.identityProblem;
    const problems = [shared.get(s.shardId), own].filter((p): p is string => p !== undefined);
    return { ...s, ...(problems.length ? { identityProblem: problems.join('; ') } : {}), ...(fault ? { ownershipFault: fault } : {}) };
  });
  const reachable = statuses.filter((s) => s.reachable);
  const versions = new Set(reachable.map((s) => s.version));
  const appChecked = options.appMigrations !== undefined;
  return {
    expected,
    app: {
      checked: appChecked,
      expected: appChecked ? expectedVersion(options.appMigrations) : null,
      drift: appChecked && reachable.some((s) => s.app.problem !== undefined),
    },
    shards: statuses,
    drift: versions.size > 1 || reachable.some((s) => s.version !== expected),
    unreachable: statuses.filter((s) => !s.reachable).map((s) => s.shardId),
    identityProblems: statuses.filter((s) => s.identityProblem !== undefined).map((s) => s.shardId),
    ownershipFaults: statuses.filter((s) => s.ownershipFault !== undefined).map((s) => s.shardId),
  };
}

export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  });
  await Promise.all(workers);
  return out;
}

/** What live routing refuses in the map, as per-shard faults for a report (a map ahead of the records: a fault of each shard it gives buckets to). */
function liveFaults(mapShards: readonly ShardSpec[], mapEpoch: number, records: ReadonlyMap<string, OwnershipRecord>): ShardOwnershipFault[] {
  try {
    combineRouting(ownershipMap(mapShards, mapEpoch), records);
    return [];
  } catch (err) {
    if (err instanceof ShardOwnershipError) return [...err.faults];
    if (err instanceof MapAheadOfOwnershipError) {
      return err.claims.map((c) => ({
        shardId: c.mapShard,
        owned: 'see its ownership record',
        mapped: `${c.buckets} at map epoch ${mapEpoch}`,
        gained: [{ buckets: c.buckets, heldBy: c.owner }],
        lost: [],
      }));
    }
    throw err;
  }
}
