import { fileURLToPath } from 'node:url';
import { sql, type Transaction } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Accounts } from '../../src/accounts/index.js';
import { ShardSet, type ShardDatabase } from '../../src/db/index.js';
import { migrateShards } from '../../src/migrate/index.js';
import { moveBuckets, purgeMove } from '../../src/reshard/index.js';
import type { PlayerId } from '../../src/routing/index.js';
import { Leaderboards } from '../../src/scores/index.js';
import { SettlementClient, SettlementWorker, type AppliedResult, type SettlementInput } from '../../src/settlement/index.js';
import { forwardMovedParts } from '../../src/settlement/forwarding.js';
import { uniqueName } from '../support/env.js';
import { sleep, waitFor } from '../support/wait.js';
import { deleteKeys, redisOptions, silent, testPrefix } from '../settlement/helpers.js';
import { createForwardShards, playerInBucket, type ForwardShards } from './settlement-support.js';

/**
 * A bucket move under continuous load (RESHARDING.md §4.3): submissions with an effect writing an
 * app table, new players with identities, profile updates and a worker, all running while
 * moveBuckets (freeze mode, CI's PostgreSQL) moves ranges between the shards (the first to a shard
 * that started empty). The checker, after each move: per player, stats = Σ ledger = the results
 * accepted, and the wallet the effect writes = Σ coins accepted (0 lost, 0 doubled); no player on two
 * shards after the purge; every player read once, with its last nickname; leaderboards equal an
 * oracle computed from the accepted results, in the middle of the first move (between batches),
 * between its commit and its purge, and after. test/reshard/move-under-load.test.ts runs it short,
 * test/soak/move-under-load.test.ts long.
 */
export interface MoveLoadOptions {
  /** Players seeded on sz-1 before the load, a third of them in the first move's range. */
  seeds: number;
  /** Moves in order, each purged before the next; shard 0 is sz-1, 1 is sz-2 (empty at first). */
  moves: { range: [number, number]; from: 0 | 1; to: 0 | 1 }[];
  batchBuckets: number;
  /** Load alone before each move, after its commit (before the purge), and around its purge (ms). */
  beforeMs: number;
  afterMs: number;
  purgeMs: number;
  /** The first move's mid-move check runs once this many batches switched. */
  midCheckAt: number;
  timeoutMs: number;
}

const GOOD = fileURLToPath(new URL('../fixtures/app-migrations/good/', import.meta.url));
const GAME = 'coins';
const SHARDS = ['sz-1', 'sz-2'] as const;

interface WalletsTable {
  player_id: bigint;
  coins: bigint;
}
type App = { wallets: WalletsTable };

async function creditWallets(trx: Transaction<ShardDatabase & App>, applied: readonly AppliedResult<{ coins: number }>[]): Promise<void> {
  const sums = new Map<string, number>();
  for (const r of applied) sums.set(r.playerId.toString(), (sums.get(r.playerId.toString()) ?? 0) + (r.data?.coins ?? 0));
  const ids = [...sums.keys()].sort((a, b) => a.length - b.length || (a < b ? -1 : 1));
  await sql`
    INSERT INTO wallets AS w (player_id, coins)
    SELECT * FROM unnest(${ids}::bigint[], ${ids.map((id) => sums.get(id))}::bigint[])
    ON CONFLICT (player_id) DO UPDATE SET coins = w.coins + EXCLUDED.coins`.execute(trx);
}

interface Expected {
  score: number;
  games: number;
  coins: number;
}

export function describeMoveUnderLoad(title: string, o: MoveLoadOptions): void {
  describe(title, () => {
    const first = o.moves[0] as MoveLoadOptions['moves'][number];
    const [flo, fhi] = first.range;
    const span = fhi - flo + 1;
    let s: ForwardShards;
    let shards: ShardSet<App>;
    let workerShards: ShardSet<App>;
    let client: SettlementClient;
    let worker: SettlementWorker<App>;
    let accounts: Accounts;
    let boards: Leaderboards;
    const prefix = testPrefix();
    const pool: bigint[] = [];
    const accepted: SettlementInput[] = [];
    const nickname = new Map<string, string>();
    const identities = new Map<string, bigint>();
    const errors: string[] = [];

    beforeAll(async () => {
      s = await createForwardShards();
      await migrateShards(s.map.shards, 'latest', { appMigrations: GOOD });
      // Players on sz-1, a third of them in the range that moves first.
      const outside = (b: number) => (b < flo ? b : b + span);
      const seeds = Array.from({ length: o.seeds }, (_, i) =>
        playerInBucket(i % 3 === 0 ? flo + ((i * 7) % span) : outside((i * 13) % (4096 - span)), 400_000 + i),
      );
      await s.query(0, `INSERT INTO players (player_id, region, nickname) SELECT id, 'shenzhen', 'p' || id FROM unnest($1::bigint[]) id`, [seeds.map(String)]);
      for (const id of seeds) {
        pool.push(id);
        nickname.set(String(id), `p${id}`);
      }
      shards = new ShardSet<App>(s.map, { poolMax: 6, appMigrations: GOOD, routingRefreshMs: 500, logger: silent });
      workerShards = new ShardSet<App>(s.map, { poolMax: 6, appMigrations: GOOD, routingRefreshMs: 500, logger: silent });
      client = new SettlementClient({
        shards,
        connection: redisOptions(),
        prefix,
        logger: silent,
        games: { [GAME]: { data: z.strictObject({ coins: z.number().int().min(0) }) } },
      });
      worker = new SettlementWorker<App>({
        shards: workerShards,
        connection: redisOptions(),
        prefix,
        logger: silent,
        effects: { [GAME]: creditWallets },
        concurrency: 32,
        batchSize: 16,
        lingerMs: 2,
        reconcileIntervalMs: 1000,
        reconcileAfterMs: 2000,
      });
      accounts = new Accounts(shards);
      boards = new Leaderboards(shards);
      await worker.start();
    });
    afterAll(async () => {
      await worker?.stop(5000);
      await client?.close();
      await shards?.close();
      await workerShards?.close();
      await deleteKeys(prefix);
      await s?.cleanup();
    });

    // ---- the load ------------------------------------------------------------------------------

    let running = false;
    let loops: Promise<void>[] = [];
    let seq = 0;
    const pick = () => pool[Math.floor(Math.random() * pool.length)] as bigint;

    async function submitLoop(): Promise<void> {
      while (running) {
        const ids = new Set<bigint>();
        const size = 2 + Math.floor(Math.random() * 3);
        while (ids.size < size) ids.add(pick());
        const m: SettlementInput = {
          matchId: uniqueName('load'),
          gameId: GAME,
          endedAt: new Date('2026-05-01T00:00:00.000Z'),
          results: [...ids].map((id, i) => ({
            playerId: id.toString(),
            scoreDelta: 1 + Math.floor(Math.random() * 50),
            outcome: i === 0 ? 'win' : 'loss',
            data: { coins: Math.floor(Math.random() * 10) },
          })),
        };
        // The same content again is idempotent: an error with an unknown outcome is retried until answered.
        for (let attempt = 1; ; attempt++) {
          try {
            await client.submitSettlement(m);
            accepted.push(m);
            break;
          } catch (err) {
            if (attempt >= 5) {
              errors.push(`submit ${m.matchId}: ${(err as Error).message}`);
              break;
            }
            await sleep(100);
          }
        }
      }
    }

    /**
     * What an app does with an error marked transient (a deadlock, a timeout): the same call again,
     * which is safe here (createPlayer carries a requestId, updateProfile sets a value). Counted.
     */
    const transientRetries: string[] = [];
    async function retryTransient<T>(fn: () => Promise<T>): Promise<T> {
      for (let attempt = 1; ; attempt++) {
        try {
          return await fn();
        } catch (err) {
          if ((err as { transient?: unknown }).transient !== true || attempt >= 5) throw err;
          transientRetries.push((err as Error).message);
          await sleep(50 * attempt);
        }
      }
    }

    async function newPlayerLoop(): Promise<void> {
      while (running) {
        const subject = uniqueName('steam');
        try {
          const nick = `n${++seq}`;
          const p = await retryTransient(() =>
            accounts.createPlayer({ region: 'shenzhen', nickname: nick, identity: { provider: 'steam', subject }, requestId: subject }),
          );
          pool.push(p.id);
          nickname.set(String(p.id), p.nickname);
          identities.set(subject, p.id);
        } catch (err) {
          errors.push(`createPlayer: ${(err as Error).message}`);
        }
        await sleep(5);
      }
    }

    async function profileLoop(): Promise<void> {
      while (running) {
        const id = pick();
        const name = `u${++seq}`;
        try {
          await retryTransient(() => accounts.updateProfile(String(id), { nickname: name }));
          nickname.set(String(id), name);
        } catch (err) {
          errors.push(`updateProfile ${id}: ${(err as Error).message}`);
        }
        await sleep(2);
      }
    }

    function startLoad(): void {
      running = true;
      loops = [submitLoop(), submitLoop(), submitLoop(), newPlayerLoop(), profileLoop()];
    }

    async function stopLoad(): Promise<void> {
      running = false;
      await Promise.all(loops);
    }

    // ---- the checker ---------------------------------------------------------------------------

    function expected(): Map<string, Expected> {
      const out = new Map<string, Expected>();
      for (const m of accepted) {
        for (const r of m.results) {
          const k = String(r.playerId);
          const e = out.get(k) ?? { score: 0, games: 0, coins: 0 };
          e.score += r.scoreDelta;
          e.games += 1;
          e.coins += (r.data as { coins: number }).coins;
          out.set(k, e);
        }
      }
      return out;
    }

    /** Every accepted match applied: nothing pending or failed anywhere, and the ledger holds every accepted result. */
    async function drained(): Promise<void> {
      const want = accepted.reduce((n, m) => n + m.results.length, 0);
      await waitFor(
        'every accepted result applied',
        async () => {
          let pending = 0;
          let failed = 0;
          for (const i of [0, 1]) {
            const r = await s.query<{ pending: number; failed: number }>(
              i,
              `SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending, count(*) FILTER (WHERE status = 'failed')::int AS failed FROM settlement_inbox`,
            );
            pending += r[0]?.pending ?? 0;
            failed += r[0]?.failed ?? 0;
          }
          if (failed > 0) throw new Error(`${failed} parts failed`);
          if (pending > 0) return false;
          const rows = await ownedRows<{ n: number }>(
            `SELECT count(*)::int AS n FROM settlement_ledger l WHERE ${OWNED('l.player_id')} AND l.game_id = '${GAME}'`,
          );
          return rows.reduce((n, r) => n + r.n, 0) === want;
        },
        30_000,
        100,
      );
    }

    /** A player table's rows in the buckets each shard's own record says it owns (each player once). */
    const OWNED = (col: string) =>
      `EXISTS (SELECT 1 FROM jsonb_array_elements((SELECT value FROM shardline_meta WHERE key = 'ownership')->'owned') o
             WHERE ((${col} >> 10) & 4095) BETWEEN (o->>0)::int AND (o->>1)::int)`;

    async function ownedRows<T extends Record<string, unknown>>(query: string): Promise<T[]> {
      return (await Promise.all([0, 1].map((i) => s.query<T>(i, query)))).flat();
    }

    /** The leaderboard order over the expected totals: score descending, then player id ascending. */
    function oracle(): { id: string; score: number }[] {
      return [...expected()]
        .map(([id, e]) => ({ id, score: e.score }))
        .sort((a, b) => b.score - a.score || a.id.length - b.id.length || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    }

    /**
     * Routing read now. Two records read while a batch cuts over can disagree for a moment (one read
     * before the source froze the batch, the other after the target committed it): tried again.
     */
    async function refreshed(): Promise<void> {
      for (let attempt = 1; ; attempt++) {
        try {
          await shards.refreshRouting();
          return;
        } catch (err) {
          if (attempt >= 5) throw err;
          await sleep(100);
        }
      }
    }

    async function leaderboardsMatch(): Promise<void> {
      // Reads follow routing at most one refresh old: results applied on the new owner after a batch
      // committed are seen once the reader knows of that commit, so it learns of every commit made
      // before the drain (later batches were copied after their last write, and read the same on both).
      await refreshed();
      const order = oracle();
      const top = await boards.topScores(GAME, { limit: 50 });
      const got = top.map((e) => `${e.rank} ${String(e.playerId)} ${Number(e.score)}`);
      const exp = order.slice(0, 50).map((o, i) => `${i + 1} ${o.id} ${o.score}`);
      if (got.join() !== exp.join()) {
        const ids = [...new Set([...top.map((e) => String(e.playerId)), ...order.slice(0, 50).map((o) => o.id)])];
        const dump = await Promise.all(
          [0, 1].map((i) =>
            s.query(
              i,
              `SELECT $2::int AS shard, l.player_id::text, l.score::text, l.active, ((l.player_id >> 10) & 4095) AS b, (SELECT score::text FROM player_stats p WHERE p.player_id = l.player_id AND game_id = '${GAME}') AS stats FROM leaderboard_scores l WHERE l.player_id = ANY($1::bigint[]) AND board_id = '${GAME}'`,
              [ids, i],
            ),
          ),
        );
        console.log('leaderboard mismatch', JSON.stringify({ got, exp, dump, routing: shards.ownedBuckets('sz-1'), t: shards.ownedBuckets('sz-2') }, null, 1));
      }
      expect(top.map((e) => [e.rank, String(e.playerId), Number(e.score)])).toEqual(order.slice(0, 50).map((o, i) => [i + 1, o.id, o.score]));
      const sample = Array.from({ length: 25 }, () => order[Math.floor(Math.random() * order.length)] as { id: string; score: number });
      for (const o of sample) {
        const r = await boards.rankOf(o.id, GAME);
        expect([String(r?.playerId), Number(r?.score), r?.rank]).toEqual([o.id, o.score, order.findIndex((x) => x.id === o.id) + 1]);
      }
    }

    async function everyPlayerReadOnce(): Promise<void> {
      const ids = [...pool];
      for (let i = 0; i < ids.length; i += 500) {
        const chunk = ids.slice(i, i + 500);
        const got = await accounts.getPlayers(chunk as PlayerId[]);
        expect(got.missing).toEqual([]);
        expect(got.players.map((p) => String(p.id))).toEqual(chunk.map(String));
        for (const p of got.players) expect([String(p.id), p.nickname]).toEqual([String(p.id), nickname.get(String(p.id))]);
      }
    }

    async function finalCheck(): Promise<void> {
      const want = expected();
      // No player on two shards, and every player somewhere.
      const [on0, on1] = await Promise.all([0, 1].map((i) => s.query<{ id: string }>(i, `SELECT player_id::text AS id FROM players`)));
      const set0 = new Set(on0?.map((r) => r.id));
      expect(on1?.filter((r) => set0.has(r.id))).toEqual([]);
      expect(set0.size + (on1?.length ?? 0)).toBe(pool.length);
      // Per player: stats = Σ ledger = accepted results; wallet = Σ coins accepted.
      const stats = await ownedRows<{ id: string; score: string; games: number }>(
        `SELECT player_id::text AS id, score::text, games_played AS games FROM player_stats WHERE game_id = '${GAME}'`,
      );
      const ledger = await ownedRows<{ id: string; score: string; games: number }>(
        `SELECT player_id::text AS id, sum(score_delta)::text AS score, count(*)::int AS games FROM settlement_ledger WHERE game_id = '${GAME}' GROUP BY player_id`,
      );
      const wallets = await ownedRows<{ id: string; coins: string }>(`SELECT player_id::text AS id, coins::text FROM wallets`);
      const fromStats = new Map(stats.map((r) => [r.id, [Number(r.score), r.games]]));
      const fromLedger = new Map(ledger.map((r) => [r.id, [Number(r.score), r.games]]));
      const wanted = new Map([...want].map(([id, e]) => [id, [e.score, e.games]]));
      expect(fromStats).toEqual(wanted);
      expect(fromLedger).toEqual(wanted);
      expect(new Map(wallets.map((w) => [w.id, Number(w.coins)]))).toEqual(new Map([...want].map(([id, e]) => [id, e.coins])));
      // Registered identities find their players.
      for (const [subject, id] of [...identities].slice(-100))
        expect(String(await accounts.playerIdByIdentity({ provider: 'steam', subject }))).toBe(String(id));
      await leaderboardsMatch();
      await everyPlayerReadOnce();
    }

    it(
      'loses and doubles nothing, and reads count every player once, during and after each move',
      async () => {
        for (const [k, move] of o.moves.entries()) {
          startLoad();
          await sleep(o.beforeMs);

          // Mid-move (first move): once enough batches switched, the load pauses, the backlog
          // drains, and the reads are checked while the mover goes on with the next batches.
          let switched = 0;
          let midCheck: Promise<void> | undefined;
          const midMove = async () => {
            await stopLoad();
            await drained();
            await leaderboardsMatch();
            await everyPlayerReadOnce();
            startLoad();
          };
          const from = SHARDS[move.from];
          const report = await moveBuckets({
            map: s.map,
            range: move.range,
            to: SHARDS[move.to],
            batchBuckets: o.batchBuckets,
            purge: 'never',
            logger: silent,
            onState: (state) => {
              if (k === 0 && state === 'switched' && ++switched === o.midCheckAt) {
                midCheck = midMove();
                midCheck.catch(() => undefined); // awaited below; this only keeps it from counting as unhandled meanwhile
              }
            },
            afterCommit: async () => {
              await forwardMovedParts(workerShards, from, { connection: redisOptions(), prefix });
            },
          });
          expect(report.state).toBe('moved');
          expect(report.from).toBe(from);
          if (k === 0) expect(midCheck).toBeDefined();
          await midCheck;
          await sleep(o.afterMs);

          // Between the commit and the purge: the old owner still holds copies of the moved players.
          await stopLoad();
          await drained();
          const copies = await s.query<{ n: number }>(
            move.from,
            `SELECT count(*)::int AS n FROM players WHERE ((player_id >> 10) & 4095) BETWEEN $1 AND $2`,
            move.range,
          );
          expect(copies[0]?.n).toBeGreaterThan(0);
          await leaderboardsMatch();
          await everyPlayerReadOnce();

          // The purge under load, then the check.
          startLoad();
          await sleep(o.purgeMs / 2);
          await purgeMove(s.map, report.id, { logger: silent });
          await sleep(o.purgeMs / 2);
          await stopLoad();
          await drained();
          expect(errors).toEqual([]);
          await finalCheck();
        }
        expect(accepted.length).toBeGreaterThan(100);
        if (transientRetries.length > 0)
          console.log(`transient errors retried by the load: ${transientRetries.length} (${[...new Set(transientRetries)].join('; ')})`);
      },
      o.timeoutMs,
    );
  });
}
