export interface BatcherOptions {
  /** Most parts applied in one transaction. */
  maxBatch: number;
  /** How long the first waiting part waits for company before a flush. */
  lingerMs: number;
  /** Transactions in flight at once on the shard. */
  maxInFlight: number;
}

interface Waiter<R> {
  key: string;
  resolve: (r: R) => void;
  reject: (err: unknown) => void;
}

/**
 * Micro-batching on top of the open-source BullMQ worker: each job's processor hands its key here
 * and awaits; a flush runs `apply` on everything waiting (up to maxBatch) as one unit and settles
 * each waiter with its own result. With the worker's concurrency >= maxBatch, a busy queue fills
 * a batch while the previous transaction commits, so batches grow with load and shrink to one
 * part (after lingerMs) when idle.
 */
export class Batcher<R> {
  private waiting: Waiter<R>[] = [];
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private draining = false;
  private readonly idle = new Set<() => void>();

  constructor(
    private readonly apply: (keys: string[]) => Promise<Map<string, R>>,
    private readonly options: BatcherOptions,
  ) {}

  submit(key: string): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ key, resolve, reject });
      this.schedule();
    });
  }

  /** Flushes what waits now, without lingering, and resolves when nothing is in flight. */
  async drain(): Promise<void> {
    this.draining = true;
    this.schedule();
    if (this.inFlight === 0 && this.waiting.length === 0) return;
    await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  private schedule(): void {
    while (this.inFlight < this.options.maxInFlight && (this.waiting.length >= this.options.maxBatch || ((this.draining || this.lingerOver()) && this.waiting.length > 0))) {
      this.flush();
    }
    if (this.waiting.length > 0 && this.timer === undefined && this.inFlight < this.options.maxInFlight) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.lingered = true;
        this.schedule();
      }, this.options.lingerMs);
    }
  }

  private lingered = false;

  private lingerOver(): boolean {
    return this.lingered || this.options.lingerMs <= 0;
  }

  private flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.lingered = false;
    const batch = this.waiting.splice(0, this.options.maxBatch);
    this.inFlight++;
    const keys = [...new Set(batch.map((w) => w.key))];
    this.apply(keys)
      .then(
        (results) => {
          for (const w of batch) {
            const r = results.get(w.key);
            if (r === undefined) w.reject(new Error(`no result for ${w.key}`));
            else w.resolve(r);
          }
        },
        (err: unknown) => {
          for (const w of batch) w.reject(err);
        },
      )
      .finally(() => {
        this.inFlight--;
        // Parts that queued up behind a full pipeline have waited long enough: no linger for them.
        if (this.waiting.length > 0) this.lingered = true;
        this.schedule();
        if (this.inFlight === 0 && this.waiting.length === 0) {
          for (const done of this.idle) done();
          this.idle.clear();
        }
      });
  }
}
