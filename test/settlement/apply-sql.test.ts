import { sql } from 'kysely';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlayerId } from '../../src/routing/index.js';
import { applyParts } from '../../src/settlement/apply.js';
import { writeParts, type PartRow } from '../../src/settlement/inbox-store.js';
import { uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import { createPlayers } from './helpers.js';

/**
 * applyParts' statements (issue 18): one batch is BEGIN, one statement locking and reading the
 * parts, one writing ledger, stats and flips, COMMIT; the rarer paths (a player missing, rows in the
 * ledger already) fall back to more statements and keep every part's outcome and the stats exact.
 */
describe('applyParts statements', () => {
  let t: TestShards;
  let players: PlayerId[];
  const statements: string[] = [];

  beforeAll(async () => {
    t = await createTestShards('one-shard');
    players = (await createPlayers(t.shardSet, 12)).get('sz-1') as PlayerId[];
    t.shardSet.pool('sz-1').on('acquire', (client: pg.PoolClient & { counted?: true }) => {
      if (client.counted) return;
      client.counted = true;
      const query = client.query.bind(client) as (...a: unknown[]) => unknown;
      (client as { query: unknown }).query = (...a: unknown[]) => {
        const q = a[0] as string | { text: string };
        statements.push(typeof q === 'string' ? q : q.text);
        return query(...a);
      };
    });
  });
  afterAll(() => t?.cleanup());

  const part = (ids: readonly (PlayerId | string)[], gameId = 'apply-sql'): PartRow => ({
    matchId: uniqueName('m'),
    contentHash: 'h'.repeat(64),
    gameId,
    endedAt: new Date('2026-01-02T03:04:05.000Z'),
    results: ids.map((id, k) => ({ playerId: id.toString(), scoreDelta: k === 0 ? 10 : -2, outcome: k === 0 ? 'win' : 'loss' })),
    shardIds: ['sz-1'],
  });
  const record = (parts: PartRow[]) => t.shardSet.withShard('sz-1', (db) => writeParts(db, parts));
  const apply = async (ids: string[]) => {
    statements.length = 0;
    const out = await t.shardSet.withShard('sz-1', (db) => applyParts(db, ids));
    return { out, statements: statements.length };
  };
  const stats = async (gameId: string) => {
    const db = await t.shardSet.db('sz-1');
    const rows = await db.selectFrom('player_stats').select(['player_id', 'score', 'wins', 'losses', 'games_played']).where('game_id', '=', gameId).execute();
    return new Map(rows.map((r) => [r.player_id.toString(), [Number(r.score), r.wins, r.losses, r.games_played]]));
  };
  const inbox = async (matchId: string) => {
    const db = await t.shardSet.db('sz-1');
    return db.selectFrom('settlement_inbox').select(['status', 'attempts', 'last_error']).where('match_id', '=', matchId).executeTakeFirstOrThrow();
  };

  it('applies a batch in four statements: BEGIN, lock and read, ledger with stats and flips, COMMIT', async () => {
    const game = uniqueName('g');
    const parts = [part(players.slice(0, 3), game), part(players.slice(2, 5), game), part(players.slice(4, 6), game)];
    await record(parts);
    const { out, statements: n } = await apply(parts.map((p) => p.matchId));
    expect(n).toBe(4);
    expect(parts.map((p) => out.get(p.matchId)).map((o) => (o?.kind === 'applied' ? o.inserted : o?.kind))).toEqual(parts.map((p) => p.results.length));
    const s = await stats(game);
    // Player 2 and player 4 are in two matches each: a loss in the first, a win in the second.
    expect(s.get(players[2]!.toString())).toEqual([8, 1, 1, 2]);
    expect(s.get(players[4]!.toString())).toEqual([8, 1, 1, 2]);
    expect(s.get(players[0]!.toString())).toEqual([10, 1, 0, 1]);
    expect(s.size).toBe(6);

    // Again: every part is applied already, nothing changes.
    const again = await apply(parts.map((p) => p.matchId));
    expect([...again.out.values()].map((o) => o.kind)).toEqual(['duplicate', 'duplicate', 'duplicate']);
    expect(await stats(game)).toEqual(s);
  });

  it('fails only the part whose player is missing, once, and applies the others of the batch', async () => {
    const game = uniqueName('g');
    const ghost = '4611686018427387903'; // a well-formed id no shard holds
    const good = part(players.slice(0, 2), game);
    const bad = part([players[3]!, ghost], game);
    const malformed = part(players.slice(6, 8), game);
    await record([good, bad, malformed]);
    // A part that cannot even be read fails in the same transaction, once.
    const db = await t.shardSet.db('sz-1');
    await sql`UPDATE settlement_inbox SET results = '[{"playerId": "x"}]'::jsonb WHERE match_id = ${malformed.matchId}`.execute(db);
    const { out } = await apply([good.matchId, bad.matchId, malformed.matchId]);
    expect(out.get(good.matchId)).toMatchObject({ kind: 'applied', inserted: 2 });
    expect(out.get(bad.matchId)).toEqual({ kind: 'failed', matchId: bad.matchId, reason: `player not found on this shard: ${ghost}`, recorded: true });
    expect(out.get(malformed.matchId)).toMatchObject({ kind: 'failed', recorded: true });
    expect(await inbox(bad.matchId)).toEqual({ status: 'failed', attempts: 1, last_error: `player not found on this shard: ${ghost}` });
    expect((await inbox(malformed.matchId)).attempts).toBe(1);
    expect(await inbox(good.matchId)).toMatchObject({ status: 'applied', attempts: 1 });
    const s = await stats(game);
    expect([...s.keys()].sort()).toEqual([players[0]!.toString(), players[1]!.toString()].sort());
    const ledger = await db.selectFrom('settlement_ledger').select('match_id').where('match_id', 'in', [bad.matchId, malformed.matchId]).execute();
    expect(ledger).toEqual([]);
  });

  it('fails every part of a batch whose players are all missing, without touching the stats', async () => {
    const game = uniqueName('g');
    const bad = part(['4611686018427387902'], game);
    await record([bad]);
    const { out } = await apply([bad.matchId]);
    expect(out.get(bad.matchId)).toMatchObject({ kind: 'failed', recorded: true });
    expect(await inbox(bad.matchId)).toMatchObject({ status: 'failed', attempts: 1 });
    expect((await stats(game)).size).toBe(0);
  });

  it('moves the stats for the rows inserted now only when some of a part are in the ledger already', async () => {
    const game = uniqueName('g');
    const p = part(players.slice(8, 11), game);
    const other = part(players.slice(0, 2), game);
    await record([p, other]);
    // As if this part's first player had been applied before (a forward merged back, an inbox reset).
    const db = await t.shardSet.db('sz-1');
    await db
      .insertInto('settlement_ledger')
      .values({ match_id: p.matchId, player_id: players[8]!, game_id: game, score_delta: 10, outcome: 'win', ended_at: p.endedAt })
      .execute();
    const { out } = await apply([p.matchId, other.matchId]);
    expect(out.get(p.matchId)).toMatchObject({ kind: 'applied', results: 3, inserted: 2 });
    expect(out.get(other.matchId)).toMatchObject({ kind: 'applied', results: 2, inserted: 2 });
    const s = await stats(game);
    expect(s.has(players[8]!.toString())).toBe(false);
    expect(s.get(players[9]!.toString())).toEqual([-2, 0, 1, 1]);
    expect(s.get(players[0]!.toString())).toEqual([10, 1, 0, 1]);
    expect(await inbox(p.matchId)).toMatchObject({ status: 'applied', attempts: 1 });
  });
});
