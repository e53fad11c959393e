import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Accounts, InvalidPlayerIdError, PlayerNotFoundError, ValidationError, encodePlayerId, type Player, type PlayerId } from '../../src/index.js';
import { errorOf } from '../support/errors.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';
import { countQueries, type QueryCounter } from './query-counter.js';

async function fieldOf(p: Promise<unknown>): Promise<string> {
  const e = await errorOf(p);
  expect(e).toBeInstanceOf(ValidationError);
  return (e as ValidationError).field;
}

describe.each(LAYOUTS)('accounts (%s)', (layout) => {
  let t: TestShards;
  let accounts: Accounts;
  let counter: QueryCounter;
  const created: Player[] = [];

  beforeAll(async () => {
    t = await createTestShards(layout);
    accounts = new Accounts(t.shardSet);
    counter = countQueries(t.shardSet);
    for (const region of t.shardSet.router.regions) {
      for (let i = 0; i < 4; i++) created.push(await accounts.createPlayer({ region, nickname: `${region} player ${i}` }));
    }
  });
  afterAll(() => t?.cleanup());

  async function rowOn(shardId: string, id: PlayerId): Promise<{ nickname: string } | undefined> {
    return t.shardSet.rawDb(shardId).selectFrom('players').select('nickname').where('player_id', '=', id).executeTakeFirst();
  }

  it('createPlayer mints the id on a shard of the region and writes the row there only', async () => {
    for (const p of created) {
      const home = t.shardSet.router.shardFor(p.id);
      expect(home.region).toBe(p.region);
      expect(p.status).toBe('active');
      expect(p.createdAt).toBeInstanceOf(Date);
      for (const shard of t.shardSet.shards) {
        expect((await rowOn(shard.id, p.id)) !== undefined).toBe(shard.id === home.id);
      }
    }
    const suspended = await accounts.createPlayer({ region: 'shenzhen', nickname: 'late', status: 'suspended' });
    expect(suspended.status).toBe('suspended');
  });

  it('ids minted at once by the shards never collide', async () => {
    const many = await Promise.all(Array.from({ length: 40 }, (_, i) => accounts.createPlayer({ region: 'shenzhen', nickname: `burst ${i}` })));
    expect(new Set(many.map((p) => p.id)).size).toBe(40);
  });

  it('createPlayer refuses bad input, naming the field', async () => {
    expect(await fieldOf(accounts.createPlayer({ region: 'shenzhen', nickname: '' }))).toBe('nickname');
    expect(await fieldOf(accounts.createPlayer({ region: 'shenzhen', nickname: 'ok', status: 'banned' as never }))).toBe('status');
    expect(await fieldOf(accounts.createPlayer({ region: 42 as never, nickname: 'ok' }))).toBe('region');
    expect(((await errorOf(accounts.createPlayer({ region: 'atlantis', nickname: 'ok' }))) as { code: string }).code).toBe('UNKNOWN_REGION');
  });

  it('createPlayer refuses unknown fields, as updateProfile does, before any statement', async () => {
    counter.reset();
    for (const [input, field] of [
      [{ region: 'shenzhen', nickname: 'ok', nickName: 'typo' }, 'nickName'],
      [{ region: 'shenzhen', nickname: 'ok', id: '42' }, 'id'],
      [{ region: 'shenzhen', nickname: 'ok', status: 'active', score: 10 }, 'score'],
    ] as const) {
      const err = await errorOf(accounts.createPlayer(input as never));
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field).toBe(field);
      expect((err as ValidationError).message).toMatch(/allowed: region, nickname, status/);
    }
    expect(Object.values(counter.counts()).every((n) => n === 0)).toBe(true);
  });

  it('getPlayer reads one player; unknown and malformed ids are errors', async () => {
    const p = created[0]!;
    expect(await accounts.getPlayer(String(p.id))).toEqual(p);
    const ghost = encodePlayerId({ time: 1, bucket: 5, seq: 0 });
    const err = await errorOf(accounts.getPlayer(ghost));
    expect(err).toBeInstanceOf(PlayerNotFoundError);
    expect((err as PlayerNotFoundError).playerIds).toEqual([String(ghost)]);
    expect(await errorOf(accounts.getPlayer('12abc'))).toBeInstanceOf(InvalidPlayerIdError);
  });

  it('getPlayers keeps input order, reports missing ids, and sends one statement per shard touched', async () => {
    await accounts.getPlayers(created.map((p) => p.id)); // identity checks happen on first use
    const ghosts = [encodePlayerId({ time: 7, bucket: 10, seq: 1 }), encodePlayerId({ time: 7, bucket: 4000, seq: 2 })];
    const shuffled = [...created].sort((a, b) => (String(a.id).split('').reverse().join() < String(b.id).split('').reverse().join() ? -1 : 1));
    const input: (PlayerId | string)[] = [ghosts[0]!, ...shuffled.map((p) => String(p.id)), shuffled[0]!.id, ghosts[1]!];

    counter.reset();
    const res = await accounts.getPlayers(input);
    expect(res.players.map((p) => p.id)).toEqual(shuffled.map((p) => p.id));
    expect(res.missing).toEqual(ghosts);
    expect(res.unavailable).toEqual([]);

    const touched = new Set([...shuffled.map((p) => p.id), ...ghosts].map((id) => t.shardSet.router.shardFor(id).id));
    for (const [shardId, n] of Object.entries(counter.counts())) {
      expect(n, shardId).toBe(touched.has(shardId) ? 1 : 0);
      for (const text of counter.statements(shardId)) expect(text).toMatch(/"player_id" = any\(\$1::int8\[\]\)/);
    }
  });

  it('getPlayers with a gameId fills stats from the same statement, zeros for games never played', async () => {
    const [a, b] = created;
    const shardA = t.shardSet.router.shardFor(a!.id).id;
    await t.shardSet
      .rawDb(shardA)
      .insertInto('player_stats')
      .values({ player_id: a!.id, game_id: 'chess', score: 1200n, wins: 3, losses: 1, draws: 2, games_played: 6, last_match_id: 'm-9' })
      .execute();
    counter.reset();
    const res = await accounts.getPlayers([a!.id, b!.id], { gameId: 'chess' });
    expect(Object.values(counter.counts()).reduce((x, y) => x + y, 0)).toBe(new Set([a!.id, b!.id].map((id) => t.shardSet.router.shardFor(id).id)).size);
    expect(res.players[0]!.stats).toMatchObject({ gameId: 'chess', score: 1200n, wins: 3, losses: 1, draws: 2, gamesPlayed: 6, lastMatchId: 'm-9' });
    expect(res.players[0]!.stats!.updatedAt).toBeInstanceOf(Date);
    expect(res.players[1]!.stats).toEqual({ gameId: 'chess', score: 0n, wins: 0, losses: 0, draws: 0, gamesPlayed: 0, lastMatchId: null, updatedAt: null });

    expect(await accounts.getStats(a!.id, 'chess')).toEqual(res.players[0]!.stats);
    expect((await accounts.getStats(b!.id, 'go')).score).toBe(0n);
    expect(await errorOf(accounts.getStats(encodePlayerId({ time: 3, bucket: 3, seq: 3 }), 'chess'))).toBeInstanceOf(PlayerNotFoundError);
    expect(await fieldOf(accounts.getStats(a!.id, ''))).toBe('gameId');
  });

  it('getPlayers bounds its input: batch size, ids, and no statement for an empty batch', async () => {
    const tooMany = Array.from({ length: 1001 }, (_, i) => encodePlayerId({ time: 1, bucket: i % 4096, seq: 0 }));
    expect(await fieldOf(accounts.getPlayers(tooMany))).toBe('ids');
    expect(await fieldOf(accounts.getPlayers('1' as never))).toBe('ids');
    expect(await fieldOf(accounts.getPlayers([created[0]!.id], { gameId: 'x'.repeat(65) }))).toBe('gameId');
    expect(await errorOf(accounts.getPlayers(['1', 'nope']))).toBeInstanceOf(InvalidPlayerIdError);
    counter.reset();
    expect(await accounts.getPlayers([])).toEqual({ players: [], missing: [], unavailable: [] });
    expect(Object.values(counter.counts()).every((n) => n === 0)).toBe(true);
  });

  it('updateProfile validates the patch and writes it', async () => {
    const p = created[1]!;
    const bad: [Record<string, unknown>, string][] = [
      [{ nickname: '' }, 'nickname'],
      [{ nickname: 'x'.repeat(33) }, 'nickname'],
      [{ nickname: 'ctl\u0007' }, 'nickname'],
      [{ nickname: 7 }, 'nickname'],
      [{ status: 'banned' }, 'status'],
      [{ region: 'sichuan' }, 'region'],
    ];
    for (const [patch, field] of bad) expect(await fieldOf(accounts.updateProfile(p.id, patch as never))).toBe(field);

    const updated = await accounts.updateProfile(p.id, { nickname: '  Zoë 李  ', status: 'suspended' });
    expect(updated).toMatchObject({ id: p.id, region: p.region, nickname: 'Zoë 李', status: 'suspended', createdAt: p.createdAt });
    expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(p.updatedAt.getTime());
    expect(await accounts.getPlayer(p.id)).toEqual(updated);
    expect(await accounts.updateProfile(p.id, {})).toEqual(updated);
    expect(await errorOf(accounts.updateProfile(encodePlayerId({ time: 2, bucket: 2, seq: 2 }), { status: 'active' }))).toBeInstanceOf(PlayerNotFoundError);
  });

  it('stores SQL-looking input verbatim: every value is a bound parameter', async () => {
    const evil = "'); DROP TABLE players; --";
    const p = await accounts.createPlayer({ region: 'shenzhen', nickname: evil });
    expect(p.nickname).toBe(evil);
    expect((await accounts.getPlayer(p.id)).nickname).toBe(evil);
    expect((await rowOn(t.shardSet.router.shardFor(p.id).id, p.id))?.nickname).toBe(evil);

    const evil2 = `x"); DELETE FROM player_stats;--`;
    expect((await accounts.updateProfile(p.id, { nickname: evil2 })).nickname).toBe(evil2);
    const got = await accounts.getPlayers([p.id], { gameId: "chess' OR '1'='1" });
    expect(got.players[0]).toMatchObject({ nickname: evil2, stats: { score: 0n, gameId: "chess' OR '1'='1" } });
    const history = await accounts.getMatchHistory(p.id, { gameId: "x' OR 1=1 --" });
    expect(history.items).toEqual([]);

    // Every table is still there and still holds its rows.
    for (const shard of t.shardSet.shards) {
      const db = t.shardSet.rawDb(shard.id);
      await db.selectFrom('players').select('player_id').limit(1).execute();
      await db.selectFrom('player_stats').select('player_id').limit(1).execute();
    }
    expect((await accounts.getStats(created[0]!.id, 'chess')).score).toBe(1200n);
  });

  it('getMatchHistory pages newest first on (ended_at, match_id), down to the microsecond', async () => {
    const p = created[2]!;
    const shardId = t.shardSet.router.shardFor(p.id).id;
    // Ties on ended_at (broken by match_id) and rows a few microseconds apart inside one millisecond.
    const endedAt = [
      '2024-05-01T10:00:00.000000',
      '2024-05-01T10:00:00.000000',
      '2024-05-01T10:00:00.000000',
      '2024-05-01T10:00:00.123400',
      '2024-05-01T10:00:00.123456',
      '2024-05-01T10:00:00.123999',
      '2024-05-01T10:00:00.123456',
      '2024-05-02T08:30:00.000001',
      '2024-05-03T00:00:00.000000',
      '2024-04-30T23:59:59.999999',
      '2024-05-01T10:00:00.124000',
      '2024-05-02T08:30:00.000000',
      '2024-05-01T09:00:00.000000',
    ];
    const rows = endedAt.map((t, i) => ({
      match_id: `m-${String(i).padStart(3, '0')}`,
      player_id: p.id,
      game_id: i % 3 === 0 ? 'go' : 'chess',
      score_delta: i - 5,
      outcome: (['win', 'loss', 'draw'] as const)[i % 3]!,
      ended_at: `${t}Z`,
    }));
    await t.shardSet.rawDb(shardId).insertInto('settlement_ledger').values(rows).execute();
    const expected = [...rows].sort((a, b) => (a.ended_at === b.ended_at ? (a.match_id < b.match_id ? 1 : -1) : a.ended_at < b.ended_at ? 1 : -1));

    async function all(limit: number, gameId?: string): Promise<string[]> {
      const seen: string[] = [];
      let before: string | undefined;
      for (let page = 0; page < 30; page++) {
        const res = await accounts.getMatchHistory(p.id, { limit, ...(gameId ? { gameId } : {}), ...(before ? { before } : {}) });
        expect(res.items.length).toBeLessThanOrEqual(limit);
        seen.push(...res.items.map((i) => i.matchId));
        if (res.nextCursor === null) return seen;
        expect(typeof res.nextCursor).toBe('string');
        before = res.nextCursor;
      }
      throw new Error('pagination did not end');
    }
    // Every page size, so some page ends between rows of one millisecond.
    for (const limit of [1, 2, 3, 5]) {
      expect(await all(limit)).toEqual(expected.map((r) => r.match_id));
      expect(await all(limit, 'go')).toEqual(expected.filter((r) => r.game_id === 'go').map((r) => r.match_id));
    }

    const first = await accounts.getMatchHistory(p.id, { limit: 1 });
    expect(first.items[0]).toMatchObject({ matchId: 'm-008', gameId: 'chess', scoreDelta: 3, outcome: 'draw' });
    expect(first.items[0]!.endedAt.toISOString()).toBe('2024-05-03T00:00:00.000Z');
    expect(first.items[0]!.appliedAt).toBeInstanceOf(Date);
    const exact = await accounts.getMatchHistory(p.id, { limit: 13 });
    expect(exact.items).toHaveLength(13);
    expect(exact.nextCursor).toBeNull();

    expect(await accounts.getMatchHistory(created[3]!.id)).toEqual({ items: [], nextCursor: null });
    expect(await errorOf(accounts.getMatchHistory(encodePlayerId({ time: 9, bucket: 9, seq: 9 })))).toBeInstanceOf(PlayerNotFoundError);
    expect(await fieldOf(accounts.getMatchHistory(p.id, { before: 'not-a-cursor' }))).toBe('before');
    expect(await fieldOf(accounts.getMatchHistory(p.id, { before: Buffer.from('{"v":1,"t":"x","m":"y"}').toString('base64url') }))).toBe('before');
    expect(await fieldOf(accounts.getMatchHistory(p.id, { limit: 0 }))).toBe('limit');
    expect(await fieldOf(accounts.getMatchHistory(p.id, { limit: 101 }))).toBe('limit');
  });
});
