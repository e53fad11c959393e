import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Accounts,
  DEFAULT_SETTLEMENT_LIMITS,
  RoomService,
  Table,
  ValidationError,
  buildMatchResult,
  endGame,
  type PlayerDirectory,
  type PlayerId,
  type TableSettlement,
} from '../../src/index.js';
import type { SettlementInput } from '../../src/settlement/types.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { deleteKeys, redis } from './helpers.js';
import { uniqueName } from '../support/env.js';
import type { Redis } from 'ioredis';

let shards: TestShards;
let client: Redis;
let prefix: string;
let accounts: Accounts;
let directoryCalls = 0;
let service: RoomService;
const statements = new Map<string, number>();

beforeAll(async () => {
  client = redis();
  prefix = uniqueName('slroomview');
  shards = await createTestShards('several-shards');
  accounts = new Accounts(shards.shardSet);
  const direct: PlayerDirectory = accounts; // the real Accounts satisfies the narrow interface as is
  void direct;
  // The real Accounts, counted on the way through (no stand-in for Postgres).
  const directory: PlayerDirectory = {
    getPlayers: (ids, opts) => {
      directoryCalls += 1;
      return accounts.getPlayers(ids, opts);
    },
  };
  service = new RoomService({ connection: client, prefix, router: shards.shardSet.router, directory });
});

afterAll(async () => {
  await service?.close();
  if (client) {
    await deleteKeys(client, prefix);
    client.disconnect();
  }
  await shards?.cleanup();
});

/** Counts statements each shard's pool sends from now on (after warm-up). */
function countStatements(): void {
  for (const shard of shards.shardSet.shards) {
    statements.set(shard.id, 0);
    shards.shardSet.pool(shard.id).on('acquire', (c: pg.PoolClient & { __counted?: true }) => {
      if (c.__counted) return;
      c.__counted = true;
      const query = c.query.bind(c) as (...args: unknown[]) => unknown;
      (c as { query: unknown }).query = (...args: unknown[]) => {
        statements.set(shard.id, (statements.get(shard.id) ?? 0) + 1);
        return query(...args);
      };
    });
  }
}

describe('roomView on the data layer', () => {
  it('returns members with nickname and score, one scatter-gather read (one query per shard touched)', async () => {
    const regions = ['shenzhen', 'shenzhen', 'sichuan', 'north-america', 'sichuan'];
    const players = [];
    for (const [i, region] of regions.entries()) players.push(await accounts.createPlayer({ region, nickname: `p${i}` }));
    // Scores as settlement would leave them, written straight to each player's own shard.
    for (const [i, p] of players.slice(0, 3).entries()) {
      const { db } = await shards.shardSet.dbForPlayer(p.id);
      await db
        .insertInto('player_stats')
        .values({ player_id: p.id, game_id: 'doudizhu', score: 100 * (i + 1) })
        .execute();
    }
    await service.createRoom('shenzhen', 'view-room');
    for (const p of players) await service.enter('view-room', p.id);
    await service.enter('view-room', '12345'); // seated, but no account row

    await accounts.getPlayers(players.map((p) => p.id)); // warm up identity checks before counting
    countStatements();
    directoryCalls = 0;
    const view = await service.roomView('view-room', { gameId: 'doudizhu' });
    expect(directoryCalls).toBe(1);
    const touched = new Set(players.map((p) => shards.shardSet.router.shardFor(p.id).id));
    touched.add(shards.shardSet.router.shardFor(12345n as PlayerId).id);
    for (const shard of shards.shardSet.shards) expect(statements.get(shard.id) ?? 0).toBe(touched.has(shard.id) ? 1 : 0);

    expect(view).toMatchObject({ zone: 'shenzhen', roomId: 'view-room', gameId: 'doudizhu', unavailable: [] });
    expect(view.missing).toEqual([12345n]);
    const sorted = [...players].sort((a, b) => (a.id < b.id ? -1 : 1));
    expect(view.members.map((m) => m.playerId)).toEqual(sorted.map((p) => p.id));
    const byNick = Object.fromEntries(view.members.map((m) => [m.nickname, m.score]));
    expect(byNick).toEqual({ p0: 100n, p1: 200n, p2: 300n, p3: 0n, p4: 0n });
  });

  it('an empty room costs no read; a service without a directory refuses', async () => {
    await service.createRoom('sichuan', 'empty-view');
    directoryCalls = 0;
    expect((await service.roomView('empty-view', { gameId: 'g' })).members).toEqual([]);
    expect(directoryCalls).toBe(0);
    const bare = new RoomService({ connection: client, prefix });
    await expect(bare.roomView('empty-view', { gameId: 'g' })).rejects.toBeInstanceOf(ValidationError);
    await bare.close();
  });
});

describe('table game end', () => {
  /** Records what a table submits; stands in for SettlementClient (not for Redis or Postgres). */
  function recorder(): { submitted: TableSettlement[]; submitSettlement(input: TableSettlement): Promise<{ accepted: true }> } {
    const submitted: TableSettlement[] = [];
    return {
      submitted,
      async submitSettlement(input) {
        submitted.push(input);
        return { accepted: true };
      },
    };
  }

  it('submits the match result of the seated players', async () => {
    const settlement = recorder();
    const table = new Table({ tableId: 't-1', gameId: 'doudizhu', settlement });
    for (const id of ['11', '12', '13']) table.sit(id);
    const endedAt = new Date('2025-01-02T03:04:05Z');
    const answer = await table.end({
      matchId: 'match-1',
      endedAt,
      results: [
        { playerId: '11', scoreDelta: 20, outcome: 'win' },
        { playerId: 12n as PlayerId, scoreDelta: -10, outcome: 'loss' },
        { playerId: '13', scoreDelta: -10, outcome: 'loss' },
      ],
    });
    expect(answer).toEqual({ accepted: true });
    expect(settlement.submitted).toEqual([
      {
        matchId: 'match-1',
        gameId: 'doudizhu',
        endedAt,
        results: [
          { playerId: '11', scoreDelta: 20, outcome: 'win' },
          { playerId: '12', scoreDelta: -10, outcome: 'loss' },
          { playerId: '13', scoreDelta: -10, outcome: 'loss' },
        ],
      },
    ]);
    // The shape is the settlement API's input type.
    const asSettlement: SettlementInput = settlement.submitted[0]!;
    expect(asSettlement.matchId).toBe('match-1');
  });

  it('refuses results that do not describe exactly the seated players, or are malformed', async () => {
    const settlement = recorder();
    const table = new Table({ tableId: 't-2', gameId: 'g', settlement });
    table.sit('21');
    table.sit('22');
    await expect(table.end({ matchId: 'm', results: [{ playerId: '21', scoreDelta: 1, outcome: 'win' }] })).rejects.toThrow(/no result for seated player 22/);
    await expect(
      table.end({
        matchId: 'm',
        results: [
          { playerId: '21', scoreDelta: 1, outcome: 'win' },
          { playerId: '22', scoreDelta: 1, outcome: 'win' },
          { playerId: '23', scoreDelta: 1, outcome: 'win' },
        ],
      }),
    ).rejects.toThrow(/not seated/);
    const endedAt = '2025-01-02T03:04:05Z';
    const win = { playerId: '21', scoreDelta: 1, outcome: 'win' as const };
    const bad = [
      { matchId: '', endedAt, results: [win] },
      { matchId: 'm', endedAt, results: [] },
      { matchId: 'm', endedAt, results: [{ ...win, scoreDelta: 1.5 }] },
      { matchId: 'm', endedAt, results: [{ ...win, outcome: 'tie' as 'win' }] },
      { matchId: 'm', endedAt, results: [win, win] },
      { matchId: 'm', endedAt: '2025-01-02 03:04', results: [win] },
    ];
    for (const input of bad) expect(() => buildMatchResult('g', input)).toThrow(ValidationError);
    expect(settlement.submitted).toEqual([]);
    await endGame(settlement, 'g', { matchId: 'solo', endedAt, results: [{ playerId: '5', scoreDelta: 0, outcome: 'draw' }] });
    expect(settlement.submitted[0]).toMatchObject({ matchId: 'solo', gameId: 'g', endedAt: new Date(endedAt) });
  });

  it("checks with settlement's own rules: its match id form and the submitter's score bounds", async () => {
    const endedAt = new Date('2025-01-02T03:04:05Z');
    const fieldOf = (fn: () => unknown): string | undefined => {
      try {
        fn();
      } catch (err) {
        if (err instanceof ValidationError) return err.field;
        throw err;
      }
      return undefined;
    };
    const one = (scoreDelta: number) => [{ playerId: '31', scoreDelta, outcome: 'win' as const }];
    // Settlement's match id rule (at most 128 printable ASCII characters, no spaces), not a looser one of its own.
    expect(fieldOf(() => buildMatchResult('g', { matchId: 'has space', endedAt, results: one(1) }))).toBe('matchId');
    expect(fieldOf(() => buildMatchResult('g', { matchId: 'x'.repeat(129), endedAt, results: one(1) }))).toBe('matchId');
    expect(fieldOf(() => buildMatchResult('g', { matchId: 'x'.repeat(128), endedAt, results: one(1) }))).toBeUndefined();
    // Default bounds are settlement's defaults (±1 000 000), not the int4 range.
    expect(fieldOf(() => buildMatchResult('g', { matchId: 'm', endedAt, results: one(1_000_001) }))).toBe('results.0.scoreDelta');
    // A submitter's own limits win: the table refuses what its settlement would refuse, before submitting.
    const strict = { ...recorder(), limits: { ...DEFAULT_SETTLEMENT_LIMITS, minScoreDelta: -50, maxScoreDelta: 50 } };
    const table = new Table({ tableId: 't-3', gameId: 'g', settlement: strict });
    table.sit('31');
    await expect(table.end({ matchId: 'm', results: one(51) })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', field: 'results.0.scoreDelta' });
    await table.end({ matchId: 'm', results: one(50) });
    expect(strict.submitted).toHaveLength(1);
    // The game end is not in the future, like any settlement.
    const future = new Date(Date.now() + 2 * 3600_000);
    await expect(table.end({ matchId: 'm2', endedAt: future, results: one(1) })).rejects.toMatchObject({ field: 'endedAt' });
  });

  it('resubmits the same instant when the same game end is retried, a fresh one for the next game', async () => {
    const settlement = recorder();
    const table = new Table({ tableId: 't-4', gameId: 'g', settlement });
    table.sit('41');
    const results = [{ playerId: '41', scoreDelta: 3, outcome: 'win' as const }];
    await table.end({ matchId: 'g-1', results });
    await new Promise((r) => setTimeout(r, 5));
    await table.end({ matchId: 'g-1', results });
    const [first, retry] = settlement.submitted;
    expect(retry).toEqual(first);
    await new Promise((r) => setTimeout(r, 5));
    await table.end({ matchId: 'g-2', results });
    expect(settlement.submitted[2]!.endedAt.getTime()).toBeGreaterThan(first!.endedAt.getTime());
    // An explicit endedAt is used as given (and remembered for a retry without one).
    const at = new Date('2025-05-05T05:05:05Z');
    await table.end({ matchId: 'g-3', endedAt: at, results });
    await table.end({ matchId: 'g-3', results });
    expect(settlement.submitted.slice(3).map((m) => m.endedAt)).toEqual([at, at]);
  });
});
