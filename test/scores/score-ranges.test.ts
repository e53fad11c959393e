import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Leaderboards, type PlayerId } from '../../src/index.js';
import { scoreRange, scoreRangeHi } from '../../src/scores/leaderboards.js';
import { createTestShards, type TestShards } from '../support/shards.js';

/**
 * rankOf computes each player's count range in TypeScript and passes it to the statement, while the
 * counts are kept by the SQL function shardline_score_range (migration 0012): the two must agree
 * on every score, or a rank would count a range twice or miss one.
 */
describe('score ranges', () => {
  let t: TestShards;
  let boards: Leaderboards;

  beforeAll(async () => {
    t = await createTestShards('several-shards');
    boards = new Leaderboards(t.shardSet);
  });
  afterAll(() => t?.cleanup());

  it('scoreRange and scoreRangeHi are shardline_score_range and shardline_score_range_hi', async () => {
    const scores = new Set<bigint>();
    for (let b = 0n; b < 63n; b++) {
      for (const d of [-1n, 0n, 1n]) {
        scores.add((1n << b) + d);
        scores.add(-((1n << b) + d));
      }
    }
    for (const s of [
      0n,
      127n,
      128n,
      -127n,
      -128n,
      129n,
      255n,
      256n,
      1000n,
      -1000n,
      999_999n,
      4_611_686_018_427_387_903n,
      -4_611_686_018_427_387_903n,
      9_223_372_036_854_775_807n,
      -9_223_372_036_854_775_807n,
    ]) {
      scores.add(s);
    }
    for (let i = 0; i < 300; i++) scores.add(BigInt(Math.floor((Math.random() - 0.5) * 2 ** 52)));
    // Every bigint but the lowest (abs() of it overflows): migration 0013 made the top ranges' hi exact.
    const list = [...scores].filter((s) => s > -(1n << 63n) && s < 1n << 63n);
    const r = await t.shardSet
      .pool(t.shardSet.shards[0]!.id)
      .query<{ s: bigint; r: bigint; hi: bigint }>(
        `SELECT s, shardline_score_range(s) AS r, shardline_score_range_hi(shardline_score_range(s)) AS hi FROM unnest($1::bigint[]) AS s`,
        [list.map(String)],
      );
    expect(r.rows).toHaveLength(list.length);
    for (const row of r.rows) {
      expect(scoreRange(row.s), String(row.s)).toBe(row.r);
      expect(scoreRangeHi(scoreRange(row.s)), String(row.s)).toBe(row.hi);
    }
  });

  it('rankOf and around are exact over scores that span many ranges, negative ones too', async () => {
    const baseMs = Date.now() - 1_704_067_200_000 - 86_400_000;
    await Promise.all(
      t.shardSet.shards.map(async (s) => {
        const [lo, hi] = s.buckets[0]!;
        const pool = t.shardSet.pool(s.id);
        await pool.query(
          `INSERT INTO players (player_id, region, nickname)
           SELECT (($1::bigint + g / $3 / 1024) << 22) | (($2::bigint + g % $3) << 10) | ((g / $3) % 1024), $4, $4 || ' #' || g
           FROM generate_series(0, 59) AS g`,
          [baseMs, lo, hi - lo + 1, s.region],
        );
        // Scores from -2^20 to 2^20, clustered at range edges (powers of two, and ties there).
        await pool.query(
          `INSERT INTO player_stats (player_id, game_id, score)
           SELECT player_id, 'wide', CASE WHEN random() < 0.5 THEN (floor(random() * 2097152) - 1048576)::bigint
             ELSE (CASE WHEN random() < 0.5 THEN -1 ELSE 1 END) * ((1::bigint << floor(random() * 20)::int) + floor(random() * 3)::bigint - 1) END
           FROM players`,
        );
      }),
    );
    const all: { playerId: PlayerId; score: bigint }[] = [];
    for (const s of t.shardSet.shards) {
      const r = await t.shardSet.pool(s.id).query<{ player_id: PlayerId; score: bigint }>(`SELECT player_id, score FROM player_stats WHERE game_id = 'wide'`);
      all.push(...r.rows.map((x) => ({ playerId: x.player_id, score: x.score })));
    }
    all.sort((a, b) => (a.score !== b.score ? (b.score > a.score ? 1 : -1) : a.playerId < b.playerId ? -1 : 1));
    await boards.rankOf(all[0]!.playerId, 'wide'); // first-use checks
    for (const [i, row] of all.entries()) {
      expect((await boards.rankOf(row.playerId, 'wide'))?.rank, String(row.score)).toBe(i + 1);
    }
    for (const i of [0, 1, Math.floor(all.length / 2), all.length - 1]) {
      const near = await boards.around(all[i]!.playerId, 'wide', { above: 3, below: 3 });
      const from = Math.max(0, i - 3);
      expect(near?.map((e) => [e.rank, e.playerId])).toEqual(all.slice(from, i + 4).map((e, j) => [from + j + 1, e.playerId]));
    }
  });
  it('reads on the primary go out as named statements, each text under one name', async () => {
    const shard = t.shardSet.shards[0]!;
    const sent: { name: string | undefined; text: string }[] = [];
    t.shardSet.pool(shard.id).on('acquire', (client: pg.PoolClient & { watched?: true }) => {
      if (client.watched) return;
      client.watched = true;
      const query = client.query.bind(client) as (...a: unknown[]) => unknown;
      (client as { query: unknown }).query = (...a: unknown[]) => {
        const first = a[0] as string | { name?: string; text: string };
        sent.push(typeof first === 'string' ? { name: undefined, text: first } : { name: first.name, text: first.text });
        return query(...a);
      };
    });
    const [someone] = (await t.shardSet.pool(shard.id).query<{ player_id: PlayerId }>(`SELECT player_id FROM player_stats WHERE game_id = 'wide' LIMIT 1`))
      .rows;
    for (let i = 0; i < 3; i++) {
      await boards.topScores('wide', { limit: 20 });
      await boards.rankOf(someone!.player_id, 'wide');
      await boards.around(someone!.player_id, 'wide');
    }
    const reads = sent.filter((s) => /leaderboard_scores/.test(s.text));
    expect(reads.length).toBeGreaterThanOrEqual(9);
    expect(reads.filter((s) => s.name === undefined)).toEqual([]);
    const names = new Map<string, string>();
    for (const s of reads) {
      expect(names.get(s.name!) ?? s.text).toBe(s.text);
      names.set(s.name!, s.text);
    }
    // One name per text too: the top slice (and its full re-read when asked), the player's score, the rank count, around's statement.
    expect(names.size).toBe(new Set(reads.map((s) => s.text)).size);
    expect(names.size).toBeGreaterThanOrEqual(4);
  });
});
