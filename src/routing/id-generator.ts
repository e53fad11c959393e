import { ID_EPOCH_MS, SEQ_BITS, encodePlayerId, type PlayerId } from './player-id.js';

export interface PlayerIdGeneratorOptions {
  /**
   * Distinct per process that generates ids in JS (0..2^generatorBits-1). Two generators with
   * different ids never produce the same id; with the same id they may, across processes.
   */
  generatorId?: number;
  /** How many of the 10 sequence bits carry the generator id (default 4: 16 generators, 64 ids/ms each). */
  generatorBits?: number;
  /** Injected clock for tests. */
  now?: () => number;
}

/**
 * Snowflake-style in-process generator for tools that mint ids without a database. `createPlayer`
 * does not use it: there the sequence bits come from the owning shard's own database sequence, which
 * is unique across every process writing to that shard with no coordination at all.
 */
export class PlayerIdGenerator {
  private readonly generatorId: number;
  private readonly counterBits: number;
  private readonly now: () => number;
  private lastTime = -1;
  private counter = 0;

  constructor(options: PlayerIdGeneratorOptions = {}) {
    const bits = options.generatorBits ?? 4;
    const id = options.generatorId ?? 0;
    if (!Number.isInteger(bits) || bits < 0 || bits >= SEQ_BITS) throw new RangeError(`generatorBits must be 0..${SEQ_BITS - 1}`);
    if (!Number.isInteger(id) || id < 0 || id >= 1 << bits) throw new RangeError(`generatorId must be 0..${(1 << bits) - 1}`);
    this.generatorId = id;
    this.counterBits = SEQ_BITS - bits;
    this.now = options.now ?? Date.now;
  }

  /** Next id in `bucket`. When one millisecond's counter is used up it borrows the next ms. */
  next(bucket: number): PlayerId {
    let time = this.now() - ID_EPOCH_MS;
    if (time < this.lastTime) time = this.lastTime; // clock stepped back: never reuse a (time, seq)
    if (time === this.lastTime) {
      this.counter++;
      if (this.counter >= 1 << this.counterBits) {
        time = this.lastTime + 1;
        this.counter = 0;
      }
    } else {
      this.counter = 0;
    }
    this.lastTime = time;
    const seq = (this.generatorId << this.counterBits) | this.counter;
    return encodePlayerId({ time, bucket, seq });
  }
}
