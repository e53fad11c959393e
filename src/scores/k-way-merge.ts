/**
 * Merges lists that are each sorted by `compare` into the first `limit` items of their union,
 * with a binary heap of list heads: O(limit · log k) for k lists, never touching the tails.
 */
export function kWayMerge<T>(lists: readonly (readonly T[])[], compare: (a: T, b: T) => number, limit: number): T[] {
  // Heap of [list index, position in list], ordered by the item at that position.
  const heap: [number, number][] = [];
  const itemAt = (h: [number, number]): T => (lists[h[0]] as readonly T[])[h[1]] as T;
  const less = (i: number, j: number): boolean => compare(itemAt(heap[i]!), itemAt(heap[j]!)) < 0;
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
