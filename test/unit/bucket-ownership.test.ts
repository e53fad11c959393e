import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compareBuckets,
  formatBuckets,
  ownershipFaults,
  parseBuckets,
  sameBuckets,
  type BucketRange,
  type StampKnowledge,
} from '../../src/db/bucket-ownership.js';
import { ShardOwnershipError, validateShardMap } from '../../src/index.js';

const mapOf = (shards: [string, string[]][]) =>
  validateShardMap({
    version: 1,
    buckets: 4096,
    regions: ['shenzhen'],
    shards: shards.map(([id, buckets]) => ({ id, region: 'shenzhen', connection: `postgres://postgres@127.0.0.1:5432/${id}`, buckets })),
  });
const stamped = (text: string): StampKnowledge => ({ kind: 'stamped', buckets: parseBuckets(text) as BucketRange[] });

describe('bucket sets of identity stamps', () => {
  it('parses the stamp format, sorted and merged; refuses what is not ranges in 0-4095', () => {
    expect(parseBuckets('0-1023')).toEqual([[0, 1023]]);
    expect(parseBuckets('20-30,0-10')).toEqual([
      [0, 10],
      [20, 30],
    ]);
    expect(parseBuckets('0-10,11-20, 7')).toEqual([[0, 20]]);
    expect(parseBuckets('5')).toEqual([[5, 5]]);
    expect(parseBuckets('')).toEqual([]);
    for (const bad of ['0-4096', '10-5', 'a-b', '1;2', '-1', undefined, 7]) expect(parseBuckets(bad)).toBeNull();
  });

  it('compares as sets, not strings', () => {
    expect(
      sameBuckets(parseBuckets('0-10,20-30')!, [
        [20, 30],
        [0, 10],
      ]),
    ).toBe(true);
    expect(
      sameBuckets(parseBuckets('0-1023')!, [
        [0, 511],
        [512, 1023],
      ]),
    ).toBe(true);
    expect(compareBuckets(parseBuckets('1024-2047')!, [[1024, 1535]])).toEqual({ gained: [], lost: [[1536, 2047]] });
    expect(compareBuckets(parseBuckets('0-1023')!, [[0, 1100]])).toEqual({ gained: [[1024, 1100]], lost: [] });
    expect(compareBuckets([], [])).toEqual({ gained: [], lost: [] });
    expect(compareBuckets([[0, 9]], [[5, 14]])).toEqual({ gained: [[10, 14]], lost: [[0, 4]] });
  });

  it('property: gained and lost are exactly the two set differences, and formatBuckets round-trips', () => {
    const set = fc.uniqueArray(fc.integer({ min: 0, max: 4095 }), { maxLength: 300 });
    const toRanges = (xs: number[]): BucketRange[] => xs.map((x) => [x, x] as const);
    fc.assert(
      fc.property(set, set, (a, b) => {
        const d = compareBuckets(toRanges(a), toRanges(b));
        const members = (rs: readonly BucketRange[]) => rs.flatMap(([lo, hi]) => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i));
        const sa = new Set(a);
        const sb = new Set(b);
        expect(members(d.gained)).toEqual([...sb].filter((x) => !sa.has(x)).sort((x, y) => x - y));
        expect(members(d.lost)).toEqual([...sa].filter((x) => !sb.has(x)).sort((x, y) => x - y));
        expect(members(parseBuckets(formatBuckets(toRanges(a)))!)).toEqual([...sa].sort((x, y) => x - y));
      }),
      { numRuns: 200 },
    );
  });

  it("names the shard the map gives a stamp's buckets to, and the stamped holder of what it gives", () => {
    // The edit: 1536-2047 of sz-2 given to a new sz-3; sz-3 never stamped.
    const map = mapOf([
      ['sz-1', ['0-1023']],
      ['sz-2', ['1024-1535']],
      ['sz-3', ['1536-2047']],
      ['sc-1', ['2048-4095']],
    ]);
    const stamps = new Map<string, StampKnowledge>([
      ['sz-1', stamped('0-1023')],
      ['sz-2', stamped('1024-2047')],
      ['sz-3', { kind: 'unstamped' }],
      ['sc-1', stamped('2048-4095')],
    ]);
    expect(ownershipFaults(map.shards, stamps)).toEqual([
      { shardId: 'sz-2', owned: '1024-2047', mapped: '1024-1535', gained: [], lost: [{ buckets: '1536-2047', givenTo: 'sz-3' }] },
    ]);
    // Had sz-3 been stamped with them too (by hand), sz-3 agrees with the map; sz-2 still does not.
    stamps.set('sz-3', stamped('1536-2047'));
    expect(ownershipFaults(map.shards, stamps).map((f) => f.shardId)).toEqual(['sz-2']);

    // A map that gives sz-1 buckets of sc-1's stamp names sc-1 as their holder.
    const grab = mapOf([
      ['sz-1', ['0-1023', '2048-2100']],
      ['sz-2', ['1024-2047']],
      ['sc-1', ['2101-4095']],
    ]);
    const faults = ownershipFaults(
      grab.shards,
      new Map([
        ['sz-1', stamped('0-1023')],
        ['sz-2', stamped('1024-2047')],
        ['sc-1', stamped('2048-4095')],
      ]),
    );
    expect(faults).toEqual([
      { shardId: 'sz-1', owned: '0-1023', mapped: '0-1023,2048-2100', gained: [{ buckets: '2048-2100', heldBy: 'sc-1' }], lost: [] },
      { shardId: 'sc-1', owned: '2048-4095', mapped: '2101-4095', gained: [], lost: [{ buckets: '2048-2100', givenTo: 'sz-1' }] },
    ]);
    const err = new ShardOwnershipError(faults);
    expect(err.code).toBe('SHARD_OWNERSHIP_MISMATCH');
    expect(err.message).toMatch(
      /shard "sz-1" owns buckets 0-1023 \(its ownership record\), the map gives it 0-1023,2048-2100: the map gives it 2048-2100, which shard "sc-1" owns/,
    );
    expect(err.message).toMatch(/shard "sc-1" owns buckets 2048-4095 .*the map takes away 2048-2100 \(giving them to "sz-1"\)/);
    expect(err.message).toMatch(/restore the map .*\("sz-1": 0-1023, "sc-1": 2048-4095\), or move buckets/);
  });

  it('an empty shard agrees with an empty stamp; unknown and unstamped shards are not judged', () => {
    const map = mapOf([
      ['sz-1', ['0-4095']],
      ['sz-9', []],
    ]);
    expect(
      ownershipFaults(
        map.shards,
        new Map([
          ['sz-1', stamped('0-4095')],
          ['sz-9', stamped('')],
        ]),
      ),
    ).toEqual([]);
    expect(
      ownershipFaults(
        map.shards,
        new Map<string, StampKnowledge>([
          ['sz-1', { kind: 'unknown', reason: 'down' }],
          ['sz-9', { kind: 'unstamped' }],
        ]),
      ),
    ).toEqual([]);
    expect(ownershipFaults(map.shards, new Map([['sz-9', stamped('0-9')]]))).toEqual([
      { shardId: 'sz-9', owned: '0-9', mapped: 'none', gained: [], lost: [{ buckets: '0-9', givenTo: 'sz-1' }] },
    ]);
  });
});
