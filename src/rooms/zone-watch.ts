import { ValidationError } from '../errors/index.js';
import { validatePositiveInt } from './keys.js';
import type { RedisClient } from '../redis/connection.js';
import { toChange, type ChangeStep, type ZoneFeed } from './zone-feed.js';
import type { RoomChange, ZoneEvent, ZoneSnapshot } from './types.js';

/** An event as next() hands it out (the feed's changes come shared, already in this form). */
type Step = Readonly<IteratorYieldResult<ZoneEvent>>;
const step = (value: ZoneEvent): Step => ({ done: false, value });

export interface WatchOptions {
  /**
   * The last version the consumer applied (from a snapshot or a change it kept). Omitted: the
   * watch starts with a snapshot. When the change log no longer reaches back that far, the watch
   * yields a fresh snapshot instead of a gap.
   */
  readonly fromVersion?: number;
  /**
   * How long one XREAD waits on the server before looping (default 5000 ms). Changes arrive at once
   * either way. The zone's reader is shared: the first watch of a zone sets it for all.
   */
  readonly blockMs?: number;
  /** Changes read per round trip (default 500). */
  readonly batchSize?: number;
  /**
   * While a zone is watched, the service reaps its lapsed seats this often (default 1000 ms), so
   * a watcher of an idle zone still sees a dead client's seat go within about a second of its
   * lease. One sweeper per zone per service, however many watches; `false` leaves reaping to the
   * calls that touch the zone and to `startSweeper`.
   */
  readonly sweepMs?: number | false;
}

export interface ZoneWatchSource {
  readonly zone: string;
  /** The zone's shared change-log reader (the watch has joined it; `onClose` leaves it). */
  readonly feed: ZoneFeed;
  /** A non-blocking client, for reading the log when the watch is behind the feed's window. */
  readonly reader: RedisClient;
  readonly changesKey: string;
  snapshot(): Promise<ZoneSnapshot>;
  currentVersion(): Promise<number>;
  onClose(): void;
}

/** Validates the options of a watch before anything is started for it. */
export function checkWatchOptions(options: WatchOptions): { blockMs: number; batchSize: number } {
  const blockMs = validatePositiveInt(options.blockMs ?? 5000, 'blockMs', 60_000);
  const batchSize = validatePositiveInt(options.batchSize ?? 500, 'batchSize', 100_000);
  if (options.fromVersion !== undefined && (!Number.isSafeInteger(options.fromVersion) || options.fromVersion < 0)) {
    throw new ValidationError('fromVersion', `${options.fromVersion} is not a version (a non-negative integer)`);
  }
  return { blockMs, batchSize };
}

/**
 * The changes of one zone as an async iterator: a snapshot, then one RoomChange per version, in
 * order and without gaps. A consumer that fell behind the trimmed change log gets a new snapshot
 * (the resynchronisation point) and continues from its version. Every watch of the zone in the
 * service reads from one shared ZoneFeed at its own position; `return()` (a `break` out of
 * `for await`) or `close()` ends the watch at once, even while it waits, and the last watch of the
 * zone to close releases the feed's connection.
 */
export class ZoneWatch implements AsyncIterableIterator<ZoneEvent> {
  readonly zone: string;
  private readonly source: ZoneWatchSource;
  private readonly batchSize: number;
  private queue: readonly Step[] = [];
  /** Next event of `queue` to hand out (an index, so a batch is not shifted one by one). */
  private taken = 0;
  /** The answer of a lean wait in progress (waitThenNext). */
  private waiting: { resolve: (r: unknown) => void; reject: (e: unknown) => void; batch: boolean } | undefined;
  /** Ends the slow path's wait for the feed (set while one runs): close() calls it. */
  private wake: ((value?: unknown) => void) | undefined;
  private readonly waitArrival = (arrival: Promise<unknown>): Promise<unknown> =>
    new Promise<unknown>((resolve) => {
      this.wake = resolve;
      arrival.then(resolve, resolve);
    });
  private last: number | undefined;
  /** The feed's epoch `last` belongs to. */
  private epoch = 0;
  private started = false;
  private closed = false;
  private readonly fromVersion: number | undefined;
  /** The pull in progress, if any: next() calls queue behind it. */
  private pending: Promise<unknown> | undefined;

  constructor(source: ZoneWatchSource, options: WatchOptions = {}) {
    this.zone = source.zone;
    this.source = source;
    this.batchSize = checkWatchOptions(options).batchSize;
    this.fromVersion = options.fromVersion;
  }

  /** The version of the last event handed out (undefined before the first). */
  get version(): number | undefined {
    return this.last;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<ZoneEvent, undefined>> {
    // The common case at scale (thousands of watches, each handed the feed's batch): answered from
    // the queue or the feed's window with no promise chain, or by one lean wait for the next batch.
    if (this.pending === undefined && !this.closed) {
      const now = this.takeNow();
      if (now === 'wait') return this.waitThenNext(false);
      if (now !== 'slow') return Promise.resolve(now);
    }
    // Otherwise calls are served one after another, so two overlapping next() never read the log twice.
    const result = (this.pending ?? Promise.resolve()).then(() => this.pull());
    const settled: Promise<unknown> = result.then(
      () => this.release(settled),
      () => this.release(settled),
    );
    this.pending = settled;
    return result;
  }

  /**
   * What next() can answer at once: an event (from the queue, or the feed's window when the watch
   * is caught up with its batch), `'wait'` (the feed has nothing newer yet), or `'slow'` (a start,
   * a snapshot, a read of the log: the async path).
   */
  private takeNow(): IteratorResult<ZoneEvent, undefined> | 'wait' | 'slow' {
    const queued = this.queue[this.taken];
    if (queued !== undefined) {
      this.taken++;
      return queued;
    }
    if (!this.started || this.last === undefined || this.epoch !== this.source.feed.epoch) return 'slow';
    const got = this.source.feed.peek(this.last, this.batchSize);
    if (got === undefined) return 'wait';
    const first = got === 'behind' ? undefined : got[0];
    if (got === 'behind' || first === undefined || first.value.version !== this.last + 1) return 'slow';
    this.queue = got;
    this.taken = 1;
    this.last = (got[got.length - 1] as ChangeStep).value.version;
    return first;
  }

  /**
   * Waits for the feed's next batch with as little as it takes: one promise (the answer) and one
   * callback (made once per watch) on the feed's arrival per batch, which is what thousands of
   * watches of a busy zone do all the time.
   */
  private waitThenNext<T>(batch: boolean): Promise<T> {
    const answer = new Promise<T>((resolve, reject) => {
      this.waiting = { resolve: resolve as (r: unknown) => void, reject, batch };
    });
    this.source.feed.onNext(this.onArrival);
    this.pending = answer;
    return answer;
  }

  /**
   * The same watch a batch at a time: each step yields every event available at once (at most
   * `batchSize`), in order, a snapshot first as ever. For consumers of busy zones: the cost is one
   * wake per batch, not one per event, so thousands of watchers keep up with any rate of changes
   * (the batches grow instead of the lag). The arrays are shared between watches: read them, do
   * not change them. Use either this or the watch's own iteration, not both.
   */
  batches(): AsyncIterableIterator<readonly ZoneEvent[]> {
    const iterator: AsyncIterableIterator<readonly ZoneEvent[]> = {
      [Symbol.asyncIterator]: () => iterator,
      next: () => this.nextBatch(),
      return: () => {
        this.close();
        return Promise.resolve({ done: true, value: undefined });
      },
    };
    return iterator;
  }

  private nextBatch(): Promise<IteratorResult<readonly ZoneEvent[], undefined>> {
    if (this.pending === undefined && !this.closed) {
      const now = this.takeBatchNow();
      if (now === 'wait') return this.waitThenNext(true);
      if (now !== 'slow') return Promise.resolve({ done: false, value: now });
    }
    // A start, a snapshot or a read of the log: one event the slow way, with whatever came with it.
    return this.next().then((r): IteratorResult<readonly ZoneEvent[], undefined> => (r.done ? r : { done: false, value: [r.value, ...this.drain()] }));
  }

  /** takeNow for a batch: what is queued, else the feed's batch after `last` (shared as it is). */
  private takeBatchNow(): readonly ZoneEvent[] | 'wait' | 'slow' {
    if (this.taken < this.queue.length) return this.drain();
    if (!this.started || this.last === undefined || this.epoch !== this.source.feed.epoch) return 'slow';
    const got = this.source.feed.peekEvents(this.last, this.batchSize);
    if (got === undefined) return 'wait';
    const first = got === 'behind' ? undefined : got[0];
    if (got === 'behind' || first === undefined || first.version !== this.last + 1) return 'slow';
    this.last = (got[got.length - 1] as RoomChange).version;
    return got;
  }

  /** The queued events not handed out yet, now handed out. */
  private drain(): ZoneEvent[] {
    const out = this.queue.slice(this.taken).map((s) => s.value);
    this.taken = this.queue.length;
    return out;
  }

  /** The feed's arrival (or the watch's close) during waitThenNext. */
  private readonly onArrival = (error: unknown): void => {
    const waiting = this.waiting;
    if (!waiting) return;
    if (this.closed) {
      this.waiting = undefined;
      return waiting.resolve({ done: true, value: undefined });
    }
    if (error instanceof Error) {
      this.waiting = undefined;
      this.pending = undefined;
      this.close();
      return waiting.reject(error);
    }
    const now = waiting.batch ? this.takeBatchNow() : this.takeNow();
    if (now === 'wait') {
      this.source.feed.onNext(this.onArrival);
      return undefined;
    }
    this.waiting = undefined;
    this.pending = undefined;
    if (now === 'slow') waiting.resolve(waiting.batch ? this.nextBatch() : this.next());
    else waiting.resolve(waiting.batch ? { done: false, value: now } : now);
  };

  private release(settled: Promise<unknown>): void {
    if (this.pending === settled) this.pending = undefined;
  }

  async return(): Promise<IteratorResult<ZoneEvent, undefined>> {
    this.close();
    return { done: true, value: undefined };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.taken = 0;
    this.wake?.();
    this.onArrival(undefined);
    this.source.onClose();
  }

  private async pull(): Promise<IteratorResult<ZoneEvent, undefined>> {
    for (;;) {
      if (this.closed) return { done: true, value: undefined };
      const queued = this.queue[this.taken];
      if (queued) {
        this.taken++;
        return queued;
      }
      try {
        await this.fill();
      } catch (err) {
        if (this.closed) return { done: true, value: undefined };
        // for-await does not call return() after a throwing next(): release the connection here.
        this.close();
        throw err;
      }
    }
  }

  private async fill(): Promise<void> {
    if (!this.started) {
      this.started = true;
      const epoch = this.source.feed.epoch;
      if (this.fromVersion !== undefined && this.fromVersion <= (await this.source.currentVersion())) {
        this.last = this.fromVersion;
        this.epoch = epoch;
        return;
      }
      // No resume point, or one from the future (the zone was reset): start from a snapshot.
      return this.resync();
    }
    if (this.source.feed.closed) {
      this.close(); // the service closed under the watch
      return;
    }
    if (this.last === undefined || this.epoch !== this.source.feed.epoch) return this.resync();
    const got = await this.source.feed.changesAfter(this.last, this.batchSize, this.waitArrival);
    if (this.closed) return;
    if (got === 'behind') return this.catchUp(this.last);
    return this.take(got);
  }

  /** Behind the feed's window: the next changes straight from the log (non-blocking). */
  private async catchUp(last: number): Promise<void> {
    const entries = await this.source.reader.xrange(this.source.changesKey, `${last + 1}-0`, '+', 'COUNT', this.batchSize);
    if (this.closed) return;
    const changes = entries.map(([id, fields]) => step(toChange(this.zone, id, fields)) as ChangeStep);
    // Nothing after `last`, or a first entry past it: trimmed away before we read it.
    if (changes[0]?.value.version !== last + 1) return this.resync();
    return this.take(changes);
  }

  /**
   * Queues the changes after `last` (the log and the feed's window are contiguous, so only the
   * first can be past `last + 1`: a gap there means entries were trimmed, and the watch resyncs).
   */
  private take(changes: readonly ChangeStep[]): Promise<void> | undefined {
    const last = this.last ?? 0;
    // The feed hands every watch at one position the same array: taken as it is, never copied or changed.
    const fresh = changes[0] !== undefined && changes[0].value.version > last ? changes : changes.filter((c) => c.value.version > last);
    const first = fresh[0];
    if (!first) return undefined;
    if (first.value.version !== last + 1) return this.resync();
    this.queue = fresh;
    this.taken = 0;
    this.last = (fresh[fresh.length - 1] as ChangeStep).value.version;
    return undefined;
  }

  private async resync(): Promise<void> {
    const epoch = this.source.feed.epoch;
    const snap = await this.source.snapshot();
    if (this.closed) return;
    this.queue = [step(snap)];
    this.taken = 0;
    this.last = snap.version;
    this.epoch = epoch;
  }
}
