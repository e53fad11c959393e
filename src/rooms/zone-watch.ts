import type { Redis } from 'ioredis';
import { ValidationError } from '../errors/index.js';
import { validatePositiveInt } from './keys.js';
import type { RoomChange, ZoneEvent, ZoneSnapshot } from './types.js';

export interface WatchOptions {
  /**
   * The last version the consumer applied (from a snapshot or a change it kept). Omitted: the
   * watch starts with a snapshot. When the change log no longer reaches back that far, the watch
   * yields a fresh snapshot instead of a gap.
   */
  readonly fromVersion?: number;
  /** How long one XREAD waits on the server before looping (default 5000 ms). Changes arrive at once either way. */
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
  /** Dedicated client: XREAD BLOCK holds it. Closed by the watch. */
  readonly client: Redis;
  readonly changesKey: string;
  snapshot(): Promise<ZoneSnapshot>;
  currentVersion(): Promise<number>;
  onClose(): void;
}

/**
 * The changes of one zone as an async iterator: a snapshot, then one RoomChange per version, in
 * order and without gaps. A consumer that fell behind the trimmed change log gets a new snapshot
 * (the resynchronisation point) and continues from its version. `return()` (a `break` out of
 * `for await`) or `close()` releases the dedicated connection at once, even mid-XREAD.
 */
export class ZoneWatch implements AsyncIterableIterator<ZoneEvent> {
  readonly zone: string;
  private readonly source: ZoneWatchSource;
  private readonly blockMs: number;
  private readonly batchSize: number;
  private readonly queue: ZoneEvent[] = [];
  private last: number | undefined;
  private started = false;
  private closed = false;
  private readonly fromVersion: number | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(source: ZoneWatchSource, options: WatchOptions = {}) {
    this.zone = source.zone;
    this.source = source;
    this.blockMs = validatePositiveInt(options.blockMs ?? 5000, 'blockMs', 60_000);
    this.batchSize = validatePositiveInt(options.batchSize ?? 500, 'batchSize', 100_000);
    if (options.fromVersion !== undefined && (!Number.isSafeInteger(options.fromVersion) || options.fromVersion < 0)) {
      throw new ValidationError('fromVersion', `${options.fromVersion} is not a version (a non-negative integer)`);
    }
    this.fromVersion = options.fromVersion;
    // A dropped connection surfaces as a failed XREAD; without a listener ioredis would print it.
    source.client.on('error', () => undefined);
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
    this.queue.length = 0;
    this.source.client.disconnect();
    this.source.onClose();
  }

  private async pull(): Promise<IteratorResult<ZoneEvent, undefined>> {
    for (;;) {
      if (this.closed) return { done: true, value: undefined };
      const event = this.queue.shift();
      if (event) return { done: false, value: event };
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
    const reply = await this.source.client.xread('COUNT', this.batchSize, 'BLOCK', this.blockMs, 'STREAMS', this.source.changesKey, `${this.last}-0`);
    if (this.closed || !reply) return;
    for (const [id, fields] of reply[0]?.[1] ?? []) {
      const change = toChange(this.zone, id, fields);
      if (change.version > this.last + 1) {
        // Entries between were trimmed away before we read them: resynchronise from a snapshot.
        return this.resync();
      }
      if (change.version <= this.last) continue;
      this.last = change.version;
      this.queue.push(change);
    }
  }

  private async resync(): Promise<void> {
    const snap = await this.source.snapshot();
    if (this.closed) return;
    this.queue.length = 0;
    this.last = snap.version;
    this.queue.push(snap);
  }
}

function toChange(zone: string, id: string, fields: readonly string[]): RoomChange {
  let roomId = '';
  let count = 0;
  let capacity = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const v = fields[i + 1] as string;
    switch (fields[i]) {
      case 'r':
        roomId = v;
        break;
      case 'c':
        count = Number(v);
        break;
      case 'k':
        capacity = Number(v);
        break;
    }
  }
  return { type: 'change', zone, roomId, count, capacity, version: Number(id.slice(0, id.indexOf('-'))) };
}
