import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  InvalidPlayerIdError,
  PlayerIdGenerator,
  Router,
  UnknownRegionError,
  ValidationError,
  decodePlayerId,
  encodePlayerId,
  loadShardMap,
  parsePlayerId,
  validateShardMap,
  type PlayerId,
} from '../../src/index.js';

let router: Router;
beforeAll(async () => {
  router = new Router(await loadShardMap('shardmap/local.json'));
});

const parts = fc.record({
  time: fc.integer({ min: 0, max: 2 ** 41 - 1 }),
  bucket: fc.integer({ min: 0, max: 4095 }),
  seq: fc.integer({ min: 0, max: 1023 }),
});

describe('player ids', () => {
  it('property: decode(encode(x)) == x and ids are positive 63-bit', () => {
    fc.assert(
      fc.property(parts, (p) => {
        const id = encodePlayerId(p);
        expect(id > 0n || (p.time === 0 && p.bucket === 0 && p.seq === 0)).toBe(true);
        expect(id < 1n << 63n).toBe(true);
        const d = decodePlayerId(id);
        expect({ time: d.time, bucket: d.bucket, seq: d.seq }).toEqual(p);
      }),
    );
  });

  it('property: ids sort by creation time', () => {
    fc.assert(
      fc.property(parts, parts, (a, b) => {
        fc.pre(a.time !== b.time);
        expect(encodePlayerId(a) < encodePlayerId(b)).toBe(a.time < b.time);
      }),
    );
  });

  it.each([
    ['abc', /not a decimal integer/],
    ['-5', /negative/],
    ['', /empty/],
    ['9223372036854775808', /between 1 and 2\^63-1/],
    ['0', /between 1 and 2\^63-1/],
    ['12.5', /not a decimal integer/],
  ])('rejects %j with InvalidPlayerIdError', (raw, pattern) => {
    const err = (() => {
      try {
        parsePlayerId(raw);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(InvalidPlayerIdError);
    expect((err as InvalidPlayerIdError).code).toBe('INVALID_PLAYER_ID');
    expect((err as Error).message).toMatch(pattern);
    expect((err as Error).message).toContain(JSON.stringify(raw));
  });

  it('refuses JS numbers, which lose precision', () => {
    expect(() => parsePlayerId(123)).toThrow(/not a JS number/);
  });
});

describe('router', () => {
  it('property: every valid id routes to exactly one shard, of its region', () => {
    fc.assert(
      fc.property(parts, (p) => {
        fc.pre(p.time + p.bucket + p.seq > 0);
        const id = encodePlayerId(p);
        const shard = router.shardFor(id);
        const owners = router.shards.filter((s) => s.buckets.some(([lo, hi]) => p.bucket >= lo && p.bucket <= hi));
        expect(owners.map((s) => s.id)).toEqual([shard.id]);
        expect(router.regionOf(id)).toBe(shard.region);
      }),
    );
  });

  it('newPlayerId stays in its region and spreads over the region shards', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 1000; i++) {
      const id = router.newPlayerId('shenzhen');
      expect(router.regionOf(id)).toBe('shenzhen');
      const s = router.shardFor(id).id;
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
    expect(counts).toEqual(
      new Map([
        ['sz-1', 500],
        ['sz-2', 500],
      ]),
    );
  });

  it('unknown region is a typed error naming it', () => {
    expect(() => router.newPlayerId('atlantis')).toThrow(UnknownRegionError);
    expect(() => router.newPlayerId('atlantis')).toThrow(/"atlantis"/);
  });

  it('groupByShard keeps input order within each shard', () => {
    const ids = Array.from({ length: 50 }, (_, i) => router.newPlayerId(router.regions[i % 3]!));
    const groups = router.groupByShard(ids);
    expect([...groups.values()].flat().sort()).toEqual([...ids].sort());
    for (const [sid, list] of groups) {
      expect(list).toEqual(ids.filter((id) => router.shardFor(id).id === sid));
    }
  });

  it('property: ids from several generators never collide', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 16 }), fc.integer({ min: 1, max: 300 }), (gens, perGen) => {
        // All generators share one frozen clock and one bucket: the worst case for collisions.
        const now = () => 1_800_000_000_000;
        const generators = Array.from({ length: gens }, (_, g) => new PlayerIdGenerator({ generatorId: g, now }));
        const seen = new Set<PlayerId>();
        for (let i = 0; i < perGen; i++) for (const g of generators) seen.add(g.next(7));
        expect(seen.size).toBe(gens * perGen);
      }),
      { numRuns: 50 },
    );
  });
});

describe('router over a map with an empty shard', () => {
  const withEmpty = (extraRegion: boolean) => {
    const raw = JSON.parse(readFileSync('shardmap/local.json', 'utf8')) as { regions: string[]; shards: Record<string, unknown>[] };
    raw.shards.push({ id: 'sz-3', region: 'shenzhen', connection: 'postgres://postgres@127.0.0.1:5432/sz3', buckets: [] });
    if (extraRegion) {
      raw.regions.push('europe');
      raw.shards.push({ id: 'eu-1', region: 'europe', connection: 'postgres://postgres@127.0.0.1:5432/eu1', buckets: [] });
    }
    return new Router(validateShardMap(raw));
  };

  it('never routes to it, never picks it for a new player, and groupByShard leaves it out', () => {
    const r = withEmpty(false);
    const ids = Array.from({ length: 400 }, () => r.newPlayerId('shenzhen'));
    expect(new Set(ids.map((id) => r.shardFor(id).id))).toEqual(new Set(['sz-1', 'sz-2']));
    const all = Array.from({ length: 4096 }, (_, b) => encodePlayerId({ time: 1, bucket: b, seq: 0 }));
    expect([...r.groupByShard(all).keys()].sort()).toEqual(['na-1', 'sc-1', 'sz-1', 'sz-2']);
    expect(r.shard('sz-3').bucketCount).toBe(0);
  });

  it('a region whose shards own no bucket yet refuses new players with a typed error', () => {
    const r = withEmpty(true);
    expect(() => r.newPlayerId('europe')).toThrow(ValidationError);
    expect(() => r.newPlayerId('europe')).toThrow(/region "europe" owns no buckets yet/);
  });
});
