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
          const raw = structuredClone(local) as typeof local;
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
