import type { ColumnType } from 'kysely';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Accounts,
  InvalidPlayerIdError,
  SchemaVersionError,
  ShardQueryError,
  ShardSet,
  ShardUnavailableError,
  UnknownRegionError,
  ValidationError,
  isTransientDbError,
  kWayMerge,
  validateShardMap,
  type PlayerId,
} from '../../src/index.js';
import { errorOf } from '../support/errors.js';
import { createPlayers } from '../support/players.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';

/** The app's own tables, as an app declares them for `ShardSet<AppDatabase>`. */
interface WalletsTable {
  player_id: ColumnType<PlayerId, PlayerId, never>;
  coins: ColumnType<bigint, bigint | number | undefined, bigint | number>;
}
interface AppDatabase {
  wallets: WalletsTable;
}

// A player table by the self-closure rules: player_id first in the key, its foreign key to players.
const WALLETS_DDL = `CREATE TABLE wallets (
  player_id bigint PRIMARY KEY REFERENCES players (player_id),
  coins bigint NOT NULL DEFAULT 0 CHECK (coins >= 0)
)`;

/** Nothing listens on port 1: connecting is refused at once. */
const CLOSED_PORT_URL = 'postgres://postgres@127.0.0.1:1/shardline_down';

describe.each(LAYOUTS)('typed access to the app tables (%s)', (layout) => {
  let t: TestShards;
  let shards: ShardSet<AppDatabase>;
  let byShard: Map<string, PlayerId[]>;
  /** The first player of each shard. */
  let one: Map<string, PlayerId>;

  beforeAll(async () => {
    t = await createTestShards(layout);
    for (const s of t.map.shards) await t.shardSet.pool(s.id).query(WALLETS_DDL);
    byShard = await createPlayers(t.shardSet, 2);
    one = new Map([...byShard].map(([shardId, ids]) => [shardId, ids[0]!]));
    shards = new ShardSet<AppDatabase>(t.map, { poolMax: 3 });
  });
  afterAll(async () => {
    await shards?.close();
    await t?.cleanup();
  });

  /** Coins per wallet on each shard, read with the shard's own connection (no ShardSet logic). */
  async function walletsOn(shardId: string): Promise<Map<string, bigint>> {
    const r = await t.shardSet.pool(shardId).query<{ player_id: bigint; coins: bigint }>('SELECT player_id, coins FROM wallets');
    return new Map(r.rows.map((row) => [String(row.player_id), row.coins]));
  }

  /** The same map with its last shard pointed at a closed port. */
  async function withDownShard(fn: (set: ShardSet<AppDatabase>, downId: string) => Promise<void>): Promise<void> {
    const json = structuredClone(t.mapJson) as { shards: { id: string; connection: string }[] };
    const down = json.shards.at(-1)!;
    down.connection = CLOSED_PORT_URL;
    const set = new ShardSet<AppDatabase>(validateShardMap(json, { file: '<down shard>' }), { poolMax: 2, connectionTimeoutMs: 3000 });
    try {
      await fn(set, down.id);
    } finally {
      await set.close();
    }
  }

  describe('transaction', () => {
    it("commits on the player's shard only, taking the id as a PlayerId or its decimal string", async () => {
      const [shardId, pid] = [...one][0]!;
      const value = await shards.transaction(pid, async (trx) => {
        await trx.insertInto('wallets').values({ player_id: pid, coins: 30 }).execute();
        // shardline's tables are in the same transaction, typed too.
        const p = await trx.selectFrom('players').select('nickname').where('player_id', '=', pid).executeTakeFirstOrThrow();
        return p.nickname;
      });
      expect(value).toBe('p0');
      await shards.transaction(String(pid), (trx) =>
        trx
          .updateTable('wallets')
          .set((eb) => ({ coins: eb('coins', '+', 12n) }))
          .where('player_id', '=', pid)
          .execute(),
      );
      for (const s of t.map.shards) {
        expect(await walletsOn(s.id)).toEqual(s.id === shardId ? new Map([[String(pid), 42n]]) : new Map());
      }
    });

    it('rolls back when the callback throws, and the app gets its own error back', async () => {
      const [shardId, pid] = [...one].at(-1)!;
      const before = await walletsOn(shardId);
      class AppError extends Error {}
      const err = await errorOf(
        shards.transaction(pid, async (trx) => {
          await trx
            .insertInto('wallets')
            .values({ player_id: pid, coins: 5 })
            .onConflict((oc) => oc.doNothing())
            .execute();
          await trx.updateTable('players').set({ nickname: 'renamed' }).where('player_id', '=', pid).execute();
          throw new AppError('not enough coins');
        }),
      );
      expect(err).toBeInstanceOf(AppError);
      expect(await walletsOn(shardId)).toEqual(before);
      const nick = await t.shardSet.pool(shardId).query<{ nickname: string }>('SELECT nickname FROM players WHERE player_id = $1', [String(pid)]);
      expect(nick.rows[0]?.nickname).not.toBe('renamed');
    });

    it('a constraint the database enforces is a ShardQueryError that is not transient, and nothing is written', async () => {
      const [shardId, pid] = [...one].at(-1)!;
      const before = await walletsOn(shardId);
      const err = await errorOf(
        shards.transaction(pid, async (trx) => {
          await trx
            .insertInto('wallets')
            .values({ player_id: pid, coins: 7 })
            .onConflict((oc) => oc.column('player_id').doUpdateSet({ coins: 7 }))
            .execute();
          await trx.updateTable('wallets').set({ coins: -1 }).where('player_id', '=', pid).execute(); // CHECK (coins >= 0)
        }),
      );
      expect(err).toBeInstanceOf(ShardQueryError);
      const e = err as ShardQueryError;
      expect(e.code).toBe('SHARD_QUERY_FAILED');
      expect(e.sqlState).toBe('23514');
      expect(e.transient).toBe(false);
      expect(e.shardId).toBe(shardId);
      expect(e.playerIds).toEqual([String(pid)]);
      expect(e.cause).toBeInstanceOf(pg.DatabaseError);
      expect(isTransientDbError(e)).toBe(false);
      expect(await walletsOn(shardId)).toEqual(before);
    });

    it('a lock it cannot get in time is a transient ShardQueryError: retrying the transaction is how to recover', async () => {
      const [shardId, pid] = [...one][0]!;
      const holder = await t.shardSet.pool(shardId).connect();
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT 1 FROM wallets WHERE player_id = $1 FOR UPDATE', [String(pid)]);
        const err = await errorOf(
          shards.transaction(pid, async (trx) => {
            await sql`SET LOCAL lock_timeout = '50ms'`.execute(trx);
            await trx.updateTable('wallets').set({ coins: 0 }).where('player_id', '=', pid).execute();
          }),
        );
        expect(err).toBeInstanceOf(ShardQueryError);
        expect((err as ShardQueryError).sqlState).toBe('55P03');
        expect((err as ShardQueryError).transient).toBe(true);
        expect((err as ShardQueryError).message).toMatch(/transient: retrying may succeed/);
        expect(isTransientDbError(err)).toBe(true);
      } finally {
        await holder.query('ROLLBACK');
        holder.release();
      }
      // The lock gone, the same transaction goes through.
      await shards.transaction(pid, (trx) => trx.updateTable('wallets').set({ coins: 1 }).where('player_id', '=', pid).execute());
      expect((await walletsOn(shardId)).get(String(pid))).toBe(1n);
    });

    it('a serialization failure under serializable is transient, and the retry goes through', async () => {
      const [shardId, ids] = [...byShard][0]!;
      const [a, b] = [ids[0]!, ids[1]!];
      await t.shardSet
        .pool(shardId)
        .query('INSERT INTO wallets (player_id, coins) VALUES ($1, 10), ($2, 10) ON CONFLICT (player_id) DO UPDATE SET coins = 10', [String(a), String(b)]);
      // Write skew: each reads both wallets, then raises its own; serializable lets only one commit.
      let arrived = 0;
      let release!: () => void;
      const bothRead = new Promise<void>((r) => (release = r));
      const raise = (me: PlayerId) =>
        shards.transaction(
          me,
          async (trx) => {
            await trx.selectFrom('wallets').select('coins').where('player_id', 'in', [a, b]).execute();
            if (++arrived === 2) release();
            await bothRead;
            await trx
              .updateTable('wallets')
              .set((eb) => ({ coins: eb('coins', '+', 1n) }))
              .where('player_id', '=', me)
              .execute();
          },
          { isolationLevel: 'serializable' },
        );
      const outcomes = await Promise.allSettled([raise(a), raise(b)]);
      const failed = outcomes.filter((o) => o.status === 'rejected').map((o) => o.reason as unknown);
      expect(failed).toHaveLength(1);
      expect(failed[0]).toBeInstanceOf(ShardQueryError);
      expect((failed[0] as ShardQueryError).sqlState).toBe('40001');
      expect(isTransientDbError(failed[0])).toBe(true);
      const loser = outcomes[0].status === 'rejected' ? a : b;
      await raise(loser); // alone now: the retry commits
      const w = await walletsOn(shardId);
      expect([w.get(String(a)), w.get(String(b))]).toEqual([11n, 11n]);
    });

    it('runs at the isolation level asked for, and refuses bad input before opening anything', async () => {
      const pid = [...one.values()][0]!;
      const read = await shards.transaction(
        pid,
        async (trx) => (await sql<{ transaction_isolation: string }>`SHOW transaction_isolation`.execute(trx)).rows[0]?.transaction_isolation,
        { isolationLevel: 'serializable', accessMode: 'read only' },
      );
      expect(read).toBe('serializable');
      const ro = await errorOf(shards.transaction(pid, (trx) => trx.updateTable('wallets').set({ coins: 2 }).execute(), { accessMode: 'read only' }));
      expect((ro as ShardQueryError).sqlState).toBe('25006'); // read_only_sql_transaction

      expect(await errorOf(shards.transaction('12abc', async () => 1))).toBeInstanceOf(InvalidPlayerIdError);
      const badLevel = await errorOf(shards.transaction(pid, async () => 1, { isolationLevel: 'snapshot' as 'serializable' }));
      expect(badLevel).toBeInstanceOf(ValidationError);
      expect((badLevel as ValidationError).field).toBe('options.isolationLevel');
      const unknown = await errorOf(shards.transaction(pid, async () => 1, { isolation: 'serializable' } as object));
      expect((unknown as ValidationError).field).toBe('options.isolation');
    });

    it('a shard that cannot be reached is ShardUnavailableError naming the player', () =>
      withDownShard(async (set, downId) => {
        const pid = one.get(downId)!;
        let ran = false;
        const err = await errorOf(
          set.transaction(pid, async () => {
            ran = true;
          }),
        );
        expect(ran).toBe(false);
        expect(err).toBeInstanceOf(ShardUnavailableError);
        expect((err as ShardUnavailableError).shardId).toBe(downId);
        expect((err as ShardUnavailableError).playerIds).toEqual([String(pid)]);
        expect((err as ShardUnavailableError).transient).toBe(true);
        expect(isTransientDbError(err)).toBe(true);
      }));

    it('refuses a shard whose schema is not this code’s, before the callback runs', async () => {
      const shardId = t.map.shards.at(-1)!.id;
      const owner = t.shardSet.pool(shardId);
      await owner.query(`INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('9999_from_the_future.ts', 999, now())`);
      const fresh = new ShardSet<AppDatabase>(t.map, { poolMax: 1 });
      try {
        let ran = false;
        const err = await errorOf(
          fresh.transaction(one.get(shardId)!, async () => {
            ran = true;
          }),
        );
        expect(err).toBeInstanceOf(SchemaVersionError);
        expect((err as SchemaVersionError).applied).toBe('9999_from_the_future');
        expect(ran).toBe(false);
        // The scatter and the plain db() check the same way.
        expect(await errorOf(fresh.scatter(async () => 1, { partial: true }))).toBeInstanceOf(SchemaVersionError);
      } finally {
        await fresh.close();
        await owner.query(`DELETE FROM knex_migrations WHERE name = '9999_from_the_future.ts'`);
      }
    });
  });

  describe('scatter', () => {
    it('runs on every shard and resolves in map order, each with its shard', async () => {
      const r = await shards.scatter(async (db, shard) => {
        const rows = await db.selectFrom('players').select('player_id').orderBy('player_id').execute();
        return { region: shard.region, ids: rows.map((x) => x.player_id) };
      });
      expect(r.unavailable).toEqual([]);
      expect(r.results.map((x) => x.shardId)).toEqual(t.map.shards.map((s) => s.id));
      for (const { shardId, value } of r.results) {
        expect(value.region).toBe(t.map.shards.find((s) => s.id === shardId)!.region);
        expect(value.ids).toEqual([...byShard.get(shardId)!].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
      }
    });

    it('keeps to a region, and refuses one the map does not have', async () => {
      const region = t.map.regions[0]!.name;
      const r = await shards.scatter(async (_db, shard) => shard.region, { region });
      expect(r.results.map((x) => x.shardId)).toEqual(t.map.shards.filter((s) => s.region === region).map((s) => s.id));
      expect(r.results.every((x) => x.value === region)).toBe(true);
      expect(await errorOf(shards.scatter(async () => 1, { region: 'atlantis' }))).toBeInstanceOf(UnknownRegionError);
      expect(((await errorOf(shards.scatter(async () => 1, { partial: 'yes' as unknown as boolean }))) as ValidationError).field).toBe('options.partial');
      expect(((await errorOf(shards.scatter(async () => 1, { regions: ['x'] } as object))) as ValidationError).field).toBe('options.regions');
    });

    it('feeds an ordered cross-shard list through kWayMerge', async () => {
      const r = await shards.scatter((db) => db.selectFrom('players').select(['player_id', 'nickname']).orderBy('player_id', 'desc').limit(3).execute());
      const newest = kWayMerge(
        r.results.map((x) => x.value),
        (a, b) => (a.player_id > b.player_id ? -1 : a.player_id < b.player_id ? 1 : 0),
        3,
      );
      const all = [...byShard.values()].flat().sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
      expect(newest.map((p) => p.player_id)).toEqual(all.slice(0, 3));
    });

    it('a shard down throws ShardUnavailableError, or with partial is listed under unavailable', () =>
      withDownShard(async (set, downId) => {
        const count = (db: Awaited<ReturnType<typeof set.db>>) =>
          db
            .selectFrom('wallets')
            .select((eb) => eb.fn.countAll<string>().as('n'))
            .executeTakeFirstOrThrow();
        const err = await errorOf(set.scatter(count));
        expect(err).toBeInstanceOf(ShardUnavailableError);
        expect((err as ShardUnavailableError).shardId).toBe(downId);

        const r = await set.scatter(count, { partial: true });
        expect(r.results.map((x) => x.shardId)).toEqual(t.map.shards.filter((s) => s.id !== downId).map((s) => s.id));
        expect(r.unavailable.map((u) => u.shardId)).toEqual([downId]);
        expect(r.unavailable[0]!.error).toBeInstanceOf(ShardUnavailableError);

        // A failure that is not an outage is never half-answered, partial or not: even beside a down shard.
        const up = t.map.shards.find((s) => s.id !== downId);
        for (const set2 of up ? [set, shards] : [shards]) {
          const failing = up?.id ?? t.map.shards[0]!.id;
          const broken = await errorOf(
            set2.scatter(async (db, shard) => (shard.id === failing ? sql`SELECT * FROM no_such_table`.execute(db) : null), { partial: true }),
          );
          expect(broken).toBeInstanceOf(ShardQueryError);
          expect((broken as ShardQueryError).sqlState).toBe('42P01');
          expect((broken as ShardQueryError).shardId).toBe(failing);
        }
      }));
  });

  it("shardline's own classes take the typed ShardSet", async () => {
    const accounts = new Accounts(shards);
    const p = await accounts.createPlayer({ region: t.map.regions[0]!.name, nickname: 'typed' });
    expect((await accounts.getPlayer(p.id)).nickname).toBe('typed');
  });
});
