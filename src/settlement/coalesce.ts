import { ShardUnavailableError } from '../errors/index.js';

export interface CoalescerOptions<I> {
  /** Most items run as one unit (one statement, one commit). */
  maxBatch: number;
  /** Units in flight at once. */
  maxInFlight: number;
  /** Items with the same key never share a unit (e.g. two submissions of one match id). */
  keyOf?: (item: I) => string;
}

interface Waiter<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for the submit path: concurrent callers hand their item here and await; whatever
 * waits when a slot is free runs as ONE unit (`run`, one statement and one commit on a shard), and
 * each caller gets its own output. No linger: a lone item runs at once; items pile up only while
 * the slots are busy, so batches grow with load. Each caller still resolves only after the unit
 * that carries its item has committed, so durability per caller is unchanged.
 *
 * If a unit of several items fails for a reason other than the shard being unreachable, each item
 * is run again on its own, so one bad item cannot fail its neighbours.
 */
export class Coalescer<I, O> {
  private waiting: Waiter<I, O>[] = [];
  private inFlight = 0;

  constructor(
    private readonly run: (items: I[]) => Promise<O[]>,
    private readonly options: CoalescerOptions<I>,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.options.maxInFlight && this.waiting.length > 0) {
      const batch: Waiter<I, O>[] = [];
      const keys = new Set<string>();
      const rest: Waiter<I, O>[] = [];
      for (const w of this.waiting) {
        const key = this.options.keyOf?.(w.item);
        if (batch.length < this.options.maxBatch && (key === undefined || !keys.has(key))) {
          if (key !== undefined) keys.add(key);
          batch.push(w);
        } else rest.push(w);
      }
      this.waiting = rest;
      this.inFlight++;
      void this.execute(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async execute(batch: Waiter<I, O>[]): Promise<void> {
    try {
      const out = await this.run(batch.map((w) => w.item));
      batch.forEach((w, i) => w.resolve(out[i] as O));
    } catch (err) {
      if (batch.length === 1 || err instanceof ShardUnavailableError) {
        for (const w of batch) w.reject(err);
        return;
      }
      await Promise.all(
        batch.map((w) =>
          this.run([w.item]).then(
            (o) => w.resolve(o[0] as O),
            (e: unknown) => w.reject(e),
          ),
        ),
      );
    }
  }
}
