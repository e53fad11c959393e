import type { RedisClient } from '../redis/connection.js';
import type { RoomChange } from './types.js';

/**
 * A change as the iterator result every watch hands out: made once by the feed and shared by all
 * its watches (frozen), so a delivery to the ten-thousandth watch allocates nothing but its promise.
 */
export type ChangeStep = Readonly<IteratorYieldResult<RoomChange>>;

export interface ZoneFeedSource {
  readonly zone: string;
  readonly changesKey: string;
  /** Builds the feed's dedicated connection (XREAD BLOCK holds it); called on each start. */
  client(): RedisClient;
  /** How long one XREAD waits on the server before looping. */
  readonly blockMs: number;
  onClose(): void;
}

/** Changes one XREAD takes at most. */
const READ_BATCH = 1000;
/** How long failed reads are retried before the waiting watches get the error. */
const RETRY_FOR_MS = 10_000;
/** Changes kept in memory for watches a little behind the feed; older ones are read from the log. */
const KEEP = 10_000;

/**
 * The one reader of a zone's change log in a service, however many watches: one blocking XREAD on
 * one dedicated connection, its changes kept in a bounded window that every watch reads at its own
 * position. A watch whose position is older than the window reads the log itself (and resyncs from
 * a snapshot when the log was trimmed past it, as a lone reader would). Started by the first watch
 * that waits for a change, closed (connection and all) when the last watch leaves.
 */
export class ZoneFeed {
  readonly zone: string;
  private readonly source: ZoneFeedSource;
  private client: RedisClient | undefined;
  private watchers = 0;
  /** Moves on when the log went back under the feed (see checkLogAfterFailure): watches of an older epoch resync. */
  epoch = 0;
  private isClosed = false;
  private running = false;
  /** Contiguous versions: window[i] has version windowStart + i. */
  private window: ChangeStep[] = [];
  private windowStart = 0;
  /** The version the feed has read up to; undefined until its first watch asks for changes. */
  private head: number | undefined;
  private cached: { window: ChangeStep[]; start: number; end: number; changes: ChangeStep[]; events?: RoomChange[] } | undefined;
  private waiters: ((error?: unknown) => void)[] = [];
  private arrival: { promise: Promise<unknown>; resolve: (error?: unknown) => void } = deferred();

  constructor(source: ZoneFeedSource) {
    this.zone = source.zone;
    this.source = source;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Watches sharing the feed now. */
  get size(): number {
    return this.watchers;
  }

  join(): void {
    this.watchers++;
  }

  /** A watch left; the last one closes the feed and its connection. */
  leave(): void {
    if (--this.watchers <= 0) this.close();
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.window = [];
    this.client?.disconnect();
    this.client = undefined;
    this.wake();
    this.source.onClose();
  }

  /**
   * The changes right after `version` (at most `max`), waiting for the next one when there is none
   * yet. `'behind'`: the window no longer reaches back to `version`, read the log. `[]`: the feed
   * closed, or the watch stopped waiting. Rejects with the feed's read error (the feed restarts on
   * the next call). `wait` turns the feed's next arrival into the watch's own wait (one that its
   * close also ends): nothing is left attached to a promise that never settles, so thousands of
   * watches waiting round after round leave no garbage behind.
   */
  async changesAfter(version: number, max: number, wait: (arrival: Promise<unknown>) => Promise<unknown>): Promise<ChangeStep[] | 'behind'> {
    const epoch = this.epoch;
    for (;;) {
      if (this.isClosed || this.epoch !== epoch) return []; // a new epoch: the watch resyncs
      const got = this.peek(version, max);
      if (got !== undefined) return got;
      const waited = this.arrival.promise;
      const error = await wait(waited);
      if (error instanceof Error) throw error;
      if (waited === this.arrival.promise) return []; // stop won, or the feed closed
    }
  }

  /**
   * Without waiting: the changes right after `version` (at most `max`), `'behind'` (read the log),
   * `[]` once closed, or undefined when there is none yet; then the feed is reading, and `arrival`
   * settles when it has more (with its read error, if that is what ended the wait).
   */
  peek(version: number, max: number): ChangeStep[] | 'behind' | undefined {
    if (this.isClosed) return [];
    if (this.head === undefined) {
      this.head = version;
      this.windowStart = version + 1;
    }
    if (version < this.windowStart - 1) return 'behind';
    const i = version + 1 - this.windowStart;
    if (i < this.window.length) return this.slice(i, max);
    this.run();
    return undefined;
  }

  /** peek, as the changes themselves: one array shared by every watch at that position. */
  peekEvents(version: number, max: number): RoomChange[] | 'behind' | undefined {
    const got = this.peek(version, max);
    if (got === undefined || got === 'behind') return got;
    const c = this.cached;
    if (c && c.changes === got) return (c.events ??= got.map((step) => step.value));
    return got.map((step) => step.value);
  }

  /** Settles on the feed's next batch, its close, or its read error (the value). */
  get next(): Promise<unknown> {
    return this.arrival.promise;
  }

  /**
   * Calls `callback` once, on the feed's next batch, its close, or its read error (the argument):
   * `next` without a promise per waiting watch, for the thousands of them a busy zone wakes.
   */
  onNext(callback: (error?: unknown) => void): void {
    this.waiters.push(callback);
  }

  /** The same array for every watch at one position (they only read it), so a wake copies once, not once per watch. */
  private slice(i: number, max: number): ChangeStep[] {
    const c = this.cached;
    const end = Math.min(i + max, this.window.length);
    if (c && c.window === this.window && c.start === i && c.end === end) return c.changes;
    const changes = this.window.slice(i, end);
    this.cached = { window: this.window, start: i, end, changes };
    return changes;
  }

  private run(): void {
    if (this.running || this.isClosed) return;
    this.running = true;
    this.client ??= this.source.client();
    void this.loop();
  }

  private async loop(): Promise<void> {
    let failingSince: number | undefined;
    let retries = 0;
    while (!this.isClosed && this.client) {
      let reply: Awaited<ReturnType<RedisClient['xread']>>;
      try {
        reply = await this.client.xread('COUNT', READ_BATCH, 'BLOCK', this.source.blockMs, 'STREAMS', this.source.changesKey, `${this.head ?? 0}-0`);
      } catch (err) {
        if (this.isClosed) break;
        // A dropped connection or a cluster failover: read again for a while (the watches just
        // wait), then give every waiting watch the error (they close, as a lone reader would);
        // the next watch that waits starts the feed again, from where it stopped.
        failingSince ??= Date.now();
        if (Date.now() - failingSince > RETRY_FOR_MS) {
          this.running = false;
          this.wake(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** retries++, 1000)));
        continue;
      }
      if (failingSince !== undefined) {
        failingSince = undefined;
        retries = 0;
        await this.checkLogAfterFailure().catch(() => undefined);
      }
      if (this.isClosed) break;
      const entries = reply?.[0]?.[1] ?? [];
      if (entries.length === 0) continue;
      for (const [id, fields] of entries) this.add(toChange(this.zone, id, fields));
      this.wake();
    }
    this.running = false;
  }

  /**
   * After reads failed (a failover, a restart), the log may end before the feed's head: writes the
   * old primary acknowledged never reached the new one, and the versions after it will be reused
   * by other changes. Then every watch starts over from a snapshot (`epoch` moves on).
   */
  private async checkLogAfterFailure(): Promise<void> {
    if (!this.client || this.head === undefined) return;
    const [last] = await this.client.xrevrange(this.source.changesKey, '+', '-', 'COUNT', 1);
    const version = last ? Number(last[0].slice(0, last[0].indexOf('-'))) : 0;
    if (version >= this.head) return;
    this.epoch++;
    this.window = [];
    this.head = version;
    this.windowStart = version + 1;
    this.wake();
  }

  private add(change: RoomChange): void {
    const head = this.head ?? 0;
    if (change.version <= head) return;
    if (change.version > head + 1) {
      // Trimmed before the feed read it: the window restarts here; watches before it read the log
      // themselves and resync from a snapshot.
      this.window = [];
      this.windowStart = change.version;
    }
    this.window.push(Object.freeze({ done: false, value: change }));
    this.head = change.version;
    if (this.window.length >= 2 * KEEP) {
      const drop = this.window.length - KEEP;
      this.window = this.window.slice(drop);
      this.windowStart += drop;
    }
  }

  private wake(error?: unknown): void {
    const woken = this.arrival;
    this.arrival = deferred();
    woken.resolve(error);
    const waiters = this.waiters;
    this.waiters = [];
    for (const callback of waiters) callback(error);
  }
}

function deferred(): { promise: Promise<unknown>; resolve: (error?: unknown) => void } {
  let resolve!: (error?: unknown) => void;
  const promise = new Promise<unknown>((r) => (resolve = r));
  return { promise, resolve };
}

/** A change-log entry (`<version>-0`, fields r, c, k) as a RoomChange. */
export function toChange(zone: string, id: string, fields: readonly string[]): RoomChange {
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
