import { createServer, type Server } from 'node:http';
import { Counter, Histogram, Registry } from 'prom-client';

/** The worker's Prometheus metrics, on a registry of its own unless one is given. */
export class SettlementMetrics {
  readonly registry: Registry;
  /** Shard parts applied (one per part committed, whatever job carried it). */
  readonly partsApplied: Counter<'shard'>;
  /** Player results applied (ledger rows inserted). */
  readonly resultsApplied: Counter<'shard'>;
  /** Parts found already applied (a job run again, or a second job holding the part). */
  readonly duplicates: Counter<'shard'>;
  /** Parts whose apply failed with a transient error: their job is tried again. */
  readonly retried: Counter<'shard'>;
  /** Parts that failed for good (dead letters). */
  readonly failed: Counter<'shard'>;
  /** Parts whose results of moved players went to the players' new shards (label: the shard they left). */
  readonly forwarded: Counter<'shard'>;
  /** Parts put back for later: a player's bucket in its cut-over, or the new shard did not answer. */
  readonly deferred: Counter<'shard'>;
  readonly batchSize: Histogram<'shard'>;
  /** Submit (inbox row written) to applied (commit), in seconds. */
  readonly lag: Histogram<'shard'>;
  /** Seconds one batch transaction took, from BEGIN to COMMIT. */
  readonly batchSeconds: Histogram<'shard'>;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    const labelNames = ['shard'] as const;
    this.partsApplied = new Counter({ name: 'shardline_settlement_parts_applied_total', help: 'Shard parts of matches applied', labelNames, registers });
    this.resultsApplied = new Counter({
      name: 'shardline_settlement_results_applied_total',
      help: 'Player results applied (ledger rows inserted)',
      labelNames,
      registers,
    });
    this.duplicates = new Counter({
      name: 'shardline_settlement_duplicates_total',
      help: 'Parts found already applied (a job run again or duplicated)',
      labelNames,
      registers,
    });
    this.retried = new Counter({
      name: 'shardline_settlement_retried_total',
      help: 'Parts failed with a transient error, their job to be retried',
      labelNames,
      registers,
    });
    this.failed = new Counter({ name: 'shardline_settlement_failed_total', help: 'Parts failed permanently (dead letters)', labelNames, registers });
    this.forwarded = new Counter({
      name: 'shardline_settlement_forwarded_total',
      help: "Parts whose moved players' results were forwarded to their new shard",
      labelNames,
      registers,
    });
    this.deferred = new Counter({
      name: 'shardline_settlement_deferred_total',
      help: 'Parts put back for later (a bucket in its cut-over, or the new shard unreachable)',
      labelNames,
      registers,
    });
    this.batchSize = new Histogram({
      name: 'shardline_settlement_batch_size',
      help: 'Parts applied per transaction',
      labelNames,
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.lag = new Histogram({
      name: 'shardline_settlement_lag_seconds',
      help: 'Seconds from submit to applied',
      labelNames,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.batchSeconds = new Histogram({
      name: 'shardline_settlement_batch_seconds',
      help: 'Seconds per batch transaction',
      labelNames,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
  }
}

/** Serves `registry` on http://host:port/metrics (host defaults to all interfaces). */
export async function serveMetrics(registry: Registry, port: number, host?: string): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return {
    server,
    port: typeof address === 'object' && address ? address.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
