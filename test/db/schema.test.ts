import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { createTestShards, type TestShards } from '../support/shards.js';

/**
 * Tables that are not part of any player's record set: shard identity, migration bookkeeping, queues,
 * the login directory `identities` (keyed by bucket, not player: see migrations/0008), bucket moves
 * (0010), and the leaderboards' per-shard definitions and counts (0012).
 */
const NON_PLAYER_TABLES =
  /^(shardline_meta|knex_migrations|knex_migrations_lock|shardline_app_migrations|shardline_app_migrations_lock|settlement_inbox.*|identities|shardline_moves|leaderboard_(boards|seasons|counts|count_deltas))$/;

let t: TestShards;
beforeAll(async () => {
  t = await createTestShards('one-shard');
});
afterAll(() => t.cleanup());

describe('the self-closed schema', () => {
  it('has player_id in the primary key of every player table', async () => {
    const db = await t.shardSet.db('sz-1');
    const rows = await sql<{ table_name: string; pk_columns: string[] }>`
      SELECT tc.table_name, array_agg(kcu.column_name::text) AS pk_columns
      FROM information_schema.table_constraints tc
      JOIN information_schema.key_column_usage kcu
        ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
      WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY'
      GROUP BY tc.table_name`.execute(db);
    const tables = await sql<{ table_name: string }>`
      SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`.execute(db);
    const playerTables = tables.rows.map((r) => r.table_name).filter((n) => !NON_PLAYER_TABLES.test(n));
    expect(playerTables).toEqual(expect.arrayContaining(['players', 'player_stats', 'settlement_ledger']));
    for (const table of playerTables) {
      const pk = rows.rows.find((r) => r.table_name === table)?.pk_columns ?? [];
      expect({ table, hasPlayerIdInPk: pk.includes('player_id') }).toEqual({ table, hasPlayerIdInPk: true });
    }
  });

  it("has no foreign key that leaves a player's own rows", async () => {
    const db = await t.shardSet.db('sz-1');
    const fks = await sql<{ table_name: string; column_name: string; foreign_table: string; foreign_column: string }>`
      SELECT kcu.table_name, kcu.column_name, ccu.table_name AS foreign_table, ccu.column_name AS foreign_column
      FROM information_schema.table_constraints tc
      JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name
      JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name
      WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = 'public'`.execute(db);
    expect(fks.rows.length).toBeGreaterThan(0);
    for (const fk of fks.rows.filter((r) => !NON_PLAYER_TABLES.test(r.table_name))) {
      // Every reference is "this row's player_id -> the same player's row": never to another player.
      expect(fk).toMatchObject({ column_name: 'player_id', foreign_table: 'players', foreign_column: 'player_id' });
    }
  });

  it('has the leaderboard index (game, score descending)', async () => {
    const db = await t.shardSet.db('sz-1');
    const idx = await sql<{ indexdef: string }>`SELECT indexdef FROM pg_indexes WHERE tablename = 'player_stats'`.execute(db);
    expect(idx.rows.map((r) => r.indexdef).join('\n')).toMatch(/\(game_id, score DESC, player_id\)/);
  });

  it('generates collision-free ids from the shard sequence under concurrent inserts', async () => {
    const pool = t.shardSet.pool('sz-1');
    // Far more than 1024 per millisecond: the clock borrows the next millisecond instead of repeating.
    const batches = await Promise.all(
      Array.from({ length: 5 }, () => pool.query<{ id: bigint }>(`SELECT shardline_player_id(7) AS id FROM generate_series(1, 2000)`)),
    );
    const ids = batches.flatMap((b) => b.rows.map((r) => r.id));
    expect(new Set(ids).size).toBe(10_000);
    for (const id of ids) expect(t.shardSet.router.shardFor(id as never).id).toBe('sz-1');
    // Within one session the ids only go up.
    for (const b of batches) {
      const own = b.rows.map((r) => r.id);
      expect(own.every((id, i) => i === 0 || id > own[i - 1]!)).toBe(true);
    }
  });

  it('releases the id lock when a call is cancelled, so id creation goes on', async () => {
    const pool = t.shardSet.pool('sz-1');
    const holder = await pool.connect();
    const waiter = await pool.connect();
    try {
      await holder.query(`SELECT pg_advisory_lock(hashtext('shardline:player_id'))`);
      await waiter.query(`SET statement_timeout = 200`);
      await expect(waiter.query(`SELECT shardline_player_id(1)`)).rejects.toMatchObject({ code: '57014' });
      await holder.query(`SELECT pg_advisory_unlock(hashtext('shardline:player_id'))`);
      const r = await waiter.query<{ id: bigint }>(`SELECT shardline_player_id(1) AS id`);
      expect(typeof r.rows[0]?.id).toBe('bigint');
      const other = await holder.query<{ id: bigint }>(`SELECT shardline_player_id(1) AS id`);
      expect(other.rows[0]!.id > r.rows[0]!.id).toBe(true);
    } finally {
      await waiter.query(`RESET statement_timeout`).catch(() => undefined);
      holder.release();
      waiter.release();
    }
  });
});
