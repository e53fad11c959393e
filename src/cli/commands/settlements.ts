import type { Command } from 'commander';
import { ShardSet } from '../../db/index.js';
import { ValidationError } from '../../errors/index.js';
import { DEFAULT_SETTLEMENT_PREFIX as DEFAULT_PREFIX, SettlementClient, redisOptionsFromUrl, type RedisConnection } from '../../settlement/index.js';
import { cliLogger } from '../cli-logger.js';
import { collect, env, formatTable, loadMap, nonNegativeInt, positiveInt, redisUrlFromEnv } from '../context.js';
import { assertRedisReachable, assertClusterReachable } from '../redis-check.js';
import { parseClusterNodes } from '../../redis/connection.js';

export interface QueueFlags {
  map?: string;
  prefix?: string;
}

/** $REDIS_URL or $REDIS_URL_FILE, default the local server. */
export function redisFromEnv(): RedisConnection {
  return redisOptionsFromUrl(redisUrlFromEnv());
}

/**
 * redisFromEnv, once Redis has answered a PING within a couple of seconds: a command that needs
 * Redis says at once which host:port it could not reach and which variable set it.
 */
export async function checkedRedisFromEnv(): Promise<RedisConnection> {
  const cluster = clusterFromEnv();
  if (cluster) {
    await assertClusterReachable(cluster);
    return cluster;
  }
  const url = redisUrlFromEnv();
  const source = (env.REDIS_URL ?? '') !== '' ? 'REDIS_URL' : (env.REDIS_URL_FILE ?? '') !== '' ? 'REDIS_URL_FILE' : 'default';
  await assertRedisReachable(url, source);
  return redisOptionsFromUrl(url);
}

/**
 * $SHARDLINE_REDIS_CLUSTER (`host:port,host:port,...`, seed nodes of a Redis Cluster), or undefined.
 * Credentials and TLS, if any, come from $REDIS_URL / $REDIS_URL_FILE (its host is one more seed).
 */
export function clusterFromEnv(): { cluster: { host: string; port: number }[]; clusterOptions: { redisOptions: Record<string, unknown> } } | undefined {
  const list = env.SHARDLINE_REDIS_CLUSTER ?? '';
  if (list === '') return undefined;
  const nodes = parseClusterNodes(list, 'SHARDLINE_REDIS_CLUSTER');
  if ((env.REDIS_URL ?? '') === '' && (env.REDIS_URL_FILE ?? '') === '') return { cluster: nodes, clusterOptions: { redisOptions: {} } };
  const { host, port, db: _db, ...auth } = redisOptionsFromUrl(redisUrlFromEnv());
  return { cluster: [...nodes, { host: host ?? '127.0.0.1', port: port ?? 6379 }], clusterOptions: { redisOptions: auth } };
}

/** --prefix, else $SHARDLINE_QUEUE_PREFIX, else undefined: the client or worker then takes the map's "prefix", else shardline. */
export function prefixOf(flags: QueueFlags): string | undefined {
  return flags.prefix ?? env.SHARDLINE_QUEUE_PREFIX;
}

export function addQueueOptions(cmd: Command): Command {
  return cmd
    .option('--map <file>', 'shard map file (default: $SHARDLINE_MAP, then shardmap/local.json)')
    .option('--prefix <prefix>', `Redis key prefix, a plain name (default: $SHARDLINE_QUEUE_PREFIX, then the map's "prefix", then ${DEFAULT_PREFIX})`);
}

/** A client on the map's shards and Redis (see redisFromEnv), closed (with the shards) after `fn`. */
export async function withClient<T>(flags: QueueFlags, fn: (client: SettlementClient) => Promise<T>): Promise<T> {
  const map = await loadMap(flags.map);
  const connection = await checkedRedisFromEnv();
  const logger = cliLogger();
  // $SHARDLINE_APP_MIGRATIONS, as for migrate and the worker: the app's schema is then checked too,
  // and a shard's unchecked app version is reported once as a plain warning line otherwise.
  const appMigrations = env.SHARDLINE_APP_MIGRATIONS || undefined;
  const shards = new ShardSet(map, { applicationName: 'shardline-cli', logger, ...(appMigrations ? { appMigrations } : {}) });
  const client = new SettlementClient({ shards, connection, prefix: prefixOf(flags), logger });
  try {
    await shards.verifyAll(); // a map that misplaces any shard's buckets is refused before anything is written
    return await fn(client);
  } finally {
    await client.close();
    await shards.close();
  }
}

export const printJson = (value: unknown) => console.log(JSON.stringify(value, null, 2));

function reportUnreachable(unreachable: readonly { shardId: string; reason: string }[]): void {
  for (const u of unreachable) console.error(`${u.shardId}: unreachable: ${u.reason}`);
  if (unreachable.length > 0) process.exitCode = 1;
}

export function registerSettlements(program: Command): void {
  const cmd = program.command('settlements').description('inspect and re-drive match settlements');

  addQueueOptions(cmd.command('status').description('per-shard state of a match (JSON)').argument('<matchId>')).action(
    async (matchId: string, flags: QueueFlags) => {
      const status = await withClient(flags, (c) => c.settlementStatus(matchId));
      if (status === null) {
        console.error(`error [UNKNOWN_MATCH]: no shard knows match "${matchId}"`);
        process.exitCode = 1;
        return;
      }
      printJson(status);
    },
  );

  addQueueOptions(cmd.command('failed').description('dead letters: parts that cannot apply, and failed jobs with no inbox row, with the reason'))
    .option('--json', 'print JSON instead of a table')
    .option('--shard <id>', 'only this shard (repeatable, or comma-separated)', collect)
    .option('--limit <n>', 'most rows per shard', positiveInt('--limit'), 1000)
    .action(async (flags: QueueFlags & { json?: boolean; shard?: string[]; limit: number }) => {
      const report = await withClient(flags, (c) => c.listFailed({ limit: flags.limit, ...(flags.shard ? { shardIds: flags.shard } : {}) }));
      if (flags.json) printJson(report.failed);
      else if (report.failed.length === 0) console.log('no failed settlements');
      else {
        console.log(
          formatTable(
            ['match', 'shard', 'game', 'attempts', 'failed at', 'source', 'job', 'reason'],
            report.failed.map((f) => [f.matchId ?? '-', f.shardId, f.gameId ?? '-', String(f.attempts), f.failedAt.toISOString(), f.source, f.jobId, f.reason]),
          ),
        );
      }
      reportUnreachable(report.unreachable);
    });

  addQueueOptions(cmd.command('retry').description('put failed parts back to pending and enqueue them again').argument('[matchId]'))
    .option('--all', 'every failed part on every shard')
    .action(async (matchId: string | undefined, flags: QueueFlags & { all?: boolean }) => {
      if ((matchId === undefined) === !flags.all) throw new ValidationError('matchId', 'give a match id or --all (not both)');
      const { report, known } = await withClient(flags, async (c) => {
        const r = await c.retry(matchId ?? { all: true });
        // Nothing to retry for a match id no shard has heard of is a mistake (a typo), not success.
        const k = matchId === undefined || r.parts.length > 0 || r.notRetryable.length > 0 || (await c.settlementStatus(matchId)) !== null;
        return { report: r, known: k };
      });
      if (!known) {
        console.error(`error [UNKNOWN_MATCH]: no shard knows match "${matchId}": nothing to retry`);
        process.exitCode = 1;
        return;
      }
      for (const p of report.parts) console.log(`re-enqueued ${p.matchId} on ${p.shardId}`);
      for (const d of report.notRetryable)
        console.log(`not retried: job ${d.jobId} on ${d.shardId}: no inbox row behind it, nothing to re-drive (${d.reason})`);
      console.log(`${report.parts.length} part${report.parts.length === 1 ? '' : 's'} re-enqueued`);
      reportUnreachable(report.unreachable);
    });

  addQueueOptions(cmd.command('reconcile').description('enqueue pending parts the queues no longer hold (e.g. after a Redis restart)'))
    .option('--older-than-ms <ms>', 'only parts pending at least this long', nonNegativeInt('--older-than-ms'), 60_000)
    .action(async (flags: QueueFlags & { olderThanMs: number }) => {
      const report = await withClient(flags, (c) => c.reconcile({ olderThanMs: flags.olderThanMs }));
      console.log(`checked ${report.checked} pending parts, re-enqueued ${report.requeued.length}`);
      reportUnreachable(report.unreachable);
    });
}
