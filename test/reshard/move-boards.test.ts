import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardSet } from '../../src/db/index.js';
import { purgeMove, moveBuckets } from '../../src/reshard/index.js';
import { Leaderboards } from '../../src/scores/index.js';
import { createMoveShards, seedBuckets, type MoveShards } from './move-support.js';

/**
 * A move carries the leaderboards' player rows (migration 0012): a defined board's scores and late
 * results travel with their players, the plain board is rebuilt on the target by its stats triggers,
 * and every board reads the same through the copy, the commit and the purge.
 */
describe('a bucket move carries the leaderboards', { timeout: 240_000 }, () => {
  let s: MoveShards;
  let shards: ShardSet;
  let boards: Leaderboards;
  const period = '2026-W48';

  beforeAll(async () => {
    s = await createMoveShards();
    const ids = await seedBuckets(s, 200, 215, 4);
    shards = new ShardSet(s.map, { routingRefreshMs: 0 });
    boards = new Leaderboards(shards);
    await boards.defineBoard({ boardId: 'chess:weekly', operator: 'sum', period: 'weekly' });
    // Scores with ties, straight into the defined board (the counts follow by its triggers).
    await s.query(
      0,
      `INSERT INTO leaderboard_scores (player_id, board_id, period, score) SELECT id::bigint, 'chess:weekly', $2, (id::bigint % 7) FROM unnest($1::text[]) id`,
      [ids.map(String), period],
    );
    await s.query(
      0,
      `INSERT INTO leaderboard_late_results (player_id, board_id, match_id, period, score_delta, ended_at, reason)
       VALUES ($1::bigint, 'chess:season', 'late-1', 's1', 5, now(), 'season-closed')`,
      [String(ids[0])],
    );
  });
  afterAll(async () => {
    await shards?.close();
    await s?.cleanup();
  });

  async function snapshot() {
    await shards.refreshRouting();
    const weekly = await boards.topScores('chess:weekly', { period, limit: 1000 });
    const plain = await boards.topScores('chess', { limit: 1000 });
    const sample = weekly.filter((_, i) => i % 9 === 0);
    const ranks = await Promise.all(sample.map((e) => boards.rankOf(e.playerId, 'chess:weekly', { period })));
    return {
      weekly: weekly.map((e) => [String(e.playerId), e.score]),
      plain: plain.map((e) => [String(e.playerId), e.score]),
      ranks: ranks.map((r) => r?.rank),
    };
  }

  it('keeps every board equal through the move and the purge', async () => {
    const before = await snapshot();
    expect(before.weekly).toHaveLength(64);
    const report = await moveBuckets({ map: s.map, range: [200, 207], to: 'sz-2', batchBuckets: 4, purge: 'never' });
    expect(report.state).toBe('moved');
    // Copies on both shards, each counted once.
    expect(await snapshot()).toEqual(before);
    const onTarget = `SELECT count(*) FILTER (WHERE period = '')::int AS plain, count(*) FILTER (WHERE period <> '')::int AS defined
                        FROM leaderboard_scores WHERE ((player_id >> 10) & 4095) BETWEEN 200 AND 207`;
    expect(await s.query(1, onTarget)).toEqual([{ plain: 64, defined: 32 }]);
    expect(await s.query(1, `SELECT count(*)::int AS n FROM leaderboard_late_results`)).toEqual([{ n: 1 }]);
    await purgeMove(s.map, report.id);
    expect(await s.query(0, onTarget)).toEqual([{ plain: 0, defined: 0 }]);
    expect(await snapshot()).toEqual(before);
    // The counts the triggers kept on both shards equal what a rebuild computes from the rows.
    for (const i of [0, 1] as const) {
      const counts = `SELECT board_id, period, range, active, n FROM leaderboard_counts ORDER BY 1, 2, 3, 4`;
      await s.query(i, `SELECT shardline_compact_board_counts()`);
      const kept = await s.query(i, counts);
      await s.query(i, `SELECT shardline_rebuild_leaderboards()`);
      expect(await s.query(i, counts)).toEqual(kept);
    }
  });
});
