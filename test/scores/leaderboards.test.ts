import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Leaderboards, PlayerNotFoundError, UnknownRegionError, ValidationError, encodePlayerId, type PlayerId } from '../../src/index.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';
import { countQueries } from '../accounts/query-counter.js';

interface Row {
  playerId: PlayerId;
  score: bigint;
  nickname: string;
  region: string;
}

const PLAYERS_PER_SHARD = 120;

/**
 * Seeds each shard straight in SQL: players with ids built from the shard's own buckets, then a
 * 'chess' row for ~90% of them and a 'go' row for ~half, with scores in 0..29 so ties abound,
 * across shards too.
 */
async function seed(t: TestShards): Promise<void> {
  const baseMs = Date.now() - 1_704_067_200_000 - 86_400_000;
  await Promise.all(
    t.shardSet.shards.map(async (s) => {
      const [lo, hi] = s.buckets[0]!;
      const pool = t.shardSet.pool(s.id);
      await pool.query(
        `INSERT INTO players (player_id, region, nickname)
         SELECT (($1::bigint + g / $3 / 1024) << 22) | (($2::bigint + g % $3) << 10) | ((g / $3) % 1024), $4, $4 || ' #' || g
         FROM generate_series(0, $5 - 1) AS g`,
        [baseMs, lo, hi - lo + 1, s.region, PLAYERS_PER_SHARD],
      );
      await pool.query(
        `INSERT INTO player_stats (player_id, game_id, score) SELECT player_id, 'chess', floor(random() * 30) FROM players WHERE random() < 0.9`,
      );
      await pool.query(`INSERT INTO player_stats (player_id, game_id, score) SELECT player_id, 'go', floor(random() * 30) FROM players WHERE random() < 0.5`);
    }),
  );
}

/** Brute force: every row of the game from every shard, ordered by score DESC then id ASC. */
async function everyRow(t: TestShards, gameId: string, region?: string): Promise<Row[]> {
  const rows: Row[] = [];
  for (const s of t.shardSet.shards) {
    const r = await t.shardSet
      .pool(s.id)
      .query<{ player_id: PlayerId; score: bigint; nickname: string; region: string }>(
        `SELECT s.player_id, s.score, p.nickname, p.region FROM player_stats s JOIN players p USING (player_id) WHERE s.game_id = $1`,
        [gameId],
      );
    rows.push(...r.rows.map((x) => ({ playerId: x.player_id, score: x.score, nickname: x.nickname, region: x.region })));
  }
  return rows
    .filter((r) => region === undefined || r.region === region)
    .sort((a, b) => (a.score !== b.score ? Number(b.score - a.score) : a.playerId < b.playerId ? -1 : 1));
}

async function fieldOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return (e as ValidationError).field;
  }
  throw new Error('expected a ValidationError');
}

describe.each(LAYOUTS)('leaderboards (%s)', (layout) => {
  let t: TestShards;
  let boards: Leaderboards;
  let chess: Row[];

  beforeAll(async () => {
    t = await createTestShards(layout);
    boards = new Leaderboards(t.shardSet);
    await seed(t);
    chess = await everyRow(t, 'chess');
  });
  afterAll(() => t?.cleanup());

  it('topScores is the exact global top-K, ties broken by player id', async () => {
    expect(chess.length).toBeGreaterThan(PLAYERS_PER_SHARD / 2);
    for (const limit of [1, 7, 50, 1000]) {
      const expected = chess.slice(0, limit).map((r, i) => ({ rank: i + 1, ...r }));
      expect(await boards.topScores('chess', { limit })).toEqual(expected);
    }
    expect(await boards.topScores('chess')).toHaveLength(10);
    const go = await everyRow(t, 'go');
    expect((await boards.topScores('go', { limit: 25 })).map((e) => e.playerId)).toEqual(go.slice(0, 25).map((r) => r.playerId));
    expect(await boards.topScores('checkers', { limit: 5 })).toEqual([]);
  });

  it('topScores with a region is the exact top-K of that region only', async () => {
    for (const region of t.shardSet.router.regions) {
      const expected = chess
        .filter((r) => r.region === region)
        .slice(0, 40)
        .map((r, i) => ({ rank: i + 1, ...r }));
      expect(await boards.topScores('chess', { region, limit: 40 })).toEqual(expected);
    }
  });

  it('topScores stays exact when one shard holds the whole top (its share is read again, in full)', async () => {
    const strong = t.shardSet.shards[0]!;
    await t.shardSet
      .pool(strong.id)
      .query(`INSERT INTO player_stats (player_id, game_id, score) SELECT player_id, 'skewed', 1000 + floor(random() * 30) FROM players`);
    for (const s of t.shardSet.shards.slice(1)) {
      await t.shardSet.pool(s.id).query(`INSERT INTO player_stats (player_id, game_id, score) SELECT player_id, 'skewed', floor(random() * 30) FROM players`);
    }
    const expected = (await everyRow(t, 'skewed')).slice(0, 50).map((r, i) => ({ rank: i + 1, ...r }));
    await boards.topScores('skewed', { limit: 1 }); // identity checks happen on first use
    const counter = countQueries(t.shardSet);
    expect(await boards.topScores('skewed', { limit: 50 })).toEqual(expected);
    const counts = counter.counts();
    // One shard: its share is the whole limit, one statement. Several: the strong shard twice, the rest once.
    for (const s of t.shardSet.shards) expect(counts[s.id], s.id).toBe(s.id === strong.id && t.shardSet.shards.length > 1 ? 2 : 1);
  });

  it('rankOf agrees with the brute-force order, globally and per region', async () => {
    const sample = chess.filter((_, i) => i % Math.ceil(chess.length / 25) === 0 || i === chess.length - 1);
    for (const row of sample) {
      const got = await boards.rankOf(String(row.playerId), 'chess');
      expect(got).toEqual({ playerId: row.playerId, gameId: 'chess', score: row.score, rank: chess.indexOf(row) + 1, region: null });
      const inRegion = chess.filter((r) => r.region === row.region);
      expect((await boards.rankOf(row.playerId, 'chess', { region: row.region }))?.rank).toBe(inRegion.indexOf(row) + 1);
    }
  });

  it('rankOf of every topScores entry is its rank there', async () => {
    for (const e of await boards.topScores('chess', { limit: 15 })) {
      expect((await boards.rankOf(e.playerId, 'chess'))?.rank).toBe(e.rank);
    }
  });

  it('rankOf: null without a score, errors for unknown players, foreign regions and bad input', async () => {
    const all = await t.shardSet
      .pool(t.shardSet.shards[0]!.id)
      .query<{ player_id: PlayerId }>(`SELECT player_id FROM players WHERE player_id NOT IN (SELECT player_id FROM player_stats WHERE game_id = 'go') LIMIT 1`);
    expect(await boards.rankOf(all.rows[0]!.player_id, 'go')).toBeNull();
    await expect(boards.rankOf(encodePlayerId({ time: 5, bucket: 5, seq: 5 }), 'chess')).rejects.toBeInstanceOf(PlayerNotFoundError);
    await expect(boards.rankOf(chess[0]!.playerId, 'chess', { region: 'atlantis' })).rejects.toBeInstanceOf(UnknownRegionError);
    const other = t.shardSet.router.regions.find((r) => r !== chess[0]!.region);
    if (other) expect(await fieldOf(boards.rankOf(chess[0]!.playerId, 'chess', { region: other }))).toBe('region');
    expect(await fieldOf(boards.rankOf(chess[0]!.playerId, ''))).toBe('gameId');
  });

  it('topScores bounds its input', async () => {
    for (const limit of [0, 1001, 2.5, -1]) expect(await fieldOf(boards.topScores('chess', { limit }))).toBe('limit');
    expect(await fieldOf(boards.topScores('\u0000'))).toBe('gameId');
    await expect(boards.topScores('chess', { region: 'atlantis' })).rejects.toBeInstanceOf(UnknownRegionError);
    expect(await boards.topScores("chess' OR '1'='1", { limit: 5 })).toEqual([]);
  });
});
