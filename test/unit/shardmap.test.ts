import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ShardMapError, loadShardMap, validateShardMap } from '../../src/index.js';
import { connectionUrlOf } from '../../src/shardmap/connection-url.js';

const fixture = (name: string) => `test/fixtures/maps/${name}.json`;
const local = JSON.parse(readFileSync('shardmap/local.json', 'utf8')) as {
  shards: { buckets: string[] }[];
};

async function faultsOf(name: string): Promise<string[]> {
  try {
    await loadShardMap(fixture(name), {});
  } catch (err) {
    expect(err).toBeInstanceOf(ShardMapError);
    const e = err as ShardMapError;
    expect(e.code).toBe('SHARD_MAP_INVALID');
    expect(e.message).toContain(fixture(name));
    return [...e.issues];
  }
  throw new Error(`${name} was accepted`);
}

describe('shard map validation', () => {
  it('accepts the shipped local map', async () => {
    const map = await loadShardMap('shardmap/local.json', {});
    expect(map.regions.map((r) => r.name)).toEqual(['shenzhen', 'sichuan', 'north-america']);
    expect(map.shards.reduce((n, s) => n + s.bucketCount, 0)).toBe(4096);
  });

  it.each([
    ['overlap', /shards\[1\]\.buckets\[0\]: buckets 1000-1023 are owned by both "sz-1" and "sz-2"/],
    ['gap', /buckets: 4001-4095 owned by no shard/],
    ['shard-in-no-region', /shards\[2\]\.region: shard "sc-1" is in region "tibet", which is not in "regions"/],
    ['duplicate-shard', /shards\[1\]\.id: duplicate shard id "sz-1"/],
    ['empty-region', /regions: region "europe" has no shards/],
    ['missing-env', /shards\[0\]\.connection: environment variable SHARDLINE_TEST_UNSET_URL is not set/],
    ['unknown-field', /shards\[0\]: Unrecognized key.*weight/],
    ['password-in-url', /shards\[0\]\.connection: the URL holds a password/],
  ])('rejects %s, naming the path and the fault', async (name, pattern) => {
    const faults = await faultsOf(name);
    expect(faults.join('\n')).toMatch(pattern);
  });

  it('resolves env: connections from the env it is given, never from process.env', () => {
    const raw = structuredClone(JSON.parse(readFileSync(fixture('missing-env'), 'utf8')));
    const map = validateShardMap(raw, { env: { SHARDLINE_TEST_UNSET_URL: 'postgres://u:secret@h:5432/db' } });
    expect(connectionUrlOf(map.shards[0]!)).toBe('postgres://u:secret@h:5432/db');
    expect(map.shards[0]?.connectionRef).toBe('env:SHARDLINE_TEST_UNSET_URL');
  });

  it('reports a missing file and bad JSON as ShardMapError', async () => {
    await expect(loadShardMap('test/fixtures/maps/nope.json')).rejects.toThrow(/file not found/);
  });

  it('property: a map with any gap or overlap is always rejected', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 4095 }),
        fc.integer({ min: 0, max: 4095 }),
        fc.boolean(),
        (shard, a, b, overlap) => {
          const [lo, hi] = a <= b ? [a, b] : [b, a];
          const raw = structuredClone(local);
          const s = raw.shards[shard];
          if (!s) return;
          if (overlap) {
            // Give another shard a range this shard already owns.
            const other = raw.shards[(shard + 1) % 4];
            const own = s.buckets[0]!.split('-').map(Number) as [number, number];
            const x = own[0] + (lo % (own[1] - own[0] + 1));
            other!.buckets.push(`${x}-${x}`);
            expect(() => validateShardMap(raw)).toThrow(/owned by both/);
          } else {
            // Remove [lo, hi] from whichever shard owns it by trimming every shard's ranges.
            for (const sh of raw.shards) {
              sh.buckets = sh.buckets.flatMap((r) => {
                const [x, y] = r.split('-').map(Number) as [number, number];
                const parts: string[] = [];
                if (x < lo) parts.push(`${x}-${Math.min(y, lo - 1)}`);
                if (y > hi) parts.push(`${Math.max(x, hi + 1)}-${y}`);
                return parts;
              });
              if (sh.buckets.length === 0) sh.buckets = ['0'];
            }
            expect(() => validateShardMap(raw)).toThrow(/owned by no shard|owned by both/);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('shard map: every fault at once, empty shards, prefix', () => {
  const base = () => structuredClone(local) as unknown as { prefix?: unknown; shards: Record<string, unknown>[] } & Record<string, unknown>;
  const issuesOf = (raw: unknown): string[] => {
    try {
      validateShardMap(raw);
    } catch (err) {
      expect(err).toBeInstanceOf(ShardMapError);
      return [...(err as ShardMapError).issues];
    }
    throw new Error('accepted');
  };

  it('reports unknown keys together with bucket, region and connection faults', () => {
    const raw = base();
    raw.colour = 'blue';
    raw.shards[0]!.weight = 2;
    raw.shards[3]!.buckets = ['3072-4000'];
    raw.shards[1]!.connection = 'env:SHARDLINE_TEST_NEVER_SET_URL';
    const issues = issuesOf(raw).join('\n');
    expect(issues).toMatch(/\(root\): Unrecognized key: "colour"/);
    expect(issues).toMatch(/shards\[0\]: Unrecognized key: "weight"/);
    expect(issues).toMatch(/buckets: 4001-4095 owned by no shard/);
    expect(issues).toMatch(/shards\[1\]\.connection: environment variable SHARDLINE_TEST_NEVER_SET_URL is not set/);
  });

  it('an unknown key holding what is not plain data is still a typed fault', () => {
    const raw = base();
    raw.hook = () => 'not data';
    expect(issuesOf(raw).join('\n')).toMatch(/\(root\): Unrecognized key: "hook"/);
  });

  it('reports unknown keys with every other schema fault', () => {
    const raw = base();
    raw.shards[0]!.weight = 2;
    raw.shards[2]!.id = 'Bad_Id';
    const issues = issuesOf(raw).join('\n');
    expect(issues).toMatch(/shards\[0\]: Unrecognized key: "weight"/);
    expect(issues).toMatch(/shards\[2\]\.id: lower-case letters/);
  });

  it('accepts a shard with "buckets": [], which owns nothing and takes no new player', () => {
    const raw = base();
    raw.shards.push({ id: 'sz-3', region: 'shenzhen', connection: 'postgres://postgres@127.0.0.1:5432/shardline_sz_3', buckets: [] });
    const map = validateShardMap(raw);
    const sz3 = map.shards.find((s) => s.id === 'sz-3')!;
    expect(sz3).toMatchObject({ buckets: [], bucketCount: 0, index: 4 });
    expect(map.regions.find((r) => r.name === 'shenzhen')!.shards.map((s) => s.id)).toEqual(['sz-1', 'sz-2', 'sz-3']);
    expect([...map.bucketOwner].includes(4)).toBe(false);
  });

  it('takes an optional plain "prefix", refusing braces, colons and other non-names', () => {
    expect(validateShardMap(base()).prefix).toBeUndefined();
    for (const ok of ['shardline', 'game-1', 'prod.eu_2', 'A', 'x'.repeat(64)]) {
      const raw = base();
      raw.prefix = ok;
      expect(validateShardMap(raw).prefix).toBe(ok);
    }
    for (const bad of ['{shardline}', 'a:b', '', '-x', 'x'.repeat(65), 'sp ace', 42]) {
      const raw = base();
      raw.prefix = bad;
      expect(issuesOf(raw).join('\n')).toMatch(/^prefix: /m);
    }
  });
});
