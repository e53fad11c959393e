import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortMove, listMoves, moveBuckets, resumeMove, verifyBuckets } from '../../src/reshard/index.js';
import { MoveBudgetError, MoveRefusedError, MoveVerifyError } from '../../src/errors/index.js';
import { errorOf } from '../support/errors.js';
import { createMoveShards, seedBuckets, type MoveShards } from './move-support.js';

const COUNTS = `SELECT (SELECT count(*) FROM players WHERE ((player_id >> 10) & 4095) BETWEEN $1 AND $2)::int AS players,
                       (SELECT count(*) FROM player_stats WHERE ((player_id >> 10) & 4095) BETWEEN $1 AND $2)::int AS stats,
                       (SELECT count(*) FROM settlement_ledger WHERE ((player_id >> 10) & 4095) BETWEEN $1 AND $2)::int AS ledger,
                       (SELECT count(*) FROM player_identities WHERE ((player_id >> 10) & 4095) BETWEEN $1 AND $2)::int AS pids,
                       (SELECT count(*) FROM identities WHERE bucket BETWEEN $1 AND $2)::int AS identities,
                       (SELECT count(*) FROM settlement_inbox_claims
                         WHERE (((get_byte(sha256(convert_to(match_id, 'UTF8')), 2) & 15) << 8) | get_byte(sha256(convert_to(match_id, 'UTF8')), 3)) BETWEEN $1 AND $2)::int AS claims`;

describe('freeze-mode bucket moves on the shared server', { timeout: 240_000 }, () => {
  let s: MoveShards;
  beforeAll(async () => {
    s = await createMoveShards();
    await seedBuckets(s, 100, 131, 5);
    // An app player table (primary key starting with player_id): the move carries it too.
    for (const i of [0, 1] as const) {
      await s.query(i, `CREATE TABLE game_wallets (player_id bigint, currency text, coins bigint NOT NULL, PRIMARY KEY (player_id, currency))`);
      await s.query(i, `SELECT shardline_apply_fence()`);
    }
    await s.query(0, `INSERT INTO game_wallets SELECT player_id, c, 100 FROM players, (VALUES ('gold'), ('gems')) v(c)`);
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  it('moves a range batch by batch: rows, ownership records and the id clock follow; the source keeps its copy until purged', async () => {
    const before = (await s.query(0, COUNTS, [100, 115]))[0];
    const states: string[] = [];
    const report = await moveBuckets({ map: s.map, range: [100, 115], to: 'sz-2', batchBuckets: 4, purge: 'never', onState: (st) => void states.push(st) });
    expect(report.state).toBe('moved');
    expect(report.freezes).toHaveLength(4);
    expect(states.filter((x) => x === 'switched')).toHaveLength(4);
    expect((await s.query(1, COUNTS, [100, 115]))[0]).toEqual(before);
    expect(before).toMatchObject({ players: 80, stats: 160, ledger: 240, pids: 80 });
    const wallets = `SELECT count(*)::int AS n, sum(coins)::int AS coins FROM game_wallets WHERE ((player_id >> 10) & 4095) BETWEEN 100 AND 115`;
    expect(await s.query(1, wallets)).toEqual(await s.query(0, wallets));
    expect(await s.query(1, wallets)).toEqual([{ n: 160, coins: 16000 }]);
    const [src] = await s.query<{ value: { owned: unknown[]; frozen: unknown[]; movedTo: unknown[] } }>(
      0,
      `SELECT value FROM shardline_meta WHERE key = 'ownership'`,
    );
    const [dst] = await s.query<{ value: { owned: [number, number, number][]; incoming: unknown[] } }>(
      1,
      `SELECT value FROM shardline_meta WHERE key = 'ownership'`,
    );
    expect(src!.value.frozen).toEqual([]);
    expect(src!.value.owned.map((e) => (e as number[]).slice(0, 2))).toEqual([
      [0, 99],
      [116, 4095],
    ]);
    // One entry per batch: each batch committed at its own epoch.
    expect(src!.value.movedTo.map((e) => (e as unknown[]).slice(0, 3))).toEqual([
      [100, 103, 'sz-2'],
      [104, 107, 'sz-2'],
      [108, 111, 'sz-2'],
      [112, 115, 'sz-2'],
    ]);
    const epochs = src!.value.movedTo.map((e) => (e as number[])[3]!);
    expect(new Set(epochs).size).toBe(4);
    expect(dst!.value.incoming).toEqual([]);
    expect(dst!.value.owned.map((e) => e.slice(0, 2))).toEqual([
      [100, 103],
      [104, 107],
      [108, 111],
      [112, 115],
    ]);
    expect(dst!.value.owned.map((e) => e[2])).toEqual(epochs);
    // The target refuses app writes nowhere it owns, and the source refuses the moved buckets.
    const moved = (BigInt(9_000_000) << 22n) | (100n << 10n);
    expect(await errorOf(s.query(0, `INSERT INTO players (player_id, region, nickname) VALUES ($1, 'shenzhen', 'x')`, [String(moved)]))).toMatchObject({
      code: '23514',
    });
    const [seqS] = await s.query<{ v: string }>(0, `SELECT last_value::text AS v FROM player_id_seq`);
    const [seqT] = await s.query<{ v: string }>(1, `SELECT last_value::text AS v FROM player_id_seq`);
    expect(BigInt(seqT!.v)).toBeGreaterThanOrEqual(BigInt(seqS!.v));
    const verify = await verifyBuckets(s.map, [100, 115]);
    expect(verify.ok).toBe(true);
    expect(verify.checks.map((c) => c.against)).toEqual(['sz-1']);
    const moves = await listMoves(s.map);
    expect(moves[0]).toMatchObject({ id: report.id, state: 'moved', range: [100, 115], from: 'sz-1', to: 'sz-2', mode: 'freeze' });
    // The copy on the source is what a tampered target row is checked against.
    await s.query(
      1,
      `UPDATE player_stats SET score = score + 1 WHERE player_id = (SELECT min(player_id) FROM player_stats WHERE ((player_id >> 10) & 4095) = 101)`,
    );
    const tampered = await verifyBuckets(s.map, [100, 115]);
    expect(tampered.ok).toBe(false);
    expect(tampered.checks[0]!.mismatches).toEqual([expect.objectContaining({ table: 'player_stats', bucket: 101 })]);
  });

  it('refuses a range the target already holds rows of, and a range two shards own', async () => {
    const again = await errorOf(moveBuckets({ map: s.map, range: [100, 103], to: 'sz-1', purge: 'never' }));
    expect(again).toBeInstanceOf(MoveRefusedError);
    expect((again as MoveRefusedError).reasons.join('\n')).toMatch(/already holds rows/);
    const split = await errorOf(moveBuckets({ map: s.map, range: [90, 110], to: 'sz-2', dryRun: true }));
    expect((split as MoveRefusedError).reasons.join('\n')).toMatch(/not all owned by one shard/);
  });

  it('a target row changed between copy and verify fails the batch, which the source serves again; abort converges', async () => {
    const before = (await s.query(0, COUNTS, [120, 127]))[0];
    let id = '';
    const err = await errorOf(
      moveBuckets({
        map: s.map,
        range: [120, 127],
        to: 'sz-2',
        batchBuckets: 8,
        purge: 'never',
        onState: async (st, moveId) => {
          id = moveId;
          if (st === 'copied') {
            await s.query(
              1,
              `SET shardline.fence = 'off'; UPDATE players SET nickname = 'tampered' WHERE player_id = (SELECT min(player_id) FROM players WHERE ((player_id >> 10) & 4095) = 121)`,
            );
          }
        },
      }),
    );
    expect(err).toBeInstanceOf(MoveVerifyError);
    const [src] = await s.query<{ value: { owned: [number, number, number][]; frozen: unknown[] } }>(
      0,
      `SELECT value FROM shardline_meta WHERE key = 'ownership'`,
    );
    expect(src!.value.frozen).toEqual([]);
    expect(src!.value.owned.some(([a, b]) => a <= 120 && b >= 127)).toBe(true);
    expect((await s.query(1, COUNTS, [120, 127]))[0]).toMatchObject({ players: 0, stats: 0, ledger: 0 });
    // Resume would try again; abort gives everything back.
    const aborted = await abortMove(s.map, id);
    expect(aborted.state).toBe('aborted');
    expect((await s.query(0, COUNTS, [120, 127]))[0]).toEqual(before);
    const [dst] = await s.query<{ value: { incoming: unknown[] } }>(1, `SELECT value FROM shardline_meta WHERE key = 'ownership'`);
    expect(dst!.value.incoming).toEqual([]);
    // A resume of an aborted move does nothing.
    expect((await resumeMove(s.map, id)).state).toBe('aborted');
  });

  it('a batch frozen longer than maxFreezeMs is undone: the source serves it again, the move stays abortable', async () => {
    let id = '';
    const err = await errorOf(
      moveBuckets({
        map: s.map,
        range: [116, 119],
        to: 'sz-2',
        purge: 'never',
        maxFreezeMs: 1,
        onState: async (st, moveId) => {
          id = moveId;
          if (st === 'copied') await new Promise((r) => setTimeout(r, 20));
        },
      }),
    );
    expect(err).toBeInstanceOf(MoveBudgetError);
    const [src] = await s.query<{ value: { owned: [number, number, number][]; frozen: unknown[] } }>(
      0,
      `SELECT value FROM shardline_meta WHERE key = 'ownership'`,
    );
    expect(src!.value.frozen).toEqual([]);
    expect(src!.value.owned.some(([a, b]) => a <= 116 && b >= 119)).toBe(true);
    expect((await s.query(1, COUNTS, [116, 119]))[0]).toMatchObject({ players: 0, stats: 0, ledger: 0 });
    expect((await abortMove(s.map, id)).state).toBe('aborted');
  });

  it('the application role reads the move rows and writes none', async () => {
    const c = s.admin(0);
    await c.connect();
    await c.query(`SET ROLE shardline_app`);
    expect(((await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM shardline_moves`)).rows[0]?.n ?? 0) > 0).toBe(true);
    expect(await errorOf(c.query(`UPDATE shardline_moves SET state = 'done'`))).toMatchObject({ code: '42501' });
    expect(await errorOf(c.query(`SELECT shardline_set_ownership('{}'::jsonb)`))).toMatchObject({ code: '42501' });
  });

  it('purges the source after the grace period', async () => {
    const report = await moveBuckets({ map: s.map, range: [128, 131], to: 'sz-2', graceMs: 10 });
    expect(report).toMatchObject({ state: 'done', purged: true });
    expect((await s.query(0, COUNTS, [128, 131]))[0]).toMatchObject({ players: 0, stats: 0, ledger: 0, pids: 0, identities: 0, claims: 0 });
    expect((await s.query(1, COUNTS, [128, 131]))[0]).toMatchObject({ players: 20, stats: 40, ledger: 60, pids: 20 });
    const wallets = `SELECT count(*)::int AS n FROM game_wallets WHERE ((player_id >> 10) & 4095) BETWEEN 128 AND 131`;
    expect(await s.query(0, wallets)).toEqual([{ n: 0 }]);
    expect(await s.query(1, wallets)).toEqual([{ n: 40 }]);
  });

  it('moves a range moved in batches back to its first shard once that copy is purged', async () => {
    const back = await moveBuckets({ map: s.map, range: [128, 131], to: 'sz-1', batchBuckets: 2, graceMs: 0 });
    expect(back).toMatchObject({ state: 'done', from: 'sz-2', to: 'sz-1' });
    expect((await s.query(0, COUNTS, [128, 131]))[0]).toMatchObject({ players: 20, stats: 40, ledger: 60, pids: 20 });
    expect((await s.query(1, COUNTS, [128, 131]))[0]).toMatchObject({ players: 0, stats: 0, ledger: 0, pids: 0 });
  });
});
