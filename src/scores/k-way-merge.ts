import { ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';

/**
 * Merges lists that are each sorted by `compare` (the shards' answers to one ordered query, e.g.
 * the rows of `ShardSet.scatter`) into the first `limit` items of their union, in `compare` order:
 * what an ORDER BY ... LIMIT over all shards returns when each shard ran it with the same LIMIT.
 * A binary heap of list heads: O(limit · log k) for k lists, never touching the tails, so each
 * list may be a shard's whole top-`limit`. Equal items come in list order (the merge is stable).
 * A list that is not sorted by `compare` gives an unsorted result. `limit` defaults to every item.
 */
export function kWayMerge<T>(lists: readonly (readonly T[])[], compare: (a: T, b: T) => number, limit: number = Infinity): T[] {
  if (!Array.isArray(lists) || !lists.every((l) => Array.isArray(l))) throw new ValidationError('lists', 'must be an array of arrays');
  if (typeof compare !== 'function') throw new ValidationError('compare', `must be a function, got ${showValue(compare)}`);
  if (limit !== Infinity && !(Number.isSafeInteger(limit) && limit >= 0)) {
    throw new ValidationError('limit', `must be a non-negative integer, got ${showValue(limit)}`);
  }
  // Heap of [list index, position in list], ordered by the item at that position.
  const heap: [number, number][] = [];
  const itemAt = (h: [number, number]): T => (lists[h[0]] as readonly T[])[h[1]] as T;
  const less = (i: number, j: number): boolean => {
    const a = heap[i]!;
    const b = heap[j]!;
    const c = compare(itemAt(a), itemAt(b));
    return c < 0 || (c === 0 && a[0] < b[0]); // ties by list index: stable
  };
  const swap = (i: number, j: number): void => {
    const t = heap[i]!;
    heap[i] = heap[j]!;
    heap[j] = t;
  };
  const up = (i: number): void => {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(i, parent)) return;
      swap(i, parent);
      i = parent;
    }
  };
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && less(l, m)) m = l;
      if (r < heap.length && less(r, m)) m = r;
      if (m === i) return;
      swap(i, m);
      i = m;
    }
  };

  lists.forEach((list, i) => {
    if (list.length > 0) {
      heap.push([i, 0]);
      up(heap.length - 1);
    }
  });
  const out: T[] = [];
  while (out.length < limit && heap.length > 0) {
    const top = heap[0]!;
    out.push(itemAt(top));
    if (top[1] + 1 < (lists[top[0]] as readonly T[]).length) {
      heap[0] = [top[0], top[1] + 1];
    } else {
      const last = heap.pop()!;
      if (heap.length === 0) break;
      heap[0] = last;
    }
    down(0);
  }
  return out;
}
