import pg from 'pg';
import { connectionUrlOf } from '../shardmap/connection-url.js';
import type { MoverShards } from './session.js';
import { patchMove, type MoveRow } from './store.js';
import { deleteRange } from './copy.js';
import { rowsIn, type MovedTable } from './tables.js';

/**
 * Logical mode's replication artifacts: a publication with the bucket row filter and a slot on the
 * source, a subscription on the target using that slot. Each `ensure` looks before it creates, and
 * the names were recorded on both shards before (the move row's artifacts), so a kill anywhere
 * leaves names to find and drop, never unnamed orphans.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Why logical mode cannot run between these shards (empty when it can). */
export async function logicalPrechecks(shards: MoverShards, from: string, to: string, tables: readonly MovedTable[]): Promise<string[]> {
  const reasons: string[] = [];
  await shards.with(from, async (c) => {
    const wal = (await c.query<{ w: string }>(`SELECT current_setting('wal_level') AS w`)).rows[0]?.w;
    if (wal !== 'logical') reasons.push(`shard ${from} has wal_level=${wal ?? '?'}: logical mode needs wal_level=logical (or use --mode freeze)`);
    const free = (await c.query<{ n: number }>(`SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)::int AS n`))
      .rows[0]?.n;
    if ((free ?? 0) < 2)
      reasons.push(`shard ${from} has ${free ?? 0} free replication slots: logical mode needs 2 (one for the move, one for the initial sync)`);
    const role = (await c.query<{ ok: boolean }>(`SELECT rolsuper OR rolreplication AS ok FROM pg_roles WHERE rolname = current_user`)).rows[0]?.ok;
    if (!role) reasons.push(`the role of ${from}'s connection may not create replication slots (needs REPLICATION)`);
    for (const t of tables.filter((x) => x.replicated)) {
      const col = t.key === 'bucket' ? 'bucket' : 'player_id';
      const r = await c.query<{ ident: string; cols: string[] | null }>(
        `SELECT c.relreplident::text AS ident,
                (SELECT array_agg(a.attname::text) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                  WHERE i.indrelid = c.oid AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))) AS cols
           FROM pg_class c WHERE c.oid = $1::regclass`,
        [t.sql],
      );
      const row = r.rows[0];
      const ok = row?.ident === 'f' || (row?.cols ?? []).includes(col);
      if (!ok)
        reasons.push(
          `table ${t.name}: its replica identity does not include ${col}, so a row filter on it would make every UPDATE fail; give it a primary key with ${col}`,
        );
    }
  });
  await shards.with(to, async (c) => {
    const sup = (await c.query<{ ok: boolean }>(`SELECT rolsuper AS ok FROM pg_roles WHERE rolname = current_user`)).rows[0]?.ok;
    let may = sup === true;
    if (!may) {
      may =
        (await c.query<{ ok: boolean }>(`SELECT pg_has_role(current_user, 'pg_create_subscription', 'MEMBER') AS ok`).catch(() => ({ rows: [{ ok: false }] })))
          .rows[0]?.ok === true;
    }
    if (!may) reasons.push(`the role of ${to}'s connection may not create subscriptions (PostgreSQL 15: a superuser; 16+: pg_create_subscription)`);
  });
  return reasons;
}

function names(row: MoveRow): { pub: string; slot: string; sub: string } {
  const a = row.artifacts;
  if (!a.publication || !a.slot || !a.subscription) throw new Error(`move ${row.id} has no recorded replication artifacts`);
  return { pub: a.publication, slot: a.slot, sub: a.subscription };
}

/** Publication and slot on the source, subscription on the target: each created only when missing. */
export async function ensureReplication(shards: MoverShards, row: MoveRow, tables: readonly MovedTable[]): Promise<void> {
  const { pub, slot, sub } = names(row);
  const [lo, hi] = row.range;
  await shards.with(row.from, async (c) => {
    if ((await c.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [pub])).rowCount === 0) {
      const list = tables
        .filter((t) => t.replicated)
        .map((t) => `TABLE ${t.sql} WHERE (${rowsIn(t, lo, hi)})`)
        .join(', ');
      // sql-text: table and column names escaped by movedTables(), bucket bounds checked integers (inRange); COPY and DDL take no parameters
      await c.query(`CREATE PUBLICATION ${pg.escapeIdentifier(pub)} FOR ${list}`);
    }
    if ((await c.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rowCount === 0) {
      await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    }
  });
  const source = shards.shard(row.from);
  await shards.with(row.to, async (c) => {
    if ((await c.query(`SELECT 1 FROM pg_subscription WHERE subname = $1`, [sub])).rowCount === 0) {
      // No subscription: whatever the target holds in the range is left from an earlier one (its
      // artifacts dropped after a failed cut-over), and the initial copy would collide with it.
      await c.query('BEGIN');
      try {
        await c.query(`SET LOCAL shardline.fence = 'off'`);
        await deleteRange(c, tables, lo, hi);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
      // The target's server connects to the source with the map's connection (its password, if any, stays in pg_subscription).
      await c.query(
        `CREATE SUBSCRIPTION ${pg.escapeIdentifier(sub)} CONNECTION ${pg.escapeLiteral(connectionUrlOf(source))} PUBLICATION ${pg.escapeIdentifier(pub)}
           WITH (slot_name = ${pg.escapeLiteral(slot)}, create_slot = false, copy_data = true)`,
      );
    }
    const oid = (await c.query<{ oid: string }>(`SELECT oid::text AS oid FROM pg_subscription WHERE subname = $1`, [sub])).rows[0]?.oid;
    if (oid) await patchMove(c, row.id, { artifacts: { subscriptionOid: oid } });
  });
}

/** Waits until every table of the subscription is ready (`r`), reporting each table's rows on the target meanwhile. */
export async function waitSynced(
  shards: MoverShards,
  row: MoveRow,
  tables: readonly MovedTable[],
  onTable: (table: string, rows: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const { sub } = names(row);
  const want = tables.filter((t) => t.replicated).length;
  for (let i = 0; ; i++) {
    if (signal?.aborted) throw new Error('stopped by its caller while the subscription synced; resume to continue');
    const r = await shards.with(row.to, (c) =>
      c.query<{ rel: string; state: string }>(
        `SELECT r.srrelid::regclass::text AS rel, r.srsubstate::text AS state FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
          WHERE s.subname = $1`,
        [sub],
      ),
    );
    if (r.rows.length >= want && r.rows.every((x) => x.state === 'r')) return;
    if (i % 10 === 0) {
      for (const t of tables.filter((x) => x.replicated)) {
        const [lo, hi] = row.range;
        const n = await shards.with(row.to, async (c) =>
          // sql-text: table and column names escaped by movedTables(), bucket bounds checked integers (inRange); COPY and DDL take no parameters
          Number((await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${t.sql} WHERE ${rowsIn(t, lo, hi)}`)).rows[0]?.n),
        );
        onTable(t.name, n);
      }
    }
    await sleep(100);
  }
}

/** True when the move's subscription (target) and slot (source) both still exist. */
export async function replicationPresent(shards: MoverShards, row: MoveRow): Promise<boolean> {
  const { slot, sub } = names(row);
  const [a, b] = await Promise.all([
    shards.with(row.to, (c) => c.query(`SELECT 1 FROM pg_subscription WHERE subname = $1`, [sub])),
    shards.with(row.from, (c) => c.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [slot])),
  ]);
  return (a.rowCount ?? 0) > 0 && (b.rowCount ?? 0) > 0;
}

/** Bytes of WAL the slot has not confirmed yet (null when the slot is gone). */
export async function replicationLag(shards: MoverShards, row: MoveRow): Promise<number | null> {
  const { slot } = names(row);
  const r = await shards.with(row.from, (c) =>
    c.query<{ lag: string | null }>(
      `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag FROM pg_replication_slots WHERE slot_name = $1`,
      [slot],
    ),
  );
  const lag = r.rows[0]?.lag;
  return lag === undefined || lag === null ? null : Number(lag);
}

/** Waits until the slot has confirmed everything up to `lsn` (the fence's): every write the fence let through is on the target. */
export async function waitPastLsn(shards: MoverShards, row: MoveRow, lsn: string, timeoutMs: number): Promise<void> {
  const { slot } = names(row);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const r = await shards.with(row.from, (c) =>
      c.query<{ ok: boolean | null }>(`SELECT confirmed_flush_lsn >= $2::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $1`, [slot, lsn]),
    );
    if (r.rows[0]?.ok === true) return;
    if (r.rows.length === 0) throw new Error(`replication slot ${slot} is gone: abort the move and start it again`);
    if (performance.now() > deadline) throw new Error(`the subscription did not confirm the fence position ${lsn} within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/**
 * Drops the subscription (disable, detach its slot, drop: works even when the source is down),
 * then on the source the slot (once its sender has let go), any initial-sync slots the
 * subscription left, and the publication. Idempotent.
 */
export async function dropArtifacts(shards: MoverShards, row: MoveRow): Promise<void> {
  const { pub, slot, sub } = names(row);
  let oid = row.artifacts.subscriptionOid;
  await shards.with(row.to, async (c) => {
    const found = (await c.query<{ oid: string }>(`SELECT oid::text AS oid FROM pg_subscription WHERE subname = $1`, [sub])).rows[0];
    if (!found) return;
    oid = found.oid;
    await c.query(`ALTER SUBSCRIPTION ${pg.escapeIdentifier(sub)} DISABLE`);
    await c.query(`ALTER SUBSCRIPTION ${pg.escapeIdentifier(sub)} SET (slot_name = NONE)`);
    await c.query(`DROP SUBSCRIPTION ${pg.escapeIdentifier(sub)}`);
  });
  await shards.with(row.from, async (c) => {
    const slots = [slot, ...(oid ? [`pg_${oid}_sync_%`] : [])];
    for (let i = 0; ; i++) {
      const r = await c.query<{ slot_name: string; active: boolean }>(
        `SELECT slot_name, active FROM pg_replication_slots WHERE slot_name = $1 OR slot_name LIKE $2`,
        [slots[0], slots[1] ?? '-'],
      );
      if (r.rows.length === 0) break;
      for (const s of r.rows) {
        if (s.active) continue;
        await c.query(`SELECT pg_drop_replication_slot($1)`, [s.slot_name]).catch((err: unknown) => {
          if (!['42704', '55006'].includes((err as { code?: string }).code ?? '')) throw err;
        });
      }
      if (i > 300) throw new Error(`replication slot ${slot} stayed in use for 30 s after its subscription was dropped`);
      await sleep(100);
    }
    await c.query(`DROP PUBLICATION IF EXISTS ${pg.escapeIdentifier(pub)}`);
  });
}
