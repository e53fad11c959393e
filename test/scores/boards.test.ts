import pg from 'pg';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BoardConflictError, Leaderboards, SeasonStateError, UnknownBoardError, ValidationError, type PlayerId } from '../../src/index.js';
import { SettlementClient, SettlementWorker, type SettlementInput } from '../../src/settlement/index.js';
import { applyParts } from '../../src/settlement/apply.js';
import { calendarPeriodOf } from '../../src/scores/periods.js';
import { errorOf } from '../support/errors.js';
import { RUN_PREFIX, uniqueName, urlFor } from '../support/env.js';
import { writeMapFile } from '../support/maps.js';
import { runCli } from '../support/cli.js';
import { LAYOUTS, createTestShards, dropDatabases, withAdmin, type TestShards } from '../support/shards.js';
import { createPlayers, deleteKeys, interleave, redisOptions, silent, testPrefix } from '../settlement/helpers.js';

interface Oracle {
  playerId: PlayerId;
  score: bigint;
}

/** The boards under test: every operator and every period, two week starts. */
const BOARDS = [
  { boardId: 'duel:total', operator: 'sum', period: 'all-time' },
  { boardId: 'duel:best-day', operator: 'best', period: 'daily' },
  { boardId: 'duel:last-week', operator: 'set', period: 'weekly', weekStart: 'sunday' },
  { boardId: 'duel:week', operator: 'sum', period: 'weekly' },
  { boardId: 'duel:month', operator: 'sum', period: 'monthly' },
  { boardId: 'duel:best-month', operator: 'best', period: 'monthly' },
  { boardId: 'duel:last', operator: 'set', period: 'all-time' },
  { boardId: 'duel:season', operator: 'sum', period: 'season' },
] as const;

/** Period boundaries: the last millisecond of a day (and week, and month) and the first of the next. */
const ENDS = [
  '2026-11-28T23:59:59.999Z', // Saturday: the last of a Sunday-start week
  '2026-11-29T00:00:00.000Z',
  '2026-11-29T23:59:59.999Z', // Sunday: the last of an ISO week
  '2026-11-30T00:00:00.000Z',
  '2026-11-30T23:59:59.999Z', // the last of November
  '2026-12-01T00:00:00.000Z',
  '2026-12-01T06:00:00.000Z',
].map((s) => new Date(s));
const SEASON_OPEN = new Date('2026-11-29T00:00:00.000Z');

/** The period label of `at` in SQL, as the oracle computes it (independently of src/scores/periods.ts). */
function oraclePeriod(period: string, weekStart: string | undefined): string {
  const utc = `(ended_at AT TIME ZONE 'UTC')`;
  switch (period) {
    case 'all-time':
      return `'all-time'`;
    case 'daily':
      return `to_char(${utc}, 'YYYY-MM-DD')`;
    case 'monthly':
      return `to_char(${utc}, 'YYYY-MM')`;
    case 'weekly':
      return weekStart === 'sunday' ? `to_char(${utc} + interval '1 day', 'IYYY-"W"IW')` : `to_char(${utc}, 'IYYY-"W"IW')`;
    default:
      return `CASE WHEN ended_at >= '${SEASON_OPEN.toISOString()}' THEN 's1' END`;
  }
}

const oracleScore: Record<string, string> = {
  sum: 'sum(score_delta)',
  best: 'max(score_delta)',
  set: '(array_agg(score_delta ORDER BY ended_at DESC, match_id DESC))[1]',
};

describe.each(LAYOUTS)('leaderboard boards (%s)', (layout) => {
  let t: TestShards;
  let boards: Leaderboards;
  let players: PlayerId[];
  let client: SettlementClient;
  let worker: SettlementWorker;
  let oracleDb: string;
  let oracle: pg.Client;
  const prefix = testPrefix();
  let n = 0;

  const match = (ids: readonly PlayerId[], endedAt: Date, gameId = 'duel', deltas?: number[]): SettlementInput => ({
    matchId: `m-${++n}-${uniqueName('x')}`,
    gameId,
    endedAt,
    results: ids.map((playerId, i) => ({
      playerId: String(playerId),
      scoreDelta: deltas?.[i] ?? ((n * 7 + i * 3) % 7) - 3,
      outcome: i === 0 ? 'win' : 'loss',
    })),
  });

  async function settle(matches: readonly SettlementInput[]): Promise<void> {
    for (const m of matches) await client.submitSettlement(m);
    for (const m of matches) {
      const s = await client.waitFor(m.matchId, { timeoutMs: 30_000 });
      expect(s.state, m.matchId).toBe('applied');
    }
  }

  /** Every shard's ledger and player status copied into one table; the boards computed from it in SQL. */
  async function copyToOracle(): Promise<void> {
    await oracle.query(`TRUNCATE ledger, status`);
    for (const s of t.shardSet.shards) {
      const pool = t.shardSet.pool(s.id);
      const l = await pool.query(`SELECT match_id, player_id::text, game_id, score_delta, ended_at FROM settlement_ledger`);
      for (const r of l.rows) {
        await oracle.query(`INSERT INTO ledger VALUES ($1, $2, $3, $4, $5)`, [r.match_id, r.player_id, r.game_id, r.score_delta, r.ended_at]);
      }
      const p = await pool.query(`SELECT player_id::text, status FROM players`);
      // A player copied to a second shard (a move in progress) is one player.
      for (const r of p.rows) await oracle.query(`INSERT INTO status VALUES ($1, $2) ON CONFLICT DO NOTHING`, [r.player_id, r.status]);
    }
  }

  async function expected(board: (typeof BOARDS)[number], period: string, hide = true, gameId = 'duel'): Promise<Oracle[]> {
    const weekStart = 'weekStart' in board ? board.weekStart : undefined;
    const r = await oracle.query<{ player_id: string; score: string }>(
      `SELECT l.player_id::text, ${oracleScore[board.operator]} AS score
       FROM ledger l JOIN status s USING (player_id)
       WHERE l.game_id = $1 AND ${oraclePeriod(board.period, weekStart)} = $2 ${hide ? `AND s.status = 'active'` : ''}
       GROUP BY l.player_id ORDER BY 2 DESC, l.player_id ASC`,
      [gameId, period],
    );
    return r.rows.map((x) => ({ playerId: BigInt(x.player_id) as PlayerId, score: BigInt(x.score) }));
  }

  async function periodsOf(board: (typeof BOARDS)[number]): Promise<string[]> {
    const weekStart = 'weekStart' in board ? board.weekStart : undefined;
    const r = await oracle.query<{ p: string }>(`SELECT DISTINCT ${oraclePeriod(board.period, weekStart)} AS p FROM ledger WHERE game_id = 'duel'`);
    return r.rows.map((x) => x.p).filter((p) => p !== null);
  }

  /** Every answer of every board period against the oracle: top list, each rank, around and topAmong. */
  async function checkAll(hide = true): Promise<number> {
    let checked = 0;
    for (const board of BOARDS) {
      for (const period of await periodsOf(board)) {
        const want = await expected(board, period, hide);
        const opts = { period, hideInactive: hide };
        const top = await boards.topScores(board.boardId, { ...opts, limit: 1000 });
        expect(
          top.map((e) => [e.rank, e.playerId, e.score]),
          `${board.boardId} ${period}`,
        ).toEqual(want.map((w, i) => [i + 1, w.playerId, w.score]));
        for (const [i, w] of want.entries()) {
          const r = await boards.rankOf(w.playerId, board.boardId, opts);
          expect(r, `${board.boardId} ${period} #${i + 1}`).toMatchObject({ rank: i + 1, score: w.score, boardId: board.boardId, period });
          checked++;
        }
        if (want.length > 0) {
          for (const at of [0, Math.floor(want.length / 2), want.length - 1]) {
            const got = await boards.around(want[at]!.playerId, board.boardId, { ...opts, above: 3, below: 3 });
            const lo = Math.max(0, at - 3);
            expect(
              got?.map((e) => [e.rank, e.playerId, e.score]),
              `around ${board.boardId} ${period} #${at + 1}`,
            ).toEqual(want.slice(lo, at + 4).map((w, k) => [lo + k + 1, w.playerId, w.score]));
          }
          const some = players.filter((_, i) => i % 3 === 0);
          const among = await boards.topAmong(board.boardId, some, opts);
          const wantAmong = want.map((w, i) => ({ ...w, rank: i + 1 })).filter((w) => some.includes(w.playerId));
          expect(among.map((e) => [e.place, e.rank, e.playerId, e.score])).toEqual(wantAmong.map((w, i) => [i + 1, w.rank, w.playerId, w.score]));
        }
      }
    }
    return checked;
  }

  beforeAll(async () => {
    t = await createTestShards(layout);
    boards = new Leaderboards(t.shardSet);
    players = interleave(await createPlayers(t.shardSet, layout === 'one-shard' ? 24 : 8));
    client = new SettlementClient({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
    worker = new SettlementWorker({ shards: t.shardSet, connection: redisOptions(), prefix, logger: silent });
    await worker.start();
    oracleDb = `${RUN_PREFIX}oracle_${process.pid}_${layout.replace('-', '_')}`;
    await withAdmin((a) => a.query(`CREATE DATABASE ${pg.escapeIdentifier(oracleDb)}`));
    oracle = new pg.Client({ connectionString: urlFor(oracleDb) });
    await oracle.connect();
    await oracle.query(`CREATE TABLE ledger (match_id text, player_id bigint, game_id text, score_delta int, ended_at timestamptz)`);
    await oracle.query(`CREATE TABLE status (player_id bigint PRIMARY KEY, status text)`);

    for (const b of BOARDS) await boards.defineBoard(b);
    await boards.openSeason('duel:season', 's1', { at: SEASON_OPEN });
    // Many small matches over the boundaries, scores -3..3: ties everywhere, across shards too.
    const matches: SettlementInput[] = [];
    for (let i = 0; i < 70; i++) {
      const size = 2 + (i % 3);
      const ids = Array.from({ length: size }, (_, k) => players[(i * 5 + k * 7) % players.length]!);
      matches.push(match([...new Set(ids)], ENDS[i % ENDS.length]!));
    }
    await settle(matches);
  }, 180_000);

  afterAll(async () => {
    await worker?.stop(10_000);
    await client?.close();
    await deleteKeys(prefix);
    await oracle?.end();
    if (oracleDb) await dropDatabases([oracleDb]);
    await t?.cleanup();
  });

  it('definitions: idempotent, a different one refused, listed with seasons; bad input refused', async () => {
    expect(await boards.defineBoard({ boardId: 'duel:week', operator: 'sum', period: 'weekly', weekStart: 'monday' })).toMatchObject({
      gameId: 'duel',
      name: 'week',
    });
    const conflict = await errorOf(boards.defineBoard({ boardId: 'duel:week', operator: 'best', period: 'weekly' }));
    expect(conflict).toBeInstanceOf(BoardConflictError);
    expect(conflict).toMatchObject({ code: 'BOARD_CONFLICT', boardId: 'duel:week', existing: { operator: 'sum' }, requested: { operator: 'best' } });
    expect(await errorOf(boards.defineBoard({ boardId: 'duel:last-week', operator: 'set', period: 'weekly' }))).toBeInstanceOf(BoardConflictError);
    const list = await boards.listBoards({ gameId: 'duel' });
    expect(list.map((b) => b.boardId)).toEqual(BOARDS.map((b) => b.boardId).sort());
    expect(list.find((b) => b.boardId === 'duel:season')?.seasons).toEqual([{ seasonId: 's1', openedAt: SEASON_OPEN, closedAt: null }]);
    // Every shard holds the same definitions.
    for (const s of t.shardSet.shards) {
      const r = await t.shardSet.pool(s.id).query(`SELECT count(*)::int AS n FROM leaderboard_boards WHERE game_id = 'duel'`);
      expect(r.rows[0].n).toBe(BOARDS.length);
    }
    for (const bad of [
      { boardId: 'duel', operator: 'sum', period: 'daily' },
      { boardId: 'duel:x y', operator: 'sum', period: 'daily' },
      { boardId: 'duel:x', operator: 'max', period: 'daily' },
      { boardId: 'duel:x', operator: 'sum', period: 'hourly' },
      { boardId: 'duel:x', operator: 'sum', period: 'daily', weekStart: 'sunday' },
    ]) {
      expect(await errorOf(boards.defineBoard(bad as never))).toBeInstanceOf(ValidationError);
    }
    expect(await errorOf(boards.topScores('duel:nope', { period: '2026-12-01' }))).toBeInstanceOf(UnknownBoardError);
    expect(await errorOf(boards.topScores('duel:best-day', { period: '2026-W48' }))).toBeInstanceOf(ValidationError);
    expect(await errorOf(boards.openSeason('duel:week', 'x'))).toBeInstanceOf(UnknownBoardError);
  });

  it('every operator and period is exact against the oracle, over the period boundaries, with ties', async () => {
    await copyToOracle();
    const checked = await checkAll();
    expect(checked).toBeGreaterThan(100);
    // The boundaries split as they should: 23:59:59.999 and 00:00:00.000 are in different days.
    expect(await periodsOf(BOARDS[1])).toEqual(expect.arrayContaining(['2026-11-28', '2026-11-29', '2026-11-30', '2026-12-01']));
    expect((await periodsOf(BOARDS[2])).sort()).toEqual(['2026-W48', '2026-W49']);
    expect((await periodsOf(BOARDS[3])).sort()).toEqual(['2026-W48', '2026-W49']);
    expect((await periodsOf(BOARDS[4])).sort()).toEqual(['2026-11', '2026-12']);
    // A Date picks the period holding it; no period means the current one (empty here).
    const sat = await boards.topScores('duel:best-day', { period: ENDS[0], limit: 1000 });
    expect(sat).toEqual(await boards.topScores('duel:best-day', { period: '2026-11-28', limit: 1000 }));
    expect(calendarPeriodOf('weekly', ENDS[0]!, 'sunday')).toBe('2026-W48');
    expect(calendarPeriodOf('weekly', ENDS[1]!, 'sunday')).toBe('2026-W49');
    expect(calendarPeriodOf('weekly', new Date('2027-01-01T00:00:00Z'))).toBe('2026-W53');
  });

  it('the plain game id stays the all-time sum of player_stats', async () => {
    const total = await boards.topScores('duel:total', { limit: 1000 });
    const plain = await boards.topScores('duel', { limit: 1000 });
    expect(plain).toEqual(total);
    const r = await boards.rankOf(plain[0]!.playerId, 'duel');
    expect(r).toEqual({ playerId: plain[0]!.playerId, gameId: 'duel', score: plain[0]!.score, rank: 1, region: null });
  });

  it('stays exact while settlements keep landing on other boards (counts compacted meanwhile)', async () => {
    await boards.defineBoard({ boardId: 'noise:daily', operator: 'sum', period: 'daily' });
    let stop = false;
    const landed: string[] = [];
    const noise = (async () => {
      for (let i = 0; !stop && i < 200; i++) {
        const m = match([players[i % players.length]!, players[(i + 3) % players.length]!], new Date('2026-12-01T08:00:00Z'), 'noise');
        await client.submitSettlement(m);
        landed.push(m.matchId);
      }
    })();
    try {
      await copyToOracle();
      await checkAll();
    } finally {
      stop = true;
      await noise;
    }
    for (const id of landed) await client.waitFor(id, { timeoutMs: 30_000 });
    expect(landed.length).toBeGreaterThan(0);
    // The noise board itself, once it settled.
    await copyToOracle();
    const want = await expected({ boardId: 'noise:daily', operator: 'sum', period: 'daily' } as never, '2026-12-01', true, 'noise');
    const got = await boards.topScores('noise:daily', { period: '2026-12-01', limit: 1000 });
    expect(got.map((e) => [e.playerId, e.score])).toEqual(want.map((w) => [w.playerId, w.score]));
  });

  it('applies each result once: a part applied again changes no board', async () => {
    const m = match([players[0]!, players[1]!], ENDS[6]!, 'duel', [3, -3]);
    await settle([m]);
    const before = await boards.topScores('duel:month', { period: '2026-12', limit: 1000 });
    for (const s of t.shardSet.shards) {
      const out = await applyParts(await t.shardSet.db(s.id), [m.matchId]);
      const o = out.get(m.matchId)!;
      expect(['duplicate', 'failed']).toContain(o.kind); // failed: no inbox row on a shard it did not touch
    }
    expect(await boards.topScores('duel:month', { period: '2026-12', limit: 1000 })).toEqual(before);
  });

  it('hides players who are not active (an option), and a deleted player leaves every board', async () => {
    const top = await boards.topScores('duel:total', { limit: 1000 });
    const suspended = top[1]!.playerId;
    const deleted = top[2]!.playerId;
    await t.shardSet.pool(t.shardSet.router.shardFor(suspended).id).query(`UPDATE players SET status = 'suspended' WHERE player_id = $1`, [suspended]);
    await t.shardSet.pool(t.shardSet.router.shardFor(deleted).id).query(`DELETE FROM players WHERE player_id = $1`, [deleted]);
    await copyToOracle();
    await checkAll(true);
    await checkAll(false);
    expect(await boards.rankOf(suspended, 'duel:total')).toBeNull();
    expect(await boards.rankOf(suspended, 'duel:total', { hideInactive: false })).toMatchObject({ rank: 2 });
    expect(await boards.around(suspended, 'duel:total')).toBeNull();
    const shown = await boards.topScores('duel:total', { limit: 1000 });
    expect(shown.map((e) => e.playerId)).not.toContain(suspended);
    expect(shown.map((e) => e.playerId)).not.toContain(deleted);
    await t.shardSet.pool(t.shardSet.router.shardFor(suspended).id).query(`UPDATE players SET status = 'active' WHERE player_id = $1`, [suspended]);
    expect(await boards.rankOf(suspended, 'duel:total')).toMatchObject({ rank: 2 });
    players = players.filter((p) => p !== deleted);
  });

  it('a player copied to a second shard (a bucket move in progress) is counted once', async () => {
    if (t.shardSet.shards.length === 1) return;
    const before = await boards.topScores('duel:total', { limit: 1000 });
    const copied = before.slice(0, 6).map((e) => e.playerId);
    const target = t.shardSet.shards.find((s) => s.id !== t.shardSet.router.shardFor(copied[0]!).id)!;
    const to = await t.shardSet.pool(target.id).connect();
    try {
      await to.query('BEGIN');
      await to.query(`SET LOCAL shardline.fence = 'off'`); // as the mover copies into an incoming range
      for (const pid of copied) {
        const from = t.shardSet.pool(t.shardSet.router.shardFor(pid).id);
        if (t.shardSet.router.shardFor(pid).id === target.id) continue;
        const p = (await from.query(`SELECT player_id, region, nickname, status FROM players WHERE player_id = $1`, [pid])).rows[0];
        await to.query(`INSERT INTO players (player_id, region, nickname, status) VALUES ($1, $2, $3, $4)`, [p.player_id, p.region, p.nickname, p.status]);
        const stats = await from.query(`SELECT game_id, score FROM player_stats WHERE player_id = $1`, [pid]);
        for (const s of stats.rows) await to.query(`INSERT INTO player_stats (player_id, game_id, score) VALUES ($1, $2, $3)`, [pid, s.game_id, s.score]);
        const rows = await from.query(`SELECT board_id, period, score, active FROM leaderboard_scores WHERE player_id = $1 AND period <> ''`, [pid]);
        for (const r of rows.rows) {
          await to.query(`INSERT INTO leaderboard_scores (player_id, board_id, period, score, active) VALUES ($1, $2, $3, $4, $5)`, [
            pid,
            r.board_id,
            r.period,
            r.score,
            r.active,
          ]);
        }
      }
      await to.query('COMMIT');
      await copyToOracle();
      // The oracle copies every shard's ledger: the copy has none, so it is the truth.
      await checkAll();
      expect(await boards.topScores('duel:total', { limit: 1000 })).toEqual(before);
    } finally {
      await to.query(`ROLLBACK`).catch(() => undefined);
      // The purge: the copies leave the shard again (their counts with them).
      await to.query('BEGIN');
      await to.query(`SET LOCAL shardline.fence = 'off'`);
      await to.query(`DELETE FROM players WHERE player_id = ANY($1::bigint[])`, [
        copied.filter((p) => t.shardSet.router.shardFor(p).id !== target.id).map(String),
      ]);
      await to.query('COMMIT');
      to.release();
    }
  });

  it('the counts the triggers kept are what shardline_rebuild_leaderboards() recomputes from the rows', async () => {
    const counts = `SELECT board_id, period, range::text, active, sum(n)::text AS n
      FROM (SELECT * FROM leaderboard_counts UNION ALL SELECT * FROM leaderboard_count_deltas) c
      GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4`;
    for (const s of t.shardSet.shards) {
      const pool = t.shardSet.pool(s.id);
      const kept = (await pool.query(counts)).rows;
      const rows = (await pool.query(`SELECT count(*)::int AS n FROM leaderboard_scores`)).rows[0].n as number;
      await pool.query(`SELECT shardline_rebuild_leaderboards()`);
      expect((await pool.query(counts)).rows, s.id).toEqual(kept);
      expect((await pool.query(`SELECT count(*)::int AS n FROM leaderboard_scores`)).rows[0].n).toBe(rows);
      expect(kept.length).toBeGreaterThan(0);
    }
  });

  it('around at the top and the bottom of a board', async () => {
    const all = await boards.topScores('duel:total', { limit: 1000 });
    const top = await boards.around(all[0]!.playerId, 'duel:total', { above: 5, below: 2 });
    expect(top).toEqual(all.slice(0, 3));
    const last = all.at(-1)!;
    const bottom = await boards.around(last.playerId, 'duel:total', { above: 2, below: 5 });
    expect(bottom).toEqual(all.slice(-3));
    expect(await boards.around(last.playerId, 'duel:total', { above: 0, below: 0 })).toEqual([last]);
    for (const region of t.shardSet.router.regions) {
      const mine = (await boards.topScores('duel:total', { region, limit: 1000 })).filter(Boolean);
      if (mine.length === 0) continue;
      const mid = mine[Math.floor(mine.length / 2)]!;
      const got = await boards.around(mid.playerId, 'duel:total', { region, above: 1, below: 1 });
      const at = mine.indexOf(mid);
      expect(got).toEqual(mine.slice(Math.max(0, at - 1), at + 2));
    }
  });

  it('a closed season refuses late results (recorded, on no board); calendar periods take them', async () => {
    const before = await boards.topScores('duel:season', { period: 's1', limit: 1000 });
    const closeAt = new Date('2026-12-01T12:00:00.000Z');
    expect(await boards.closeSeason('duel:season', 's1', { at: closeAt })).toEqual({ seasonId: 's1', openedAt: SEASON_OPEN, closedAt: closeAt });
    expect(await boards.closeSeason('duel:season', 's1')).toMatchObject({ closedAt: closeAt }); // idempotent
    expect(await errorOf(boards.openSeason('duel:season', 's1'))).toMatchObject({ reason: 'closed' });
    expect(await errorOf(boards.closeSeason('duel:season', 'nope'))).toBeInstanceOf(SeasonStateError);

    const lateIds = [players[0]!, players[1]!];
    const late = match(lateIds, new Date('2026-12-01T11:00:00.000Z'), 'duel', [50, 40]); // inside s1, after its close
    const oldDay = match([players[2]!], new Date('2026-11-02T10:00:00.000Z'), 'duel', [9]); // a month-old calendar period
    await settle([late, oldDay]);
    expect(await boards.topScores('duel:season', { period: 's1', limit: 1000 })).toEqual(before);
    const recorded: { player_id: string; board_id: string; period: string; reason: string }[] = [];
    for (const s of t.shardSet.shards) {
      const r = await t.shardSet
        .pool(s.id)
        .query<{ player_id: string; board_id: string; period: string; reason: string }>(
          `SELECT player_id::text, board_id, period, reason FROM leaderboard_late_results WHERE match_id = $1`,
          [late.matchId],
        );
      recorded.push(...r.rows);
    }
    expect(recorded.sort((a, b) => (a.player_id < b.player_id ? -1 : 1))).toEqual(
      lateIds
        .map((p) => ({ player_id: String(p), board_id: 'duel:season', period: 's1', reason: 'season-closed' }))
        .sort((a, b) => (a.player_id < b.player_id ? -1 : 1)),
    );
    // The other boards counted it; the old day's board took its result.
    expect((await boards.rankOf(players[0]!, 'duel:best-day', { period: '2026-12-01' }))?.score).toBe(50n);
    expect(await boards.topScores('duel:best-day', { period: '2026-11-02' })).toMatchObject([{ playerId: players[2], score: 9n, rank: 1 }]);

    // A new season: s2 counts results from its opening; one open season at a time.
    await boards.openSeason('duel:season', 's2', { at: new Date('2026-12-01T13:00:00.000Z') });
    expect(await errorOf(boards.openSeason('duel:season', 's3'))).toMatchObject({ reason: 'other-season-open' });
    await settle([match([players[3]!], new Date('2026-12-01T13:30:00.000Z'), 'duel', [7])]);
    expect(await boards.topScores('duel:season')).toMatchObject([{ playerId: players[3], score: 7n }]); // the open season by default
    expect(await boards.topScores('duel:season', { period: 's1', limit: 1000 })).toEqual(before); // past periods stay readable
  });

  it('the CLI defines, lists and opens and closes seasons', { timeout: 180_000 }, async () => {
    const file = writeMapFile(t.mapJson);
    const def = await runCli(['boards', 'define', 'cli:weekly', '--operator', 'best', '--period', 'weekly', '--week-start', 'sunday', '--map', file]);
    expect(def.code, def.stderr).toBe(0);
    expect(JSON.parse(def.stdout)).toMatchObject({ boardId: 'cli:weekly', operator: 'best', period: 'weekly', weekStart: 'sunday' });
    const again = await runCli(['boards', 'define', 'cli:weekly', '--operator', 'sum', '--period', 'weekly', '--map', file]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('already defined');
    await boards.defineBoard({ boardId: 'cli:s', operator: 'sum', period: 'season' });
    const open = await runCli(['boards', 'season', 'open', 'cli:s', 'spring', '--at', '2026-12-01T00:00:00Z', '--map', file]);
    expect(open.code, open.stderr).toBe(0);
    expect(JSON.parse(open.stdout)).toMatchObject({ boardId: 'cli:s', seasonId: 'spring', openedAt: '2026-12-01T00:00:00.000Z', closedAt: null });
    const close = await runCli(['boards', 'season', 'close', 'cli:s', 'spring', '--map', file]);
    expect(close.code, close.stderr).toBe(0);
    const json = await runCli(['boards', 'list', '--game', 'cli', '--json', '--map', file]);
    expect(json.code, json.stderr).toBe(0);
    const listed = JSON.parse(json.stdout) as { boardId: string; seasons: { seasonId: string; closedAt: string | null }[] }[];
    expect(listed.map((b) => b.boardId)).toEqual(['cli:s', 'cli:weekly']);
    expect(listed[0]!.seasons).toMatchObject([{ seasonId: 'spring' }]);
    expect(listed[0]!.seasons[0]!.closedAt).not.toBeNull();
    // Rows are per shard: every shard got the CLI's definitions and season.
    for (const s of t.shardSet.shards) {
      const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM leaderboard_seasons WHERE board_id = 'cli:s' AND closed_at IS NOT NULL`.execute(
        await t.shardSet.db(s.id),
      );
      expect(r.rows[0]!.n).toBe(1);
    }
  });
});
