import { ValidationError } from '../errors/index.js';
import { validatePositiveInt } from './keys.js';
import type { RedisClient } from '../redis/connection.js';
import { toChange, type ZoneFeed } from './zone-feed.js';
import type { RoomChange, ZoneEvent, ZoneSnapshot } from './types.js';

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
  private queue: ZoneEvent[] = [];
  /** Next event of `queue` to hand out (an index, so a batch is not shifted one by one). */
  private taken = 0;
  private readonly closing: Promise<unknown>;
  private stop: () => void = () => undefined;
  private last: number | undefined;
  private started = false;
  private closed = false;
  private readonly fromVersion: number | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(source: ZoneWatchSource, options: WatchOptions = {}) {
    this.zone = source.zone;
    this.source = source;
    this.batchSize = checkWatchOptions(options).batchSize;
    this.fromVersion = options.fromVersion;
    this.closing = new Promise<unknown>((resolve) => (this.stop = () => resolve(undefined)));
  }

  /** The version of the last event handed out (undefined before the first). */
  get version(): number | undefined {
    return this.last;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<ZoneEvent, undefined>> {
    // Calls are served one after another, so two overlapping next() never read the log twice.
    const result = this.chain.then(() => this.pull());
    this.chain = result.catch(() => undefined);
    return result;
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
    this.stop();
    this.source.onClose();
  }

  private async pull(): Promise<IteratorResult<ZoneEvent, undefined>> {
    for (;;) {
      if (this.closed) return { done: true, value: undefined };
      const event = this.queue[this.taken];
      if (event) {
        this.taken++;
        return { done: false, value: event };
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
      if (this.fromVersion !== undefined && this.fromVersion <= (await this.source.currentVersion())) {
        this.last = this.fromVersion;
        return;
      }
      // No resume point, or one from the future (the zone was reset): start from a snapshot.
      return this.resync();
    }
    if (this.last === undefined) return this.resync();
    const got = await this.source.feed.changesAfter(this.last, this.batchSize, this.closing);
    if (this.closed) return;
    if (got === 'behind') return this.catchUp(this.last);
    return this.take(got);
  }

  /** Behind the feed's window: the next changes straight from the log (non-blocking). */
  private async catchUp(last: number): Promise<void> {
    const entries = await this.source.reader.xrange(this.source.changesKey, `${last + 1}-0`, '+', 'COUNT', this.batchSize);
    if (this.closed) return;
    const changes = entries.map(([id, fields]) => toChange(this.zone, id, fields));
    // Nothing after `last`, or a first entry past it: trimmed away before we read it.
    if (changes[0]?.version !== last + 1) return this.resync();
    return this.take(changes);
  }

  /**
   * Queues the changes after `last` (the log and the feed's window are contiguous, so only the
   * first can be past `last + 1`: a gap there means entries were trimmed, and the watch resyncs).
   */
  private take(changes: readonly RoomChange[]): Promise<void> | undefined {
    const last = this.last ?? 0;
    const fresh = changes.filter((c) => c.version > last);
    const first = fresh[0];
    if (!first) return undefined;
    if (first.version !== last + 1) return this.resync();
    this.queue = fresh;
    this.taken = 0;
    this.last = (fresh[fresh.length - 1] as RoomChange).version;
    return undefined;
  }

  private async resync(): Promise<void> {
    const snap = await this.source.snapshot();
    if (this.closed) return;
    this.queue = [snap];
    this.taken = 0;
    this.last = snap.version;
  }
}
