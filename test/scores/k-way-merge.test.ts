import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { kWayMerge } from '../../src/scores/k-way-merge.js';

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
