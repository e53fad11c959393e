import type { Command } from 'commander';
import { pino } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { ShardSet } from '../../db/index.js';
import { SettlementWorker, WorkerHealth, loadEffectsModule, serveWorkerEndpoints } from '../../settlement/index.js';
import { collect, loadMap, positiveInt } from '../context.js';
import { addQueueOptions, checkedRedisFromEnv, prefixOf, type QueueFlags } from './settlements.js';
import { addAppMigrations, appMigrationsDir } from './migrate.js';

interface WorkerFlags extends QueueFlags {
  shards?: string[];
  concurrency: number;
  batchSize: number;
  metricsPort?: number;
  graceMs: number;
  logLevel: string;
  effects?: string;
  appMigrations?: string;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--metrics-port must be 0..65535, got ${JSON.stringify(value)}`);
  return n;
}

export function registerWorker(program: Command): void {
  addAppMigrations(
    addQueueOptions(program.command('worker').description('apply queued match results on their shards until SIGTERM/SIGINT')),
    "the app's migrations: a shard whose app schema is not this folder's is refused",
  )
    .option('--shards <ids>', "only these shards' queues (comma-separated or repeated)", collect)
    .option('--concurrency <n>', 'jobs held at once per shard queue', positiveInt('--concurrency'), 64)
    .option('--batch-size <n>', 'most parts applied per transaction (capped by --concurrency)', positiveInt('--batch-size'), 32)
    .option('--metrics-port <port>', 'serve /metrics (Prometheus), /healthz and /readyz on http://0.0.0.0:PORT (0: any free port)', port)
    .option('--grace-ms <ms>', 'on SIGTERM/SIGINT, how long in-flight jobs may take to finish', positiveInt('--grace-ms'), 10_000)
    .option('--log-level <level>', 'pino log level', 'info')
    .option('--effects <module>', 'a module (path from here) exporting `effects`: per game id, what applied results do to the app tables')
    .action(async (flags: WorkerFlags) => {
      const logger = pino({ name: 'shardline-worker', level: flags.logLevel });
      // Before any connection: a missing or wrong module is the operator's typo, said at once.
      const effects = flags.effects === undefined ? undefined : await loadEffectsModule(flags.effects, process.cwd());
      if (effects) logger.info({ module: flags.effects, games: Object.keys(effects) }, 'settlement effects loaded');
      const app = appMigrationsDir(flags.appMigrations);
      // The ShardSet logs through the worker's logger: without a folder, the one "not checked" line.
      const shards = new ShardSet(await loadMap(flags.map), {
        applicationName: 'shardline-worker',
        logger,
        ...(app === undefined ? {} : { appMigrations: app }),
      });
      const registry = new Registry();
      collectDefaultMetrics({ register: registry });
      const connection = await checkedRedisFromEnv();
      const worker = new SettlementWorker({
        shards,
        connection,
        prefix: prefixOf(flags),
        ...(flags.shards ? { shardIds: flags.shards } : {}),
        concurrency: flags.concurrency,
        batchSize: flags.batchSize,
        logger,
        registry,
        ...(effects ? { effects } : {}),
        ...(app === undefined ? {} : { appMigrations: app }),
      });
      const stopped = new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      try {
        await worker.start();
      } catch (err) {
        await shards.close();
        throw err;
      }
      // Readiness and the backlog gauges, read on each probe and scrape (src/settlement/health.ts).
      const health =
        flags.metricsPort === undefined
          ? undefined
          : new WorkerHealth({ shards, shardIds: flags.shards ?? shards.shards.map((s) => s.id), connection, prefix: worker.prefix, registry });
      const metrics = flags.metricsPort === undefined ? undefined : await serveWorkerEndpoints(registry, flags.metricsPort, health);
      if (metrics) logger.info({ port: metrics.port }, 'metrics served at /metrics, health at /healthz and /readyz');
      const signal = await stopped;
      logger.info({ signal, graceMs: flags.graceMs }, 'stopping: no new jobs, finishing those in flight');
      // The grace period bounds the whole shutdown, so a supervisor's kill timeout set to it never
      // fires: in-flight jobs get most of it, closing connections the rest. A statement still
      // waiting at the end (on a lock, on a slow shard) would hold shards.close() until its
      // statement timeout; exiting drops its connection, Postgres rolls it back, the job runs again.
      const deadline = Date.now() + flags.graceMs;
      setTimeout(() => {
        logger.warn({ graceMs: flags.graceMs }, 'shards did not close within the grace period; exiting anyway');
        process.exit(0);
      }, flags.graceMs).unref();
      await worker.stop(flags.graceMs - Math.min(1000, Math.floor(flags.graceMs / 5)));
      await metrics?.close();
      await health?.close();
      await shards.close();
      // Everything is closed; if a library left a handle open, do not outlive the grace period.
      setTimeout(() => process.exit(0), Math.max(0, Math.min(2000, deadline - Date.now()))).unref();
    });
}
