/** One benchmark line: shardline's figure beside a baseline measured in the same run. */
export interface BenchResult {
  /** e.g. "routing: shardFor" */
  name: string;
  /** e.g. "ops/s", "ms p50" */
  unit: string;
  value: number;
  baselineName: string;
  baseline: number;
  /** value / baseline for throughputs; baseline / value for latencies (higher is always better). */
  ratio: number;
  /** Target ratio from the issue, if any, e.g. ">= 0.5", or a condition described in words. */
  target?: string;
  /** Whether a target that is not a ratio (e.g. "round trips = shards touched") was met. */
  met?: boolean;
  /** Extra figures worth printing (p99, round trips, ...). */
  extra?: Record<string, number | string>;
}

export type BenchFn = () => Promise<BenchResult[]>;
