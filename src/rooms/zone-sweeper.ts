import { ValidationError } from '../errors/index.js';

export interface SweeperOptions {
  /** Pause between sweeps of all zones (default 1000 ms). */
  readonly intervalMs?: number;
  /** Called with each failed reap (e.g. Redis briefly unreachable); the sweeper keeps going. */
  readonly onError?: (err: unknown, zone: string) => void;
}

/**
 * Periodic `reap` over a set of zones, so an idle zone's counts still follow expired leases. The
 * timer is unref'd: a sweeper alone never keeps the process alive.
 */
export class ZoneSweeper {
  readonly zones: readonly string[];
  private readonly reap: (zone: string) => Promise<number>;
  private readonly intervalMs: number;
  private readonly onError: (err: unknown, zone: string) => void;
  private readonly onStop: () => void;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Seats freed since start. */
  reaped = 0;

  constructor(reap: (zone: string) => Promise<number>, zones: readonly string[], options: SweeperOptions, onStop: () => void) {
    const intervalMs = options.intervalMs ?? 1000;
    if (!Number.isInteger(intervalMs) || intervalMs < 1) throw new ValidationError('intervalMs', `${intervalMs} is not a positive integer`);
    this.reap = reap;
    this.zones = [...zones];
    this.intervalMs = intervalMs;
    this.onError = options.onError ?? (() => undefined);
    this.onStop = onStop;
    this.schedule();
  }

  /** Stops the timer and waits for a sweep in progress to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.onStop();
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.sweep().finally(() => this.schedule());
    }, this.intervalMs);
    this.timer.unref();
  }

  private async sweep(): Promise<void> {
    for (const zone of this.zones) {
      if (this.stopped) return;
      try {
        this.reaped += await this.reap(zone);
      } catch (err) {
        this.onError(err, zone);
      }
    }
  }
}
