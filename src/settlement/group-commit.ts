export interface GroupCommitOptions<I> {
  /** Most items run as one unit (one statement or transaction, one commit). */
  maxBatch: number;
  /** Units in flight at once. */
  maxInFlight: number;
  /**
   * How long the first waiting item waits for company while a slot is free (default 0: a lone item
   * runs at once). Items that queued up behind busy slots never linger: they have waited already.
   */
  lingerMs?: number;
  /** Items with the same key never share a unit (two submissions, or two jobs, of one match). */
  keyOf?: (item: I) => string;
  /**
   * Whether a unit of several items that failed with `err` is run again one item at a time, so one
   * bad item cannot fail its neighbours (default: never). A failure that would fail every item
   * alike (the shard is down) should answer false: each caller then gets that error at once.
   */
  isolate?: (err: unknown) => boolean;
}

interface Waiter<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit, for the submit path's statements and the worker's apply transactions alike:
 * concurrent callers hand their item here and await; whatever waits when a slot is free runs as ONE
 * unit (`run`), and each caller gets its own output (by position). Batches grow with load and
 * shrink to one item when idle. A caller resolves only after the unit carrying its item has
 * committed, so durability per caller is what it would be alone.
 */
export class GroupCommit<I, O> {
  private waiting: Waiter<I, O>[] = [];
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private lingered = false;
  private draining = false;
  private readonly idle = new Set<() => void>();

  constructor(
    private readonly run: (items: I[]) => Promise<O[]>,
    private readonly options: GroupCommitOptions<I>,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      this.pump();
    });
  }

  /**
   * Hands several items over at once: they queue together before a unit starts, so they share one
   * (up to maxBatch, keys apart) where submitting them one by one would run the first alone.
   */
  submitAll(items: readonly I[]): Promise<O>[] {
    const out = items.map((item) => new Promise<O>((resolve, reject) => this.waiting.push({ item, resolve, reject })));
    this.pump();
    return out;
  }

  /** Runs what waits now without lingering, and resolves once nothing waits or is in flight. */
  async drain(): Promise<void> {
    this.draining = true;
    this.pump();
    if (this.inFlight === 0 && this.waiting.length === 0) return;
    await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  private pump(): void {
    const lingerMs = this.options.lingerMs ?? 0;
    while (this.inFlight < this.options.maxInFlight && this.waiting.length > 0) {
      const full = this.waiting.length >= this.options.maxBatch;
      if (!full && !this.draining && !this.lingered && lingerMs > 0) {
        this.timer ??= setTimeout(() => {
          this.timer = undefined;
          this.lingered = true;
          this.pump();
        }, lingerMs);
        return;
      }
      this.startUnit();
    }
  }

  private startUnit(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.lingered = false;
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
      if (this.waiting.length > 0) this.lingered = true;
      this.pump();
      if (this.inFlight === 0 && this.waiting.length === 0) {
        for (const done of this.idle) done();
        this.idle.clear();
      }
    });
  }

  private async execute(batch: Waiter<I, O>[]): Promise<void> {
    try {
      const out = await this.run(batch.map((w) => w.item));
      batch.forEach((w, i) => (i < out.length ? w.resolve(out[i] as O) : w.reject(new Error(`group commit: no output for item ${i}`))));
    } catch (err) {
      if (batch.length === 1 || !(this.options.isolate?.(err) ?? false)) {
        for (const w of batch) w.reject(err);
        return;
      }
      // One at a time, in the slot this unit holds: isolating must not widen what runs at once.
      for (const w of batch) {
        await this.run([w.item]).then(
          (o) => (o.length > 0 ? w.resolve(o[0] as O) : w.reject(new Error('group commit: no output for item 0'))),
          (e: unknown) => w.reject(e),
        );
      }
    }
  }
}
