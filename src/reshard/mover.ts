import { randomBytes } from 'node:crypto';
import type { ConnectionOptions } from '../db/connection.js';
import { ShardSet } from '../db/shard-set.js';
import { forwardMovedParts } from '../settlement/forwarding.js';
import type { RedisConnection } from '../settlement/types.js';
import { MoveBudgetError, MoveFailedError, MoveNotFoundError, MoveRefusedError, MoveVerifyError, ValidationError } from '../errors/index.js';
import type { Logger } from '../logging/logger.js';
import { appliedMigrations } from '../migrate/schema-version.js';
import type { ShardMap } from '../shardmap/index.js';
import { copyMissingRows, copyTable, deleteRange } from './copy.js';
import { dropArtifacts, ensureReplication, logicalPrechecks, replicationLag, replicationPresent, waitPastLsn, waitSynced } from './logical.js';
import { add, changeOwnership, covers, maxEpoch, overlaps, readOwnership, subtract, within, type OwnershipRecord } from './ownership-record.js';
import { MoverShards } from './session.js';
import { abortKind, phaseOf, type MoveState } from './states.js';
import { insertMove, patchMove, readMove, readMoves, type MoveOptionsRecord, type MovePatch, type MoveRow } from './store.js';
import { movedTables, rowsIn, type MovedTable } from './tables.js';
import { checksums, compareSums } from './verify.js';

export type MoveMode = 'freeze' | 'logical';

/** Where `onState` is called: after each state is recorded, and after a new move's row is written on its target only. */
export type MovePausePoint = MoveState | 'planned-on-target';

export interface MoveProgress {
  moveId: string;
  state: MoveState;
  /** The batch (freeze) or range (logical) being worked on. */
  batch?: readonly [number, number];
  /** Set while a table is copied: its name and the rows copied of it in this batch. */
  table?: string;
  rows?: number;
  /** Rows copied by the move so far. */
  rowsCopied: number;
  lagBytes?: number | null;
  /** A finished step in words ("fence 12 ms · verify 40 ms · frozen 80 ms"). */
  message?: string;
}

export interface MoveRunOptions {
  connection?: ConnectionOptions;
  logger?: Logger;
  onProgress?: (p: MoveProgress) => void;
  /** Stops the mover between steps (the move stays resumable); also ends the purge grace wait. */
  signal?: AbortSignal;
  /**
   * Called after each state is recorded, before the next step: for crash tests (the CLI's
   * SHARDLINE_MOVE_PAUSE_AT makes it wait there to be killed). Not for production use.
   */
  onState?: (state: MovePausePoint, moveId: string) => void | Promise<void>;
  /** Called once after the commit point of the whole range, with the move (after settlement's forward sweep). */
  afterCommit?: (move: MoveReport) => void | Promise<void>;
  /**
   * After the commit point, pending settlement parts on the source holding moved players are
   * forwarded to the target at once (forwardMovedParts; the source's worker would forward them
   * too). With a Redis `connection` the target's jobs are enqueued now, else its reconciler finds
   * them. `false` skips the sweep.
   */
  settlement?: { connection?: RedisConnection; prefix?: string } | false;
  /** The most buckets the purge deletes in one transaction (default 64). */
  purgeBatchBuckets?: number;
}

export interface MoveOptions extends MoveRunOptions {
  map: ShardMap;
  range: readonly [number, number];
  to: string;
  mode?: MoveMode;
  /** After the commit point: purge the source's copy after `graceMs` (default), or leave it for `purgeMove`. */
  purge?: 'after-grace' | 'never';
  /** Default 60 000 ms: several routing refresh periods, so clients learn the move before the rows go. */
  graceMs?: number;
  /** Freeze mode: buckets fenced, copied, verified and committed together (default 4). */
  batchBuckets?: number;
  /** Logical mode: cut-over refused while the slot lags more than this (default 16 MiB). */
  maxLagBytes?: number;
  /** A freeze (per batch, or logical mode's cut-over) longer than this is undone and the move fails, resumable (default 5000 ms; 0 = no limit). */
  maxFreezeMs?: number;
  /** Plans and pre-checks only: nothing is written. */
  dryRun?: boolean;
}

export interface MovePlan {
  range: [number, number];
  from: string;
  to: string;
  mode: MoveMode;
  batches: number;
  /** Rows in the range on the source, per table. */
  rows: Record<string, number>;
  tables: string[];
  /** The epoch the (first) commit will take. */
  epoch: number;
}

export interface MoveReport {
  id: string;
  range: [number, number];
  from: string;
  to: string;
  mode: MoveMode;
  state: MoveState;
  /** The epoch of the last commit (null before any). */
  epoch: number | null;
  rowsCopied: number;
  /** Freeze time of each batch (freeze mode) or of the cut-over (logical), in ms, in this run. */
  freezes: number[];
  /** The longest freeze of the move so far, ms. */
  frozenMs: number;
  /** Time this run spent copying rows (freeze mode's COPY of each batch), ms. */
  copyMs: number;
  purged: boolean;
  /** After an abort: ranges a freeze-mode move had committed before it, which stay moved (purge their source copy with `purgeMove`). */
  kept?: [number, number][];
  plan?: MovePlan;
}

/** A move as `listMoves` and `buckets moves --json` show it. */
export interface MoveSummary {
  id: string;
  range: [number, number];
  from: string;
  to: string;
  mode: MoveMode;
  state: MoveState;
  rowsCopied: number;
  lagBytes: number | null;
  frozenMs: number;
  artifacts: MoveRow['artifacts'];
  epoch: number | null;
  cursor: number;
  error: string | null;
  createdAt: string;
  updatedAt: string;
}

const DEFAULTS = { batchBuckets: 4, graceMs: 60_000, maxLagBytes: 16 * 1024 * 1024, maxFreezeMs: 5000, purgeBatchBuckets: 64 };

const fmt = (r: readonly [number, number]) => (r[0] === r[1] ? `${r[0]}` : `${r[0]}-${r[1]}`);

function checkRange(range: unknown): [number, number] {
  const r = range as [unknown, unknown];
  if (!Array.isArray(r) || r.length !== 2 || !r.every((x) => Number.isInteger(x))) throw new ValidationError('range', 'must be [lo, hi], two bucket numbers');
  const [lo, hi] = r as [number, number];
  if (lo < 0 || hi > 4095 || lo > hi) throw new ValidationError('range', `must satisfy 0 <= lo <= hi <= 4095, got ${lo}-${hi}`);
  return [lo, hi];
}

function newMoveId(): string {
  return `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

export function artifactName(id: string): string {
  return `shardline_mv_${id}`;
}

/** Ms since `t0`. */
const since = (t0: number) => Math.round(performance.now() - t0);

/** The live owner of each bucket of lo..hi by the records (highest epoch wins), for pre-checks. */
function liveMaxEpoch(records: Map<string, OwnershipRecord>, map: ShardMap): number {
  const fileEpoch = (map as { epoch?: number }).epoch ?? 0;
  return Math.max(fileEpoch, ...[...records.values()].map(maxEpoch));
}

// ---- plan ---------------------------------------------------------------------------------------

async function plan(shards: MoverShards, opts: MoveOptions, records: Map<string, OwnershipRecord>): Promise<{ plan: MovePlan; reasons: string[] }> {
  const [lo, hi] = checkRange(opts.range);
  const mode = opts.mode ?? 'freeze';
  const reasons: string[] = [];
  const to = opts.map.shards.find((s) => s.id === opts.to);
  if (!to) throw new ValidationError('to', `unknown shard ${JSON.stringify(opts.to)} (known: ${opts.map.shards.map((s) => s.id).join(', ')})`);
  const owners = [...records].filter(([, r]) => overlaps(r.owned, lo, hi)).map(([id]) => id);
  const fromId = owners.find((id) => covers((records.get(id) as OwnershipRecord).owned, lo, hi));
  const empty: MovePlan = { range: [lo, hi], from: fromId ?? '?', to: to.id, mode, batches: 0, rows: {}, tables: [], epoch: 0 };
  if (!fromId || owners.length !== 1) {
    const frozen = [...records].filter(([, r]) => overlaps(r.frozen, lo, hi)).map(([id]) => id);
    reasons.push(
      `buckets ${lo}-${hi} are not all owned by one shard (owning some: ${owners.join(', ') || 'none'}${frozen.length ? `; frozen on ${frozen.join(', ')}` : ''}); move a range one shard owns`,
    );
    return { plan: empty, reasons };
  }
  const from = shards.shard(fromId);
  empty.from = from.id;
  if (from.id === to.id) reasons.push(`shard ${to.id} already owns ${lo}-${hi}`);
  if (from.region !== to.region) reasons.push(`shard ${from.id} is in region ${from.region}, ${to.id} in ${to.region}: moves stay inside a region`);
  // Bucket by bucket: a range moved in batches is owned in several entries, each at its own epoch.
  const fromOwned = within((records.get(from.id) as OwnershipRecord).owned, lo, hi);
  for (const [id, r] of records) {
    const newer = within(r.movedTo, lo, hi).filter((e) => within(fromOwned, e[0], e[1]).some((o) => e[3] > o[2]));
    if (id !== from.id && newer.length)
      reasons.push(`shard ${id} records ${newer.map((e) => fmt([e[0], e[1]])).join(',')} as moved at a newer epoch than ${from.id} owns them`);
  }
  const target = records.get(to.id) as OwnershipRecord;
  if (overlaps(target.incoming, lo, hi) || overlaps(target.frozen, lo, hi))
    reasons.push(`shard ${to.id} has buckets of ${lo}-${hi} incoming or frozen by another move`);

  const [fromVersion, toVersion] = await Promise.all([shards.with(from.id, (c) => appliedMigrations(c)), shards.with(to.id, (c) => appliedMigrations(c))]);
  if (fromVersion.at(-1) !== toVersion.at(-1))
    reasons.push(
      `shard ${to.id} is at schema ${toVersion.at(-1) ?? '(none)'}, ${from.id} at ${fromVersion.at(-1) ?? '(none)'}: migrate both to one version first`,
    );

  const [srcTables, dstTables] = await Promise.all([shards.with(from.id, (c) => movedTables(c)), shards.with(to.id, (c) => movedTables(c))]);
  for (const t of srcTables) {
    const d = dstTables.find((x) => x.name === t.name);
    if (!d) reasons.push(`table ${t.name} is missing on ${to.id}: run the app's migrations there first`);
    else if (d.columns.join(',') !== t.columns.join(',')) reasons.push(`table ${t.name} has other columns on ${to.id} than on ${from.id}`);
  }
  const rows: Record<string, number> = {};
  const targetRows: string[] = [];
  await Promise.all(
    srcTables.map(async (t) => {
      rows[t.name] = await countRange(shards, from.id, t, lo, hi);
      if (dstTables.some((x) => x.name === t.name)) {
        const n = await countRange(shards, to.id, t, lo, hi);
        if (n > 0) targetRows.push(`${t.name}: ${n}`);
      }
    }),
  );
  if (targetRows.length)
    reasons.push(
      `shard ${to.id} already holds rows in ${lo}-${hi} (${targetRows.join(', ')}): purge an earlier move's copy there first ("shardline buckets purge")`,
    );

  for (const id of new Set([from.id, to.id])) {
    const active = (await shards.with(id, (c) => readMoves(c))).filter((m) => phaseOf(m.state) === 'active');
    for (const m of active) reasons.push(`move ${m.id} (${fmt(m.range)} ${m.from} → ${m.to}, ${m.state}) is still active on ${id}: resume or abort it first`);
  }
  if (mode === 'logical') reasons.push(...(await logicalPrechecks(shards, from.id, to.id, srcTables)));
  const batchBuckets = mode === 'logical' ? hi - lo + 1 : (opts.batchBuckets ?? DEFAULTS.batchBuckets);
  return {
    plan: {
      range: [lo, hi],
      from: from.id,
      to: to.id,
      mode,
      batches: Math.ceil((hi - lo + 1) / batchBuckets),
      rows,
      tables: srcTables.map((t) => t.name),
      epoch: liveMaxEpoch(records, opts.map) + 1,
    },
    reasons,
  };
}

async function countRange(shards: MoverShards, id: string, t: MovedTable, lo: number, hi: number): Promise<number> {
  // sql-text: table and column names escaped by movedTables(), bucket bounds checked integers (inRange); COPY and DDL take no parameters
  return shards.with(id, async (c) => Number((await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${t.sql} WHERE ${rowsIn(t, lo, hi)}`)).rows[0]?.n));
}

// ---- the run ------------------------------------------------------------------------------------

/** One move being driven: its row, its shards' connections, and what this run measured. */
class MoveRun {
  readonly freezes: number[] = [];
  copyMs = 0;
  private tables?: MovedTable[];
  rowsCopied: number;
  frozenMs: number;
  epoch: number | null;
  state: MoveState;

  constructor(
    readonly shards: MoverShards,
    readonly row: MoveRow,
    readonly opts: MoveRunOptions,
  ) {
    this.rowsCopied = row.rowsCopied;
    this.frozenMs = row.frozenMs;
    this.epoch = row.epoch;
    this.state = row.state;
  }

  get id(): string {
    return this.row.id;
  }
  get from(): string {
    return this.row.from;
  }
  get to(): string {
    return this.row.to;
  }
  get options(): MoveOptionsRecord {
    return this.row.options;
  }

  /**
   * Takes the mover's session locks on the source (and the target): no other mover works the move
   * meanwhile. With both held, a side missing its move row gets one, copied from the other side:
   * a mover killed between the two first writes of a move (the target's first) left it so, and
   * every later step notes its state on both.
   */
  async lock(sides: 'source' | 'both'): Promise<void> {
    await this.shards.lock(this.from);
    if (sides === 'source') return;
    await this.shards.lock(this.to);
    for (const [side, shard] of [
      ['target', this.to],
      ['source', this.from],
    ] as const) {
      if (await this.shards.with(shard, (c) => readMove(c, this.id))) continue;
      await this.shards.with(shard, (c) => insertMove(c, { ...this.row, side, state: this.state }));
      this.progress({ message: `the move's row was missing on ${shard} (its mover stopped while starting it): written` });
    }
  }

  async movedTables(): Promise<MovedTable[]> {
    this.tables ??= await this.shards.with(this.from, (c) => movedTables(c));
    return this.tables;
  }

  progress(p: Omit<MoveProgress, 'moveId' | 'rowsCopied' | 'state'> & { state?: MoveState }): void {
    this.opts.onProgress?.({ moveId: this.id, state: p.state ?? this.state, rowsCopied: this.rowsCopied, ...p });
  }

  checkSignal(): void {
    if (this.opts.signal?.aborted) throw new MoveFailedError(this.id, this.state, 'stopped by its caller; resume to continue');
  }

  /** Notes a state on both shards' rows (target's first: it is the one resume trusts for the range's fate). */
  async note(state: MoveState, patch: MovePatch = {}, skip?: 'source' | 'target'): Promise<void> {
    this.state = state;
    const p = { ...patch, state, rowsCopied: this.rowsCopied, frozenMs: this.frozenMs, ...(this.epoch === null ? {} : { epoch: this.epoch }) };
    if (skip !== 'target') await this.shards.with(this.to, (c) => patchMove(c, this.id, p));
    if (skip !== 'source') await this.shards.with(this.from, (c) => patchMove(c, this.id, p));
    this.progress({ state });
    await this.opts.onState?.(state, this.id);
  }

  report(purged: boolean): MoveReport {
    return {
      id: this.id,
      range: this.row.range,
      from: this.from,
      to: this.to,
      mode: this.row.mode,
      state: this.state,
      epoch: this.epoch,
      rowsCopied: this.rowsCopied,
      freezes: this.freezes,
      frozenMs: this.frozenMs,
      copyMs: Math.round(this.copyMs),
      purged,
    };
  }

  // -- the steps, each safe to repeat ---------------------------------------------------------

  /** Target: the range is incoming (its fence keeps refusing app writes there until the commit). */
  async prepareTarget(): Promise<void> {
    const [lo, hi] = this.row.range;
    await this.shards.tx(this.to, (c) =>
      changeOwnership(c, (r) => {
        const open = subtractCovered(r.owned, lo, hi);
        r.incoming = subtract(r.incoming, lo, hi);
        for (const [a, b] of open) r.incoming = add(r.incoming, [a, b, this.id] as [number, number, string]);
        return r;
      }),
    );
  }

  /** Source: owned -= batch, frozen += batch; the owned entries taken out are recorded, to give back on an undo. */
  async fence(lo: number, hi: number): Promise<void> {
    await this.shards.tx(this.from, async (c) => {
      const before = await readOwnership(c, true);
      const restore = within(before.owned, lo, hi);
      await changeOwnership(c, (r) => {
        r.owned = subtract(r.owned, lo, hi);
        r.frozen = add(r.frozen, [lo, hi, this.id] as [number, number, string]);
        return r;
      });
      // The epochs to give back live in this row only: no row, no fence (lock() writes a missing one).
      if ((await patchMove(c, this.id, { state: 'fenced', batch: [lo, hi], artifacts: { restore } })) === 0)
        throw new MoveFailedError(this.id, this.state, `${this.from} has no row of this move: resume it`);
    });
    this.state = 'fenced';
    await this.shards.with(this.to, (c) => patchMove(c, this.id, { state: 'fenced', batch: [lo, hi] }));
    this.progress({ state: 'fenced', batch: [lo, hi] });
    await this.opts.onState?.('fenced', this.id);
  }

  /** Source: the frozen batch is owned again, at the epochs it had (a failed cut-over, or an abort). */
  async unfence(lo: number, hi: number): Promise<void> {
    const row = await this.shards.with(this.from, (c) => readMove(c, this.id));
    const restore = (row?.artifacts.restore ?? []).filter(([a, b]) => b >= lo && a <= hi);
    await this.shards.tx(this.from, (c) =>
      changeOwnership(c, (r) => {
        const mine = r.frozen.filter((e) => e[2] === this.id && e[1] >= lo && e[0] <= hi);
        for (const [a, b] of mine) {
          r.frozen = subtract(r.frozen, a, b);
          const given = within(restore, a, b);
          for (const e of given) r.owned = add(r.owned, e);
          // Buckets the record lost track of come back at the epoch of their neighbours, else 0.
          for (const [x, y] of subtractCovered(given, a, b)) r.owned = add(r.owned, [x, y, restore[0]?.[2] ?? 0] as [number, number, number]);
        }
        return r;
      }),
    );
  }

  /** Freeze mode: the batch's rows, replacing whatever a killed earlier try left on the target. */
  async copyBatch(lo: number, hi: number): Promise<void> {
    const tables = await this.movedTables();
    let n = 0;
    const t0 = performance.now();
    await this.shards.with(this.from, (src) =>
      this.shards.tx(this.to, async (dst) => {
        await dst.query(`SET LOCAL shardline.fence = 'off'`);
        await deleteRange(dst, tables, lo, hi);
        for (const t of tables) {
          const rows = await copyTable(src, dst, t, lo, hi);
          n += rows;
          this.progress({ state: 'fenced', batch: [lo, hi], table: t.name, rows });
        }
      }),
    );
    this.rowsCopied += n;
    this.copyMs += performance.now() - t0;
  }

  /** Logical mode: the range's claims not yet on the target (a row filter cannot compute their home bucket). */
  async copyClaims(claims: readonly MovedTable[]): Promise<void> {
    const [lo, hi] = this.row.range;
    await this.shards.with(this.from, (src) =>
      this.shards.tx(this.to, async (dst) => {
        await dst.query(`SET LOCAL shardline.fence = 'off'`);
        for (const t of claims) this.rowsCopied += await copyMissingRows(src, dst, t, lo, hi);
      }),
    );
  }

  /** Exact comparison of the batch on both sides (both frozen): throws MoveVerifyError on any difference. */
  async verify(lo: number, hi: number): Promise<void> {
    const tables = await this.movedTables();
    const [s, d] = await Promise.all([
      this.shards.with(this.from, (c) => checksums(c, tables, lo, hi)),
      this.shards.with(this.to, (c) => checksums(c, tables, lo, hi)),
    ]);
    const mismatches = compareSums(tables, s, d);
    if (mismatches.length) throw new MoveVerifyError(this.id, mismatches);
  }

  /**
   * The target's leaderboard rows and counts recomputed from its rows (migration 0012): a
   * subscription's apply worker fires no triggers, so the plain boards' rows of the replicated stats
   * and the counts of the replicated board rows are missing until then. The fence is off for it: the
   * range is still only incoming here.
   */
  async rebuildBoards(): Promise<void> {
    await this.shards.tx(this.to, async (c) => {
      await c.query(`SET LOCAL shardline.fence = 'off'`);
      await c.query(`SELECT shardline_rebuild_leaderboards()`);
    });
  }

  /** Target's player id clock to at least the source's, so ids it mints in the moved buckets are new (migration 0005). */
  async advanceClock(): Promise<void> {
    const src = await this.shards.with(this.from, (c) => c.query<{ v: string }>(`SELECT last_value::text AS v FROM player_id_seq`));
    const v = src.rows[0]?.v ?? '1';
    await this.shards.with(this.to, async (c) => {
      await c.query(`SELECT pg_advisory_lock(hashtext('shardline:player_id'))`);
      try {
        await c.query(
          `SELECT setval('player_id_seq', greatest($1::bigint, (SELECT last_value FROM player_id_seq)), true)
             FROM player_id_seq WHERE last_value < $1::bigint OR NOT is_called`,
          [v],
        );
      } finally {
        await c.query(`SELECT pg_advisory_unlock(hashtext('shardline:player_id'))`);
      }
    });
  }

  /** The commit point: the target owns lo..hi at a new epoch, and its move row says so, in one transaction. */
  async commit(lo: number, hi: number, last: boolean): Promise<void> {
    const records = await this.shards.records();
    const epoch = liveMaxEpoch(records, this.shards.map) + 1;
    await this.shards.tx(this.to, async (c) => {
      await changeOwnership(c, (r) => {
        r.incoming = subtract(r.incoming, lo, hi);
        r.owned = add(r.owned, [lo, hi, epoch] as [number, number, number]);
        return r;
      });
      await patchMove(c, this.id, { state: 'switched', epoch, cursor: hi + 1, switched: last, rowsCopied: this.rowsCopied });
    });
    this.epoch = epoch;
    this.state = 'switched';
    this.progress({ state: 'switched', batch: [lo, hi], message: `committed ${fmt([lo, hi])} on ${this.to} at epoch ${epoch}` });
    await this.opts.onState?.('switched', this.id);
  }

  /** Source: frozen -= batch, movedTo += batch at the target's epoch (taken from the target's record, for a resume). */
  async recordOnSource(lo: number, hi: number): Promise<void> {
    const target = await this.shards.record(this.to);
    const epoch = within(target.owned, lo, hi)[0]?.[2] ?? this.epoch ?? 0;
    this.epoch = Math.max(this.epoch ?? 0, epoch);
    await this.shards.tx(this.from, async (c) => {
      await changeOwnership(c, (r) => {
        r.frozen = subtract(r.frozen, lo, hi);
        r.movedTo = add(r.movedTo, [lo, hi, this.to, epoch] as [number, number, string, number]);
        return r;
      });
      await patchMove(c, this.id, { state: 'copying', cursor: hi + 1, batch: null, epoch, rowsCopied: this.rowsCopied, frozenMs: this.frozenMs });
    });
    this.state = 'copying';
    await this.shards.with(this.to, (c) => patchMove(c, this.id, { state: 'copying', batch: null, frozenMs: this.frozenMs }));
    this.progress({ state: 'copying', batch: [lo, hi] });
    await this.opts.onState?.('copying', this.id);
  }

  /** Undoes a batch that did not commit: the source owns it again, the target's copy is deleted. */
  async undoBatch(lo: number, hi: number): Promise<void> {
    await this.unfence(lo, hi);
    const tables = await this.movedTables();
    await this.shards.tx(this.to, async (c) => {
      await c.query(`SET LOCAL shardline.fence = 'off'`);
      await deleteRange(c, tables, lo, hi);
    });
  }
}

/** The parts of lo..hi covered by `list`, adjacent entries merged (tags dropped): a move's committed batches. */
function coveredParts(list: readonly (readonly [number, number, ...unknown[]])[], lo: number, hi: number): [number, number][] {
  const out: [number, number][] = [];
  for (const [a, b] of within(list, lo, hi)) {
    const last = out.at(-1);
    if (last && last[1] + 1 >= a) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** The parts of lo..hi not covered by `list`. */
function subtractCovered(list: readonly (readonly [number, number, ...unknown[]])[], lo: number, hi: number): [number, number][] {
  let rest: [number, number, string][] = [[lo, hi, '']];
  for (const [a, b] of list) rest = subtract(rest, a, b);
  return rest.map(([a, b]) => [a, b]);
}

/** In-flight batch of this move on the source: the frozen entries it tagged. */
function frozenOf(r: OwnershipRecord, id: string): [number, number] | null {
  const mine = r.frozen.filter((e) => e[2] === id);
  if (mine.length === 0) return null;
  return [Math.min(...mine.map((e) => e[0])), Math.max(...mine.map((e) => e[1]))];
}

async function runFreeze(run: MoveRun): Promise<void> {
  const [lo, hi] = run.row.range;
  const maxFreeze = run.options.maxFreezeMs ?? 0;
  for (;;) {
    run.checkSignal();
    const [src, dst] = await Promise.all([run.shards.record(run.from), run.shards.record(run.to)]);
    const inFlight = frozenOf(src, run.id);
    if (inFlight) {
      const [a, b] = inFlight;
      if (covers(dst.owned, a, b)) {
        await run.recordOnSource(a, b); // killed after the commit point: finish the batch
        continue;
      }
      const t0 = performance.now();
      try {
        await run.copyBatch(a, b);
        // Inside the freeze, the target's row only: one round trip less per step (the source's says fenced).
        await run.note('copied', {}, 'source');
        await run.verify(a, b);
        await run.note('verified', {}, 'source');
        const frozen = since(t0);
        if (maxFreeze > 0 && frozen > maxFreeze)
          throw new MoveBudgetError(run.id, 'freeze', `batch ${fmt([a, b])} was frozen ${frozen} ms, over --max-freeze ${maxFreeze} ms`);
        await run.advanceClock();
        await run.commit(a, b, b === hi);
      } catch (err) {
        // Before the commit point: the source serves the batch again, the target's copy goes.
        const committed = covers((await run.shards.record(run.to)).owned, a, b);
        if (!committed) {
          await run.undoBatch(a, b).catch(() => undefined);
          await run.note('copying', { batch: null, error: (err as Error).message }).catch(() => undefined);
        }
        throw err;
      }
      const frozen = since(t0);
      run.freezes.push(frozen);
      run.frozenMs = Math.max(run.frozenMs, frozen);
      await run.recordOnSource(a, b);
      run.progress({ state: 'copying', batch: [a, b], message: `batch ${fmt([a, b])} moved · frozen ${frozen} ms` });
      continue;
    }
    // The next batch: the first buckets of the range the target does not own yet.
    const open = subtractCovered(dst.owned, lo, hi)[0];
    if (!open) return;
    const a = open[0];
    const b = Math.min(open[1], a + (run.options.batchBuckets || DEFAULTS.batchBuckets) - 1);
    if (!covers(src.owned, a, b)) throw new MoveFailedError(run.id, run.state, `buckets ${fmt([a, b])} are neither owned by ${run.from} nor by ${run.to}`);
    await run.fence(a, b);
  }
}

async function runLogical(run: MoveRun): Promise<void> {
  const [lo, hi] = run.row.range;
  const [src, dst] = await Promise.all([run.shards.record(run.from), run.shards.record(run.to)]);
  if (covers(dst.owned, lo, hi)) {
    if (frozenOf(src, run.id)) await run.recordOnSource(lo, hi);
    return;
  }
  const tables = await run.movedTables();
  const claims = tables.filter((t) => !t.replicated);
  if (!frozenOf(src, run.id)) {
    if (run.state === 'planned') await run.note('copying');
    await ensureReplication(run.shards, run.row, tables);
    await waitSynced(run.shards, run.row, tables, (table, rows) => run.progress({ state: 'copying', table, rows }), run.opts.signal);
    // Back-fill claims before the fence, so the delta under it is small.
    await run.copyClaims(claims);
    const lag = await replicationLag(run.shards, run.row);
    await run.note('synced', { lagBytes: lag });
    const maxLag = run.options.maxLagBytes ?? DEFAULTS.maxLagBytes;
    if (lag !== null && lag > maxLag) throw new MoveBudgetError(run.id, 'lag', `the slot lags ${lag} bytes, over --max-lag ${maxLag}`);
    run.checkSignal();
    await run.fence(lo, hi);
  }
  const t0 = performance.now();
  const maxFreeze = run.options.maxFreezeMs ?? 0;
  try {
    // The WAL position now is at or past the fence's (nothing writes the frozen range since): once the
    // slot confirms it, every write the fence let through is on the target. A resume after the
    // artifacts were dropped has nothing to wait for: the source is frozen, and verify decides.
    if (await replicationPresent(run.shards, run.row)) {
      const fenceLsn = await run.shards.with(
        run.from,
        async (c) => (await c.query<{ l: string }>(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0]?.l ?? '0/0',
      );
      await run.shards.with(run.from, (c) => patchMove(c, run.id, { artifacts: { fenceLsn } }));
      await waitPastLsn(run.shards, run.row, fenceLsn, maxFreeze > 0 ? maxFreeze : 60_000);
    }
    await run.copyClaims(claims);
    await run.note('copied');
    await run.verify(lo, hi);
    await run.note('verified');
    await run.rebuildBoards();
    await run.advanceClock();
    await dropArtifacts(run.shards, run.row);
    await run.note('cleaned');
    const frozen = since(t0);
    if (maxFreeze > 0 && frozen > maxFreeze)
      throw new MoveBudgetError(run.id, 'freeze', `the cut-over was frozen ${frozen} ms, over --max-freeze ${maxFreeze} ms`);
    await run.commit(lo, hi, true);
  } catch (err) {
    const committed = covers((await run.shards.record(run.to)).owned, lo, hi);
    if (!committed) {
      // Un-freeze the source; replication (when still there) keeps running, so a resume starts from the sync.
      await run.unfence(lo, hi).catch(() => undefined);
      await run.note('copying', { batch: null, error: (err as Error).message }).catch(() => undefined);
    }
    throw err;
  }
  const frozen = since(t0);
  run.freezes.push(frozen);
  run.frozenMs = Math.max(run.frozenMs, frozen);
  await run.recordOnSource(lo, hi);
}

/** Drives a move from whatever its rows and the records say, through the commit point, then the purge. */
async function drive(run: MoveRun): Promise<MoveReport> {
  if (run.state === 'planned') await run.prepareTarget();
  if (phaseOf(run.state) === 'active') {
    if (run.state === 'aborting') throw new MoveRefusedError(fmt(run.row.range), [`move ${run.id} is being aborted: finish with --abort ${run.id}`]);
    try {
      if (run.row.mode === 'freeze') await runFreeze(run);
      else await runLogical(run);
    } catch (err) {
      await run.shards.with(run.to, (c) => patchMove(c, run.id, { error: (err as Error).message })).catch(() => undefined);
      if (err instanceof MoveVerifyError || err instanceof MoveBudgetError || err instanceof MoveFailedError || err instanceof MoveRefusedError) throw err;
      throw new MoveFailedError(run.id, run.state, (err as Error).message, { cause: err });
    }
    await run.note('moved', { error: null, finished: false, switched: true });
    await forwardSweep(run);
    await run.opts.afterCommit?.(run.report(false));
  }
  if (run.state === 'moved' || run.state === 'purging') {
    if (run.options.purge === 'never') return run.report(false);
    await graceWait(run.options.graceMs, run.opts.signal);
    run.checkSignal();
    await purgeRun(run);
    return run.report(true);
  }
  return run.report(run.state === 'done');
}

/**
 * The abort's work, under both locks: the source gets back what this move froze (or records a batch
 * the target committed), the target loses its partial copy and its incoming entries. Batches
 * committed before stay moved and are reported as `kept`.
 */
async function undoMove(run: MoveRun): Promise<MoveReport> {
  const { shards, id } = run;
  const [lo, hi] = run.row.range;
  const dst = await shards.record(run.to);
  if (subtractCovered(dst.owned, lo, hi).length === 0)
    throw new MoveRefusedError(fmt(run.row.range), [`move ${id} has committed its whole range: finish it with --resume ${id}`]);
  await run.note('aborting');
  if (run.row.mode === 'logical') await dropArtifacts(shards, run.row);
  const frozen = frozenOf(await shards.record(run.from), id);
  if (frozen) {
    // A batch committed on the target but not yet recorded on the source is finished, not undone.
    if (covers(dst.owned, frozen[0], frozen[1])) await run.recordOnSource(frozen[0], frozen[1]);
    else await run.unfence(frozen[0], frozen[1]);
  }
  const tables = await run.movedTables();
  for (const [a, b] of subtractCovered((await shards.record(run.to)).owned, lo, hi)) {
    await shards.tx(run.to, async (c) => {
      await c.query(`SET LOCAL shardline.fence = 'off'`);
      await deleteRange(c, tables, a, b);
    });
  }
  await shards.tx(run.to, (c) =>
    changeOwnership(c, (r) => {
      r.incoming = r.incoming.filter((e) => e[2] !== id);
      return r;
    }),
  );
  await run.note('aborted', { finished: true, batch: null });
  const kept = coveredParts((await shards.record(run.to)).owned, lo, hi);
  return { ...run.report(false), ...(kept.length ? { kept } : {}) };
}

/** Settlement's forward sweep on the source; a failure is only logged (the source's worker forwards the same parts). */
async function forwardSweep(run: MoveRun): Promise<void> {
  const opt = run.opts.settlement;
  if (opt === false) return;
  const set = new ShardSet(run.shards.map, { poolMax: 2, ...run.opts.connection });
  try {
    const r = await forwardMovedParts(set, run.from, {
      ...(opt?.connection ? { connection: opt.connection } : {}),
      ...(opt?.prefix ? { prefix: opt.prefix } : {}),
    });
    if (r.forwarded.length || r.left.length)
      run.progress({
        state: run.state,
        message: `forwarded ${r.forwarded.length} pending settlement parts to ${run.to}${r.left.length ? `, ${r.left.length} left to the worker` : ''}`,
      });
  } catch (err) {
    run.opts.logger?.warn({ err, moveId: run.id }, "forward sweep after the move failed; the source shard's worker forwards its pending parts");
  } finally {
    await set.close();
  }
}

function graceWait(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The buckets of lo..hi a purge may delete on a source: recorded as moved to `to`, and neither owned, frozen nor incoming there. */
function purgeable(r: OwnershipRecord, to: string, lo: number, hi: number): [number, number][] {
  let parts = within(r.movedTo, lo, hi)
    .filter((e) => e[2] === to)
    .map(([a, b]): [number, number] => [a, b]);
  for (const [a, b] of [...r.owned, ...r.frozen, ...r.incoming]) parts = subtract(parts, a, b);
  return parts;
}

/**
 * Deletes the source's copy of the buckets it recorded as moved by this move, by range, at most
 * `purgeBatchBuckets` buckets a transaction (its locks and WAL stay bounded); each transaction
 * deletes only what the record it reads says is purgeable.
 */
async function purgeRun(run: MoveRun, end: 'done' | 'aborted' = 'done'): Promise<void> {
  const [lo, hi] = run.row.range;
  if (end === 'done') await run.note('purging');
  const batch = Math.max(1, Math.floor(run.opts.purgeBatchBuckets ?? DEFAULTS.purgeBatchBuckets));
  const tables = await run.movedTables();
  for (const [a, b] of purgeable(await run.shards.record(run.from), run.to, lo, hi)) {
    for (let x = a; x <= b; x += batch) {
      const y = Math.min(b, x + batch - 1);
      await run.shards.tx(run.from, async (c) => {
        await c.query(`SET LOCAL shardline.fence = 'off'`);
        // Never a bucket the source serves or is moving, by the record as it is now.
        for (const [p, q] of purgeable(await readOwnership(c), run.to, x, y)) await deleteRange(c, tables, p, q);
      });
      run.progress({ state: 'purging', batch: [x, y] });
    }
  }
  await run.note(end, { finished: true });
}

// ---- public API ---------------------------------------------------------------------------------

/** Loads a move's rows from both of its shards (or any shard of the map holding one). */
async function loadMove(shards: MoverShards, id: string): Promise<MoveRow> {
  if (!/^[a-z0-9]{1,40}$/.test(id)) throw new MoveNotFoundError(id);
  const rows = (
    await Promise.all(
      shards.map.shards.map((s) =>
        shards
          .with(s.id, (c) => readMove(c, id))
          .catch((err: unknown) => {
            if ((err as { code?: string }).code === '42P01') return null;
            throw err;
          }),
      ),
    )
  ).filter((r): r is MoveRow => r !== null);
  const target = rows.find((r) => r.side === 'target');
  const source = rows.find((r) => r.side === 'source');
  const row = target ?? source;
  if (!row) throw new MoveNotFoundError(id);
  // The furthest word on the state: 'aborting'/'aborted' on either side wins, else the target's.
  const states = rows.map((r) => r.state);
  const state: MoveState = states.includes('aborted')
    ? 'aborted'
    : states.includes('aborting')
      ? 'aborting'
      : states.includes('done')
        ? 'done'
        : (target?.state ?? row.state);
  return { ...row, state, artifacts: { ...source?.artifacts, ...target?.artifacts }, cursor: Math.max(...rows.map((r) => r.cursor)) };
}

/**
 * Moves buckets `range` to shard `to`: plan and pre-check, record, copy, fence, verify, commit on the
 * target (the commit point), record on the source, then (unless `purge: 'never'`) wait `graceMs`
 * and purge the source's copy. Freeze mode does fence → copy → verify → commit per batch of
 * `batchBuckets`; logical mode replicates the whole range and freezes it once for the cut-over.
 * A failure leaves the move resumable from its recorded state (`resumeMove`) or abortable.
 */
export async function moveBuckets(options: MoveOptions): Promise<MoveReport> {
  const shards = new MoverShards(options.map, options.connection);
  try {
    // Re-running a move resumes it: the same range to the same shard, still before its end.
    const [lo, hi] = checkRange(options.range);
    if (!options.dryRun && options.map.shards.some((x) => x.id === options.to)) {
      const again = (await shards.with(options.to, (c) => readMoves(c))).find(
        (m) => m.range[0] === lo && m.range[1] === hi && m.to === options.to && phaseOf(m.state) !== 'finished' && m.state !== 'aborting',
      );
      if (again) {
        await shards.close();
        return await resumeMove(options.map, again.id, options);
      }
    }
    const records = await shards.records();
    const first = await plan(shards, options, records);
    if (options.dryRun) {
      if (first.reasons.length) throw new MoveRefusedError(fmt(first.plan.range), first.reasons);
      return { ...emptyReport(first.plan), plan: first.plan };
    }
    if (first.reasons.length) throw new MoveRefusedError(fmt(first.plan.range), first.reasons);
    await shards.lock(first.plan.from);
    await shards.lock(first.plan.to);
    // Again under the locks: another mover may have started between the first look and the lock.
    const { plan: p, reasons } = await plan(shards, options, await shards.records());
    if (reasons.length) throw new MoveRefusedError(fmt(p.range), reasons);
    const id = newMoveId();
    const name = artifactName(id);
    const optionsRecord: MoveOptionsRecord = {
      batchBuckets: options.batchBuckets ?? DEFAULTS.batchBuckets,
      purge: options.purge ?? 'after-grace',
      graceMs: options.graceMs ?? DEFAULTS.graceMs,
      maxLagBytes: options.maxLagBytes ?? DEFAULTS.maxLagBytes,
      maxFreezeMs: options.maxFreezeMs ?? DEFAULTS.maxFreezeMs,
    };
    const row: Omit<MoveRow, 'createdAt' | 'updatedAt'> = {
      id,
      side: 'target',
      range: p.range,
      from: p.from,
      to: p.to,
      mode: p.mode,
      state: 'planned',
      cursor: p.range[0],
      batch: null,
      epoch: null,
      artifacts: p.mode === 'logical' ? { publication: name, slot: name, subscription: name } : {},
      options: optionsRecord,
      rowsCopied: 0,
      lagBytes: null,
      frozenMs: 0,
      error: null,
    };
    // The target's row first: a re-run of the move finds it there, and a kill before the source's
    // is repaired under the locks of whatever runs next (MoveRun.lock).
    await shards.with(p.to, (c) => insertMove(c, row));
    await options.onState?.('planned-on-target', id);
    await shards.with(p.from, (c) => insertMove(c, { ...row, side: 'source' }));
    const run = new MoveRun(shards, { ...row, createdAt: '', updatedAt: '' }, options);
    run.progress({
      state: 'planned',
      message: `move ${id}: ${fmt(p.range)} ${p.from} → ${p.to} (${p.mode}, ${p.batches} batch${p.batches === 1 ? '' : 'es'})`,
    });
    await options.onState?.('planned', id);
    const report = await drive(run);
    return { ...report, plan: p };
  } finally {
    await shards.close();
  }
}

function emptyReport(p: MovePlan): MoveReport {
  return {
    id: '',
    range: p.range,
    from: p.from,
    to: p.to,
    mode: p.mode,
    state: 'planned',
    epoch: null,
    rowsCopied: 0,
    freezes: [],
    frozenMs: 0,
    copyMs: 0,
    purged: false,
  };
}

/**
 * Opens the mover's connections, loads move `id` from its shards and runs `fn` on it, then closes
 * them. `fn` checks the row first and takes the session locks it needs after (`MoveRun.lock`), so
 * a refusal or a no-op waits for no other mover.
 */
async function withMove<T>(map: ShardMap, id: string, options: MoveRunOptions, fn: (run: MoveRun) => Promise<T>): Promise<T> {
  const shards = new MoverShards(map, options.connection);
  try {
    return await fn(new MoveRun(shards, await loadMove(shards, id), options));
  } finally {
    await shards.close();
  }
}

/** Continues a move from its recorded state (every step is idempotent); purges too unless it was started with `purge: 'never'`. */
export async function resumeMove(map: ShardMap, id: string, options: MoveRunOptions = {}): Promise<MoveReport> {
  return withMove(map, id, options, async (run) => {
    await run.lock('both');
    return drive(run);
  });
}

/**
 * Aborts a move before its commit point: drops its replication artifacts, gives the source back
 * every bucket it froze, deletes the target's partial copy and its incoming entries. Idempotent.
 * Batches a freeze-mode move already committed stay moved (they are past their commit point).
 */
export async function abortMove(map: ShardMap, id: string, options: MoveRunOptions = {}): Promise<MoveReport> {
  return withMove(map, id, options, async (run) => {
    switch (abortKind(run.state)) {
      case 'nothing':
        return run.report(false);
      case 'refused':
        throw new MoveRefusedError(fmt(run.row.range), [`move ${id} is past its commit point (${run.state}): move the range back instead`]);
      case 'undo':
        break;
    }
    await run.lock('both');
    return undoMove(run);
  });
}

/** Purges the source's copy of a move past its commit point now (`buckets purge <id>`), without the grace wait. */
export async function purgeMove(map: ShardMap, id: string, options: MoveRunOptions = {}): Promise<MoveReport> {
  return withMove(map, id, options, async (run) => {
    switch (phaseOf(run.state)) {
      case 'active':
        throw new MoveRefusedError(fmt(run.row.range), [`move ${id} has not reached its commit point (${run.state}): resume it first`]);
      case 'finished':
        // An aborted freeze-mode move may have committed batches before the abort: their source copy goes too.
        if (run.state === 'done') return run.report(true);
        break;
      case 'committed':
        break;
    }
    await run.lock('source');
    await purgeRun(run, run.state === 'aborted' ? 'aborted' : 'done');
    return run.report(true);
  });
}

/** Every move recorded on any shard of the map, one entry per move (the target's row where both exist), newest first. */
export async function listMoves(map: ShardMap, options: { connection?: ConnectionOptions } = {}): Promise<MoveSummary[]> {
  const shards = new MoverShards(map, options.connection);
  try {
    const all = (await Promise.all(map.shards.map((s) => shards.with(s.id, (c) => readMoves(c))))).flat();
    const ids = [...new Set(all.map((r) => r.id))];
    const out: MoveSummary[] = [];
    for (const id of ids) {
      const rows = all.filter((r) => r.id === id);
      const m = await loadMove(shards, id).catch(() => rows[0] as MoveRow);
      out.push({
        id,
        range: m.range,
        from: m.from,
        to: m.to,
        mode: m.mode,
        state: m.state,
        rowsCopied: m.rowsCopied,
        lagBytes: m.lagBytes,
        frozenMs: m.frozenMs,
        artifacts: m.artifacts,
        epoch: m.epoch,
        cursor: m.cursor,
        error: m.error,
        createdAt: m.createdAt,
        updatedAt: m.updatedAt,
      });
    }
    return out.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
  } finally {
    await shards.close();
  }
}

export interface VerifyReport {
  range: [number, number];
  /** Per owner shard of the range: the shards compared with it, and what differed. */
  checks: { owner: string; range: [number, number]; against: string | null; mismatches: import('../errors/index.js').MoveMismatch[] }[];
  ok: boolean;
}

/**
 * Checks a range now: for each part of it, its owner against every other shard still holding rows
 * there (a copy not purged yet): counts and checksums per bucket and table must be equal; where
 * no other shard holds rows, that only the owner does. Writes continue meanwhile, so a difference
 * on a hot bucket may be a write between the two reads: re-run to confirm.
 */
export async function verifyBuckets(map: ShardMap, range: readonly [number, number], options: { connection?: ConnectionOptions } = {}): Promise<VerifyReport> {
  const [lo, hi] = checkRange(range);
  const shards = new MoverShards(map, options.connection);
  try {
    const records = await shards.records();
    const checks: VerifyReport['checks'] = [];
    for (const [owner, rec] of records) {
      // Adjacent entries of other epochs are one stretch here: one comparison each.
      let stretches: [number, number, number][] = [];
      for (const [a, b] of within(rec.owned, lo, hi)) stretches = add(stretches, [a, b, 0] as [number, number, number]);
      for (const [a, b] of stretches) {
        const tables = await shards.with(owner, (c) => movedTables(c));
        const mine = await shards.with(owner, (c) => checksums(c, tables, a, b));
        let compared = false;
        for (const other of map.shards) {
          if (other.id === owner) continue;
          const theirs = await shards.with(other.id, (c) => checksums(c, tables, a, b));
          const holds = [...theirs.values()].some((m) => m.size > 0);
          if (!holds) continue;
          compared = true;
          checks.push({ owner, range: [a, b], against: other.id, mismatches: compareSums(tables, mine, theirs) });
        }
        if (!compared) checks.push({ owner, range: [a, b], against: null, mismatches: [] });
      }
    }
    return { range: [lo, hi], checks, ok: checks.every((c) => c.mismatches.length === 0) };
  } finally {
    await shards.close();
  }
}
