import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MoveRefusedError, MoveVerifyError } from '../../src/errors/index.js';
import { abortMove, liveMapJson, listMoves, moveBuckets, moveHealth, purgeMove, resumeMove, type MovePausePoint } from '../../src/reshard/index.js';
import { errorOf } from '../support/errors.js';
import { createMoveShards, seedBuckets, type MoveShards } from './move-support.js';

interface Rec {
  owned: [number, number, number][];
  incoming: [number, number, string][];
  frozen: [number, number, string][];
  movedTo: [number, number, string, number][];
}

const PLAYERS = `SELECT count(*)::int AS n FROM players WHERE ((player_id >> 10) & 4095) BETWEEN $1 AND $2`;

/** A mover stopped where `onState` first reports `at` (the n-th time), as a crash would leave it; returns the move id. */
async function stopAt(s: MoveShards, range: [number, number], at: MovePausePoint, nth = 1, batchBuckets = 4): Promise<string> {
  let id = '';
  let seen = 0;
  const err = await errorOf(
    moveBuckets({
      map: s.map,
      range,
      to: 'sz-2',
      batchBuckets,
      purge: 'never',
      onState: (st, moveId) => {
        id = moveId;
        if (st === at && ++seen === nth) throw new Error(`stopped at ${at}`);
      },
    }),
  );
  expect(String((err as Error).message)).toMatch(`stopped at ${at}`);
  return id;
}

/**
 * What resume and abort make of a move a mover left half done: committed batches an abort keeps
 * (and names), and a move whose row was written on one of its shards only.
 */
describe('moves left half done', { timeout: 120_000 }, () => {
  let s: MoveShards;
  const record = async (i: 0 | 1) => (await s.query<{ value: Rec }>(i, `SELECT value FROM shardline_meta WHERE key = 'ownership'`))[0]!.value;
  const rowsOf = async (id: string) =>
    Promise.all([0, 1].map(async (i) => (await s.query<{ side: string; state: string }>(i, `SELECT side, state FROM shardline_moves WHERE id = $1`, [id]))[0]));

  beforeAll(async () => {
    s = await createMoveShards();
    await seedBuckets(s, 200, 263, 2);
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  it('an abort keeps the batches committed before it, one stretch across their epochs, finishing one committed but not recorded on the source', async () => {
    // Killed after the second batch's commit point, before the source recorded it.
    const id = await stopAt(s, [200, 211], 'switched', 2);
    expect((await record(0)).frozen).toEqual([[204, 207, id]]);
    const report = await abortMove(s.map, id);
    expect(report.state).toBe('aborted');
    expect(report.kept).toEqual([[200, 207]]);
    const [src, dst] = [await record(0), await record(1)];
    expect(src.frozen).toEqual([]);
    expect(dst.incoming).toEqual([]);
    expect(src.movedTo.map((e) => e.slice(0, 3))).toEqual([
      [200, 203, 'sz-2'],
      [204, 207, 'sz-2'],
    ]);
    expect(dst.owned.map((e) => e.slice(0, 2))).toEqual([
      [200, 203],
      [204, 207],
    ]);
    expect(src.owned.some(([a, b]) => a <= 208 && b >= 211)).toBe(true);
    expect(await s.query(1, PLAYERS, [208, 211])).toEqual([{ n: 0 }]);
    expect(await s.query(1, PLAYERS, [200, 207])).toEqual([{ n: 16 }]);
    // The kept batches' source copy goes with purge; the rest stays.
    await purgeMove(s.map, id);
    expect(await s.query(0, PLAYERS, [200, 207])).toEqual([{ n: 0 }]);
    expect(await s.query(0, PLAYERS, [208, 211])).toEqual([{ n: 8 }]);
  });

  it('an abort with nothing committed keeps nothing', async () => {
    const id = await stopAt(s, [212, 215], 'verified');
    const report = await abortMove(s.map, id);
    expect(report).toMatchObject({ state: 'aborted' });
    expect(report.kept).toBeUndefined();
  });

  it('a move whose row is on its target only: shards check names it, resume writes the source row and finishes', async () => {
    const id = await stopAt(s, [216, 219], 'planned-on-target');
    expect(await rowsOf(id)).toEqual([undefined, { side: 'target', state: 'planned' }]);
    const health = await moveHealth(s.map);
    expect(health.find((h) => h.shardId === 'sz-2')?.halfRecorded).toEqual([{ moveId: id, missingOn: 'sz-1' }]);
    expect((await listMoves(s.map)).find((m) => m.id === id)).toMatchObject({ state: 'planned', range: [216, 219] });
    // A new move on either shard is refused until this one is resumed or aborted.
    const refused = await errorOf(moveBuckets({ map: s.map, range: [260, 263], to: 'sz-2', dryRun: true }));
    expect((refused as MoveRefusedError).reasons.join('\n')).toMatch(new RegExp(`move ${id} .* is still active on sz-2`));
    const report = await resumeMove(s.map, id);
    expect(report.state).toBe('moved');
    expect(await rowsOf(id)).toEqual([
      { side: 'source', state: 'moved' },
      { side: 'target', state: 'moved' },
    ]);
    expect((await moveHealth(s.map)).flatMap((h) => h.halfRecorded)).toEqual([]);
    expect(await s.query(1, PLAYERS, [216, 219])).toEqual([{ n: 8 }]);
  });

  it('a move whose row is on its target only: abort writes the source row and aborts on both', async () => {
    const id = await stopAt(s, [220, 223], 'planned-on-target');
    expect((await abortMove(s.map, id)).state).toBe('aborted');
    expect(await rowsOf(id)).toEqual([
      { side: 'source', state: 'aborted' },
      { side: 'target', state: 'aborted' },
    ]);
    expect((await record(0)).owned.some(([a, b]) => a <= 220 && b >= 223)).toBe(true);
    expect((await record(1)).incoming).toEqual([]);
    expect((await moveHealth(s.map)).flatMap((h) => h.halfRecorded)).toEqual([]);
  });

  it('a move whose row is on its source only (the target row lost): resume writes the target row and finishes', async () => {
    const id = await stopAt(s, [224, 227], 'planned');
    await s.query(1, `DELETE FROM shardline_moves WHERE id = $1`, [id]);
    expect((await moveHealth(s.map)).find((h) => h.shardId === 'sz-1')?.halfRecorded).toEqual([{ moveId: id, missingOn: 'sz-2' }]);
    expect((await resumeMove(s.map, id)).state).toBe('moved');
    expect(await rowsOf(id)).toEqual([
      { side: 'source', state: 'moved' },
      { side: 'target', state: 'moved' },
    ]);
  });

  it('a failed batch of a resumed half-recorded move gives the source back its buckets at their epoch, so routing still finds them', async () => {
    // 240-243 moved away and back: the source owns them at a non-zero epoch.
    await moveBuckets({ map: s.map, range: [240, 243], to: 'sz-2', graceMs: 0 });
    await moveBuckets({ map: s.map, range: [240, 243], to: 'sz-1', graceMs: 0 });
    const epoch = (await record(0)).owned.find(([a]) => a === 240)?.[2];
    expect(epoch).toBeGreaterThan(0);
    const id = await stopAt(s, [240, 243], 'planned-on-target');
    // The source's row holds the epochs a fence takes out: the resume writes it before fencing.
    const err = await errorOf(
      resumeMove(s.map, id, {
        onState: async (st) => {
          if (st === 'copied') await s.query(1, `SET shardline.fence = 'off'; UPDATE players SET nickname = 'x' WHERE ((player_id >> 10) & 4095) = 241`);
        },
      }),
    );
    expect(err).toBeInstanceOf(MoveVerifyError);
    expect((await record(0)).owned.filter(([a, b]) => a <= 243 && b >= 240)).toEqual([[240, 243, epoch]]);
    // Live routing: the owned entry at its epoch beats the source's own movedTo of the first move.
    const live = (await liveMapJson(s.map, s.mapJson)) as { shards: { id: string; buckets: string[] }[] };
    const ownerOf = (b: number) =>
      live.shards.find((x) =>
        x.buckets.some((r) => {
          const [lo, hi] = r.split('-').map(Number) as [number, number?];
          return lo <= b && b <= (hi ?? lo);
        }),
      )?.id;
    expect([240, 241, 242, 243].map(ownerOf)).toEqual(['sz-1', 'sz-1', 'sz-1', 'sz-1']);
    expect((await abortMove(s.map, id)).state).toBe('aborted');
  });

  it('purge deletes by range in bounded batches, and never a bucket the source record owns', async () => {
    const moved = await moveBuckets({ map: s.map, range: [244, 251], to: 'sz-2', batchBuckets: 8, purge: 'never' });
    // As if 247 were the source's again (the record wins over movedTo): the purge must leave it.
    const c = s.admin(0);
    await c.connect();
    await c.query('BEGIN');
    const rec = (await c.query<{ value: Rec }>(`SELECT value FROM shardline_meta WHERE key = 'ownership'`)).rows[0]!.value;
    await c.query(`SELECT shardline_set_ownership($1::jsonb)`, [JSON.stringify({ ...rec, owned: [...rec.owned, [247, 247, 0]] })]);
    await c.query('COMMIT');
    const batches: [number, number][] = [];
    const report = await purgeMove(s.map, moved.id, {
      purgeBatchBuckets: 3,
      onProgress: (p) => void (p.state === 'purging' && p.batch && batches.push([...p.batch])),
    });
    expect(report).toMatchObject({ state: 'done', purged: true });
    expect(batches).toEqual([
      [244, 246],
      [248, 250],
      [251, 251],
    ]);
    expect(await s.query(0, PLAYERS, [244, 246])).toEqual([{ n: 0 }]);
    expect(await s.query(0, PLAYERS, [247, 247])).toEqual([{ n: 2 }]);
    expect(await s.query(0, PLAYERS, [248, 251])).toEqual([{ n: 0 }]);
    expect(await s.query(1, PLAYERS, [244, 251])).toEqual([{ n: 16 }]);
  });
});
