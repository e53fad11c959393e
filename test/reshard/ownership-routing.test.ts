import { describe, expect, it } from 'vitest';
import { MapAheadOfOwnershipError, ShardOwnershipError, validateShardMap } from '../../src/index.js';
import { combineRouting, parseOwnershipRecord, type OwnershipRecord } from '../../src/db/live-routing.js';
import { bucketFilter } from '../../src/db/owned-filter.js';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { ShardDatabase } from '../../src/db/index.js';

/** combineRouting is pure: the rules of live routing, bucket by bucket, without a database. */
const mapOf = (buckets: Record<string, string[]>, epoch?: number) =>
  validateShardMap({
    version: 1,
    buckets: 4096,
    ...(epoch === undefined ? {} : { epoch }),
    regions: ['r'],
    shards: Object.entries(buckets).map(([id, b]) => ({ id, region: 'r', connection: `postgres://h/${id}`, buckets: b })),
  });

const rec = (r: Partial<OwnershipRecord>): OwnershipRecord => ({ version: 1, owned: [], incoming: [], frozen: [], movedTo: [], ...r });
const owner = (m: ReturnType<typeof combineRouting>['map'], b: number) => m.shards[m.bucketOwner[b] as number]?.id;

describe('combineRouting', () => {
  const map = mapOf({ a: ['0-2047'], b: ['2048-4095'], c: [] });
  const initial = new Map([
    ['a', rec({ owned: [[0, 2047, 0]] })],
    ['b', rec({ owned: [[2048, 4095, 0]] })],
    ['c', rec({})],
  ]);

  it('records that agree with the map change nothing (the same map object, no override)', () => {
    const live = combineRouting(map, initial);
    expect(live.map).toBe(map);
    expect(live.overrides).toEqual([]);
  });

  it('a move at a higher epoch wins over an older map, from either side of the move alone', () => {
    const moved = new Map([
      ['a', rec({ owned: [[0, 1023, 0]], movedTo: [[1024, 2047, 'c', 1]] })],
      ['b', rec({ owned: [[2048, 4095, 0]] })],
      ['c', rec({ owned: [[1024, 2047, 1]] })],
    ]);
    const live = combineRouting(map, moved);
    expect(owner(live.map, 1024)).toBe('c');
    expect(owner(live.map, 1023)).toBe('a');
    expect(live.map.epoch).toBe(1);
    expect(live.map.shards.find((s) => s.id === 'c')?.bucketCount).toBe(1024);
    expect(live.overrides).toEqual([{ buckets: '1024-2047', mapShard: 'a', owner: 'c', epoch: 1 }]);
    // The target unreadable: the source's movedTo still says where the range went.
    expect(owner(combineRouting(map, new Map([...moved].filter(([id]) => id !== 'c'))).map, 1500)).toBe('c');
    // The source unreadable: the target's claim at epoch 1 beats the map.
    expect(owner(combineRouting(map, new Map([...moved].filter(([id]) => id !== 'a'))).map, 1500)).toBe('c');
  });

  it('a frozen range stays with the shard freezing it (its writes back off) until the target commits', () => {
    const live = combineRouting(
      map,
      new Map([
        ['a', rec({ owned: [[0, 1023, 0]], frozen: [[1024, 2047, 'm1']] })],
        ['b', rec({ owned: [[2048, 4095, 0]] })],
        ['c', rec({ incoming: [[1024, 2047, 'm1']] })],
      ]),
    );
    expect(owner(live.map, 1500)).toBe('a');
    expect(live.frozen.get('a')).toEqual([[1024, 2047]]);
  });

  it('records read across a cut-over (the source mid-freeze, the target after its commit) route to the target, no fault', () => {
    const live = combineRouting(
      map,
      new Map([
        ['a', rec({ owned: [[0, 1023, 0]], frozen: [[1024, 2047, 'm1']] })],
        ['b', rec({ owned: [[2048, 4095, 0]] })],
        ['c', rec({ owned: [[1024, 2047, 1]] })],
      ]),
    );
    expect(owner(live.map, 1500)).toBe('c');
    expect(live.overrides).toEqual([{ buckets: '1024-2047', mapShard: 'a', owner: 'c', epoch: 1 }]);
    // And the source read before its freeze: its owned@0 loses to the target's epoch 1 as well.
    const before = combineRouting(
      map,
      new Map([
        ['a', rec({ owned: [[0, 2047, 0]] })],
        ['c', rec({ owned: [[1024, 2047, 1]] })],
      ]),
    );
    expect(owner(before.map, 1500)).toBe('c');
  });

  it('a map edit at the live epoch that hides an owner is ShardOwnershipError; above it MapAheadOfOwnershipError', () => {
    const edited = mapOf({ a: ['0-1023'], b: ['2048-4095'], c: ['1024-2047'] });
    let err: unknown;
    try {
      combineRouting(edited, initial);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ShardOwnershipError);
    expect((err as ShardOwnershipError).faults.map((f) => f.shardId).sort()).toEqual(['a', 'c']);
    const ahead = mapOf({ a: ['0-1023'], b: ['2048-4095'], c: ['1024-2047'] }, 1);
    expect(() => combineRouting(ahead, initial)).toThrow(MapAheadOfOwnershipError);
  });

  it('an owner missing from the map is refused; a shard whose record cannot be read is left to the map', () => {
    const gone = new Map([
      ['a', rec({ owned: [[0, 1023, 0]], movedTo: [[1024, 2047, 'z', 1]] })],
      ['b', rec({ owned: [[2048, 4095, 0]] })],
    ]);
    expect(() => combineRouting(map, gone)).toThrow(ShardOwnershipError);
    expect(owner(combineRouting(map, new Map([['b', rec({ owned: [[2048, 4095, 0]] })]])).map, 5)).toBe('a');
  });

  it('a map giving a shard buckets nobody owns (their shard left the map) is refused, naming them', () => {
    const removed = new Map([
      ['a', rec({ owned: [[100, 2047, 0]] })],
      ['b', rec({ owned: [[2048, 4095, 0]] })],
      ['c', rec({})],
    ]);
    let err: unknown;
    try {
      combineRouting(map, removed);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ShardOwnershipError);
    expect((err as ShardOwnershipError).faults).toEqual([
      { shardId: 'a', owned: '100-2047', mapped: '0-2047', gained: [{ buckets: '0-99', heldBy: null }], lost: [] },
    ]);
  });

  it('parseOwnershipRecord refuses what is not a record', () => {
    expect(parseOwnershipRecord({ version: 2, owned: [[0, 10, 0]] })).toMatchObject({ version: 2, owned: [[0, 10, 0]], movedTo: [] });
    for (const bad of [
      null,
      'x',
      { version: 1, owned: [[0, 4096, 0]] },
      { version: 1, owned: [[3, 1, 0]] },
      { owned: [] },
      { version: 1, movedTo: [[0, 1, 2, 3]] },
    ]) {
      expect(parseOwnershipRecord(bad), JSON.stringify(bad)).toBeNull();
    }
  });

  it('bucketFilter: the whole space is true, nothing is false, ranges merge into bucket comparisons', () => {
    const db = new Kysely<ShardDatabase>({ dialect: new PostgresDialect({ pool: new pg.Pool({ max: 1 }) }) });
    const where = (ranges: [number, number][]) => db.selectFrom('players as s').select('s.player_id').where(bucketFilter('s.player_id', ranges)).compile().sql;
    expect(where([[0, 4095]])).toMatch(/where true$/);
    expect(
      where([
        [0, 100],
        [101, 4095],
      ]),
    ).toMatch(/where true$/);
    expect(where([])).toMatch(/where false$/);
    expect(
      where([
        [10, 20],
        [21, 30],
        [40, 40],
      ]),
    ).toMatch(/where \(\(\("s"\."player_id" >> 10\) & 4095\) BETWEEN 10 AND 30 OR \(\("s"\."player_id" >> 10\) & 4095\) = 40\)$/);
    expect(() => bucketFilter('x; drop', [])).toThrow(TypeError);
  });
});
