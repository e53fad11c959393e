import { describeMoveUnderLoad } from '../reshard/move-load.js';

/**
 * The long bucket move (`npm run test:soak`, not in CI): an eighth of the buckets moves to the shard
 * that started empty, then the next sixteenth, under load throughout; SHARDLINE_SOAK_SECONDS
 * (default 75) sets how long the load runs on its own around each step. Same checker as the short run.
 */
const SECONDS = Number(process.env.SHARDLINE_SOAK_SECONDS ?? 75);
const step = Math.max(1000, Math.round((SECONDS * 1000) / 6));

describeMoveUnderLoad('soak: two bucket moves under continuous load', {
  seeds: 4000,
  moves: [
    { range: [0, 511], from: 0, to: 1 },
    // Back to sz-1 ({ range: [256, 511], from: 1, to: 0 }) once the mover accepts a range moved batch by batch back.
    { range: [512, 767], from: 0, to: 1 },
  ],
  batchBuckets: 16,
  beforeMs: step,
  afterMs: step,
  purgeMs: step,
  midCheckAt: 8,
  timeoutMs: 900_000,
});
