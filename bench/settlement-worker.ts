/**
 * The settlement worker of bench/settlement.bench.ts, in its own process as it is deployed
 * (`shardline worker` is a process of its own), so submitters and worker do not share one event
 * loop. Started with fork(); configured by SHARDLINE_BENCH_WORKER (JSON); reports each committed
 * batch to the parent over IPC with a wall-clock time, and its batch timings when told to stop.
 */
import { pino } from 'pino';
import { ShardSet, validateShardMap } from '../src/index.js';
import { SettlementWorker, redisOptionsFromUrl } from '../src/settlement/index.js';
import { BENCH_EFFECT_GAME, creditWallet } from './settlement-effects.js';

export interface BenchWorkerConfig {
  map: unknown;
  pool: number;
  redisUrl: string;
  prefix: string;
  concurrency: number;
  batchSize: number;
  lingerMs: number;
  maxInFlightBatches: number;
  /** Run the wallet effect (bench/settlement-effects.ts) for its game. */
  effects?: boolean;
  /** The shards this process serves (default: all of the map's), as `shardline worker --shard` does. */
  shardIds?: string[];
}

export type BenchWorkerMessage =
  | { type: 'ready' }
  | { type: 'committed'; at: number; applied: string[]; size: number }
  | { type: 'stopped'; txSeconds: number; txCount: number }
  | { type: 'error'; message: string };

const now = () => performance.timeOrigin + performance.now();
const send = (m: BenchWorkerMessage) => process.send?.(m);

async function main(): Promise<void> {
  const cfg = JSON.parse(process.env.SHARDLINE_BENCH_WORKER ?? '{}') as BenchWorkerConfig;
  const set = new ShardSet(validateShardMap(cfg.map), { poolMax: cfg.pool, applicationName: 'shardline-bench-worker' });
  const worker = new SettlementWorker({
    shards: set,
    connection: redisOptionsFromUrl(cfg.redisUrl),
    prefix: cfg.prefix,
    logger: pino({ level: 'error' }),
    concurrency: cfg.concurrency,
    batchSize: cfg.batchSize,
    lingerMs: cfg.lingerMs,
    maxInFlightBatches: cfg.maxInFlightBatches,
    ...(cfg.shardIds ? { shardIds: cfg.shardIds } : {}),
    ...(cfg.effects ? { effects: { [BENCH_EFFECT_GAME]: creditWallet } } : {}),
  });
  worker.on('committed', (e) => send({ type: 'committed', at: now(), applied: e.applied, size: e.applied.length + e.duplicates.length }));
  process.on('message', (m: { type?: string }) => {
    if (m?.type !== 'stop') return;
    void (async () => {
      await worker.stop(5000);
      const tx = (await worker.metrics.batchSeconds.get()).values;
      const sum = (suffix: string) => tx.filter((v) => v.metricName?.endsWith(suffix)).reduce((a, v) => a + v.value, 0);
      send({ type: 'stopped', txSeconds: sum('_sum'), txCount: sum('_count') });
      await set.close();
      process.disconnect?.();
    })();
  });
  await worker.start();
  send({ type: 'ready' });
}

main().catch((err: unknown) => {
  send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exitCode = 1;
  process.disconnect?.();
});
