import { describeMoveUnderLoad } from './move-load.js';

// The short run, in CI (about half a minute here): an eighth of the range a shard would hold is
// beyond this machine's minute, so 128 buckets in 8 batches, the purge included.
describeMoveUnderLoad('a bucket move under continuous load', {
  seeds: 900,
  moves: [{ range: [0, 127], from: 0, to: 1 }],
  batchBuckets: 16,
  beforeMs: 1500,
  afterMs: 1500,
  purgeMs: 1500,
  midCheckAt: 4,
  timeoutMs: 120_000,
});
