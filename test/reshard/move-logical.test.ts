import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { listMoves, moveBuckets, verifyBuckets } from '../../src/reshard/index.js';
import { runCli } from '../support/cli.js';
import { writeMapFile } from '../support/maps.js';
import { seedBuckets } from './move-support.js';
import { createLogicalShards } from './move-support-logical.js';

type Shards = Awaited<ReturnType<typeof createLogicalShards>>;

describe('logical-mode bucket moves between two servers with wal_level=logical', { timeout: 240_000 }, () => {
  let s: Shards;
  beforeAll(async () => {
    s = await createLogicalShards();
    await seedBuckets(s, 300, 331, 20);
  }, 180_000);
  afterAll(async () => {
    await s?.cleanup();
  });

  it('copies by a row-filtered subscription while writes go on, cuts over once, and leaves no slot, publication or subscription', async () => {
    // A writer bumping stats in the moving buckets until its writes are refused there (the fence).
    const writer = new pg.Client({ connectionString: s.urls[0] });
    writer.on('error', () => undefined);
    await writer.connect();
    const ids = (
      await s.query<{ id: string }>(0, `SELECT player_id::text AS id FROM players WHERE ((player_id >> 10) & 4095) BETWEEN 300 AND 315 ORDER BY 1 LIMIT 50`)
    ).map((r) => r.id);
    let accepted = 0;
    let refused = 0;
    let stop = false;
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        try {
          await writer.query(`UPDATE player_stats SET score = score + 1 WHERE player_id = $1 AND game_id = 'chess'`, [ids[i % ids.length]]);
          accepted++;
        } catch (err) {
          if ((err as { code?: string }).code !== '23514') throw err;
          refused++;
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    })();
    const states: string[] = [];
    const report = await moveBuckets({
      map: s.map,
      range: [300, 315],
      to: 'sz-2',
      mode: 'logical',
      purge: 'never',
      onState: (st) => void states.push(st),
    }).finally(() => (stop = true));
    await loop;
    await writer.end();
    expect(report.state).toBe('moved');
    expect(states).toEqual(['planned-on-target', 'planned', 'copying', 'synced', 'fenced', 'copied', 'verified', 'cleaned', 'switched', 'copying', 'moved']);
    expect(accepted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
    // Every accepted write is on the target: the two copies are equal (the source's is frozen forever now).
    expect((await verifyBuckets(s.map, [300, 315])).ok).toBe(true);
    const [sum] = await s.query<{ n: string }>(1, `SELECT sum(score)::text AS n FROM player_stats WHERE ((player_id >> 10) & 4095) BETWEEN 300 AND 315`);
    const [src] = await s.query<{ n: string }>(0, `SELECT sum(score)::text AS n FROM player_stats WHERE ((player_id >> 10) & 4095) BETWEEN 300 AND 315`);
    expect(sum).toEqual(src);
    // The apply worker fires no triggers: the target's plain board rows were rebuilt before the commit point.
    const board = `SELECT count(*)::text AS n, sum(score)::text AS s FROM leaderboard_scores WHERE period = '' AND ((player_id >> 10) & 4095) BETWEEN 300 AND 315`;
    expect(await s.query(1, board)).toEqual(await s.query(0, board));
    expect((await s.query<{ n: string }>(1, board))[0]?.n).not.toBe('0');
    expect(await s.query(0, `SELECT slot_name FROM pg_replication_slots`)).toEqual([]);
    expect(await s.query(0, `SELECT pubname FROM pg_publication`)).toEqual([]);
    expect(await s.query(1, `SELECT subname FROM pg_subscription`)).toEqual([]);
    const [m] = await listMoves(s.map);
    expect(m).toMatchObject({ mode: 'logical', state: 'moved', artifacts: { publication: `shardline_mv_${report.id}`, slot: `shardline_mv_${report.id}` } });
    expect(report.freezes).toHaveLength(1);
  });

  it('shards check exits 1 on a shardline_mv_ slot and publication no move owns, naming the WAL the slot holds', async () => {
    const mapFile = writeMapFile(s.mapJson);
    expect((await runCli(['shards', 'check', '--map', mapFile])).stderr).not.toMatch(/belongs to no active move/);
    await s.query(0, `SELECT pg_create_logical_replication_slot('shardline_mv_orphan', 'pgoutput')`);
    await s.query(0, `CREATE PUBLICATION shardline_mv_orphan FOR TABLE players`);
    try {
      const check = await runCli(['shards', 'check', '--map', mapFile]);
      expect(check.code).toBe(1);
      expect(check.stderr).toMatch(/sz-1: replication slot shardline_mv_orphan belongs to no active move, holding back [\d.]+ MB of WAL/);
      expect(check.stderr).toMatch(/sz-1: replication publication shardline_mv_orphan belongs to no active move/);
    } finally {
      await s.query(0, `SELECT pg_drop_replication_slot('shardline_mv_orphan')`);
      await s.query(0, `DROP PUBLICATION shardline_mv_orphan`);
    }
  });
});
