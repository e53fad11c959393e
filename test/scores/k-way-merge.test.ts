import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors/index.js';
import { kWayMerge } from '../../src/scores/index.js';

const byNumber = (a: number, b: number) => a - b;

describe('kWayMerge', () => {
  it('property: equals sorting the union and taking the first `limit`', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.integer({ min: -50, max: 50 }), { maxLength: 30 }), { maxLength: 8 }), fc.nat(100), (lists, limit) => {
        const sorted = lists.map((l) => [...l].sort(byNumber));
        expect(kWayMerge(sorted, byNumber, limit)).toEqual(sorted.flat().sort(byNumber).slice(0, limit));
      }),
    );
  });
});

describe('kWayMerge as the public helper', () => {
  const byKey = (a: { k: number }, b: { k: number }) => a.k - b.k;

  it('property: stable, equal items in list order, so it equals a stable sort of the lists joined', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 20 }), { maxLength: 6 }), (keys) => {
        const lists = keys.map((l, i) => [...l].sort((a, b) => a - b).map((k, j) => ({ k, from: `${i}.${j}` })));
        expect(kWayMerge(lists, byKey)).toEqual(lists.flat().sort(byKey));
      }),
    );
  });

  it('takes every item without a limit, and refuses a limit that is not a count', () => {
    expect(kWayMerge([[1, 4], [2, 3], []], byNumber)).toEqual([1, 2, 3, 4]);
    expect(
      kWayMerge(
        [
          [1, 4],
          [2, 3],
        ],
        byNumber,
        0,
      ),
    ).toEqual([]);
    for (const bad of [-1, 1.5, Number.NaN, '3']) {
      expect(() => kWayMerge([[1]], byNumber, bad as number)).toThrow(ValidationError);
    }
    expect(() => kWayMerge([1] as unknown as number[][], byNumber)).toThrow(ValidationError);
  });
});
