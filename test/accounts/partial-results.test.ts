import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Accounts, Leaderboards, ShardSet, ShardUnavailableError, encodePlayerId, validateShardMap, type Player, type PlayerId } from '../../src/index.js';
import { errorOf } from '../support/errors.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';

/** Nothing listens on port 1: connecting is refused at once, by the real network stack. */
const CLOSED_PORT_URL = 'postgres://postgres@127.0.0.1:1/shardline_down';

describe.each(LAYOUTS)('reads with a shard down (%s)', (layout) => {
  let t: TestShards;
  const players: Player[] = [];

  beforeAll(async () => {
    t = await createTestShards(layout);
    const accounts = new Accounts(t.shardSet);
    for (const region of t.shardSet.router.regions) {
      for (let i = 0; i < 3; i++) players.push(await accounts.createPlayer({ region, nickname: `p${i}` }));
    }
  });
  afterAll(() => t?.cleanup());

  /** The same map with its last shard pointed at a closed port. */
  async function withDownShard(verifyIdentity: boolean, fn: (set: ShardSet, downId: string) => Promise<void>): Promise<void> {
    const json = structuredClone(t.mapJson) as { shards: { id: string; connection: string }[] };
    const down = json.shards.at(-1)!;
    down.connection = CLOSED_PORT_URL;
    const set = new ShardSet(validateShardMap(json, { file: '<down shard>' }), { verifyIdentity, poolMax: 2, connectionTimeoutMs: 3000 });
    try {
      await fn(set, down.id);
    } finally {
      await set.close();
    }
  }

  describe.each([true, false])('verifyIdentity %s', (verifyIdentity) => {
    it('getPlayers throws ShardUnavailableError naming the shard and its ids', () =>
      withDownShard(verifyIdentity, async (set, downId) => {
        const accounts = new Accounts(set);
        const onDown = players.filter((p) => set.router.shardFor(p.id).id === downId).map((p) => String(p.id));
        const err = await errorOf(accounts.getPlayers(players.map((p) => p.id)));
        expect(err).toBeInstanceOf(ShardUnavailableError);
        const e = err as ShardUnavailableError;
        expect(e.code).toBe('SHARD_UNAVAILABLE');
        expect(e.shardId).toBe(downId);
        expect(e.target).toBe('127.0.0.1:1/shardline_down');
        expect(e.transient).toBe(true);
        expect([...e.playerIds]).toEqual(onDown);
        expect(e.message).toContain(downId);

        const single = await errorOf(accounts.getPlayer(onDown[0]!));
        expect(single).toBeInstanceOf(ShardUnavailableError);
        expect((single as ShardUnavailableError).playerIds).toEqual([onDown[0]]);
      }));

    it('getPlayers with partial returns the reachable players and lists the rest as unavailable', () =>
      withDownShard(verifyIdentity, async (set, downId) => {
        const accounts = new Accounts(set);
        const ghosts = set.shards.map((s) => encodePlayerId({ time: 11, bucket: s.buckets[0]![0], seq: 7 }));
        const input: PlayerId[] = [...players.map((p) => p.id).reverse(), ...ghosts];
        const res = await accounts.getPlayers(input, { partial: true, gameId: 'chess' });

        const isDown = (id: PlayerId) => set.router.shardFor(id).id === downId;
        expect(res.players.map((p) => p.id)).toEqual(input.filter((id) => !isDown(id) && !ghosts.includes(id)));
        expect(res.players.every((p) => p.stats?.score === 0n)).toBe(true);
        expect(res.missing).toEqual(ghosts.filter((id) => !isDown(id)));
        expect(res.unavailable).toHaveLength(1);
        const [u] = res.unavailable;
        expect(u!.shardId).toBe(downId);
        expect(u!.playerIds).toEqual(input.filter(isDown));
        expect(u!.error).toBeInstanceOf(ShardUnavailableError);
        expect(u!.error.playerIds).toEqual(u!.playerIds.map(String));
      }));
  });

  it('leaderboards refuse to answer without every shard in scope', () =>
    withDownShard(true, async (set, downId) => {
      const boards = new Leaderboards(set);
      const err = await errorOf(boards.topScores('chess', { limit: 5 }));
      expect(err).toBeInstanceOf(ShardUnavailableError);
      expect((err as ShardUnavailableError).shardId).toBe(downId);
      const elsewhere = set.router.regions.find((r) => set.router.region(r).shards.every((s) => s.id !== downId));
      if (elsewhere) expect(await boards.topScores('chess', { region: elsewhere })).toEqual([]);
    }));
});
