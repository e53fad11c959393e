import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoomService } from '../../src/rooms/index.js';
import { SettlementClient, jobIdFor, queueNameFor, type SettlementInput } from '../../src/settlement/index.js';
import type { WorkerFixtureConfig } from '../faults/fixtures/worker.js';
import { killStarted, spawnScript, spawnWorker, type Proc } from '../faults/support/processes.js';
import { writeMapFile } from '../support/maps.js';
import { createPlayers } from '../support/players.js';
import { waitFor } from '../support/wait.js';
import { deleteKeysUnder, exactlyOnceProblems, faultPrefix, queueCounts, sharedRedis, silent } from '../faults/support/settlement.js';
import { assertInvariants, deleteKeys, readZone, redis } from '../rooms/helpers.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { createTestShards, type TestShards } from '../support/shards.js';
import type { SubmitterConfig, SubmitterSummary } from './submitter.js';

/**
 * The long run (`npm run test:soak`, not in CI): several game-server processes submit matches and
 * move players through rooms for SHARDLINE_SOAK_SECONDS (default 75) while two workers apply them;
 * one worker is restarted twice, once by SIGTERM and once by SIGKILL. At the end every accepted
 * match must be applied exactly once, the stats must add up, no room may have gone above capacity,
 * the queues must be drained and no error may be left unexplained. The figures are printed.
 */
const SECONDS = Number(process.env.SHARDLINE_SOAK_SECONDS ?? 75);
const SUBMITTERS = 3;

describe('soak: continuous load with worker restarts', () => {
  let t: TestShards;
  let players: string[];
  const prefix = faultPrefix();
  const roomsPrefix = uniqueName('slsoak_rooms');
  const zones: Record<string, string[]> = {};
  const rooms = redis();

  beforeAll(async () => {
    t = await createTestShards('several-shards', { poolMax: 4 });
    players = [...(await createPlayers(t.shardSet, 60)).values()].flat().map(String);
    const service = new RoomService({ connection: rooms, prefix: roomsPrefix });
    for (const region of t.shardSet.router.regions) {
      zones[region] = Array.from({ length: 4 }, (_, i) => `${region}-r${i}`);
      await service.defineRooms(
        region,
        zones[region].map((roomId) => ({ roomId, capacity: 10 })),
      );
    }
    await service.close();
  });
  afterAll(async () => {
    await killStarted();
    await deleteKeysUnder(sharedRedis(), prefix);
    await deleteKeys(rooms, roomsPrefix);
    rooms.disconnect();
    await t?.cleanup();
  });

  it(
    `holds every invariant after ${SECONDS} s of load and two worker restarts`,
    async () => {
      const started = Date.now();
      const gameId = uniqueName('soak');
      const dir = mkdtempSync(path.join(tmpdir(), 'shardline-soak-'));
      const mapFile = writeMapFile(t.mapJson);
      const workerConfig: WorkerFixtureConfig = {
        mapFile,
        redisUrl: REDIS_URL,
        prefix,
        graceMs: 10_000,
        logLevel: 'warn',
        statsEveryMs: 1000,
        worker: { concurrency: 32, batchSize: 16, lockDurationMs: 5000, stalledIntervalMs: 2000, reconcileIntervalMs: 5000, reconcileAfterMs: 15_000 },
      };
      const workers: { proc: Proc; how: string }[] = [];
      const startWorker = async (how: string) => {
        const proc = spawnWorker(workerConfig, (SECONDS + 300) * 1000);
        workers.push({ proc, how });
        await proc.waitForEvent('worker ready', (e) => e.evt === 'ready', 120_000);
        return proc;
      };
      const steady = await startWorker('steady');
      let restarted = await startWorker('restarted');

      const outFiles = Array.from({ length: SUBMITTERS }, (_, i) => path.join(dir, `accepted-${i}.jsonl`));
      outFiles.forEach((f) => writeFileSync(f, ''));
      const submitters = outFiles.map((outFile, id) => {
        const cfg: SubmitterConfig = {
          id,
          mapFile,
          redisUrl: REDIS_URL,
          prefix,
          roomsPrefix,
          gameId,
          players,
          zones,
          durationMs: SECONDS * 1000,
          seed: 1000 + id,
          outFile,
          loops: 4,
        };
        return spawnScript('test/soak/submitter.ts', [JSON.stringify(cfg)], (SECONDS + 120) * 1000);
      });

      // Rooms are checked while the load runs, not only at the end.
      let roomChecks = 0;
      const roomViolations: string[] = [];
      let checking = true;
      const checker = (async () => {
        while (checking) {
          for (const zone of Object.keys(zones)) {
            try {
              assertInvariants(await readZone(rooms, roomsPrefix, zone));
            } catch (err) {
              roomViolations.push(`${zone}: ${(err as Error).message}`);
            }
          }
          roomChecks++;
          await new Promise((r) => setTimeout(r, 1000));
        }
      })();

      // Restart one worker twice during the run: gracefully at 1/3, by crash at 2/3.
      await new Promise((r) => setTimeout(r, (SECONDS * 1000) / 3));
      restarted.kill('SIGTERM');
      const graceful = await restarted.done;
      restarted = await startWorker('restarted after SIGTERM');
      await new Promise((r) => setTimeout(r, Math.max(0, started + (SECONDS * 2000) / 3 - Date.now())));
      restarted.kill('SIGKILL');
      const crashed = await restarted.done;
      restarted = await startWorker('restarted after SIGKILL');

      const summaries = await Promise.all(
        submitters.map(async (s) => {
          const e = await s.waitForEvent('submitter summary', (x) => x.evt === 'summary', (SECONDS + 120) * 1000);
          await s.done;
          return e as unknown as SubmitterSummary;
        }),
      );
      const loadEnded = Date.now();
      const accepted: SettlementInput[] = outFiles.flatMap((f) =>
        readFileSync(f, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as SettlementInput),
      );

      await waitFor('every accepted match applied', async () => (await exactlyOnceProblems(t.shardSet, gameId, accepted)).length === 0, 180_000, 1000).catch(
        () => undefined,
      );
      const drained = Date.now();
      const problems = await exactlyOnceProblems(t.shardSet, gameId, accepted);
      const counts = await waitFor(
        'queues drained',
        async () => {
          const c = await queueCounts(
            sharedRedis(),
            prefix,
            t.map.shards.map((s) => s.id),
          );
          return c.waiting + c.active + c.delayed + c.prioritized === 0 ? c : null;
        },
        60_000,
        500,
      ).catch(async () =>
        queueCounts(
          sharedRedis(),
          prefix,
          t.map.shards.map((s) => s.id),
        ),
      );
      checking = false;
      await checker;

      // Figures from the workers' last counters (a SIGKILLed worker's are its last report) and the queues.
      const lastStats = (p: Proc) => [...p.events()].reverse().find((e) => e.evt === 'exit' || e.evt === 'stats') ?? {};
      for (const p of [steady, restarted]) p.kill('SIGTERM');
      const finalExits = await Promise.all([steady.done, restarted.done]);
      const perWorker = workers.map((w) => ({ how: w.how, ...lastStats(w.proc) }));
      const sum = (k: string) => perWorker.reduce((n, w) => n + Number((w as Record<string, unknown>)[k] ?? 0), 0);
      const retriedJobs = await jobsTriedMoreThanOnce(accepted);
      const client = new SettlementClient({ shards: t.shardSet, connection: sharedRedis(), prefix, logger: silent });
      const failed = await client.listFailed();
      await client.close();
      const workerErrors = workers.flatMap((w) =>
        w.proc
          .output()
          .split('\n')
          .filter((l) => l.startsWith('{"level":') && Number(/"level":(\d+)/.exec(l)?.[1]) >= 50)
          .map((l) => `${w.how}: ${l.slice(0, 300)}`),
      );
      // Warnings are expected (Redis without persistence, a reconcile after the crash): counted, by message.
      const workerWarnings: Record<string, number> = {};
      for (const w of workers) {
        for (const l of w.proc.output().split('\n')) {
          if (!l.startsWith('{"level":40')) continue;
          const msg = (JSON.parse(l) as { msg?: string }).msg ?? '?';
          workerWarnings[msg] = (workerWarnings[msg] ?? 0) + 1;
        }
      }
      const parts = accepted.reduce((n, m) => n + new Set(m.results.map((r) => t.shardSet.router.shardFor(BigInt(r.playerId.toString()) as never).id)).size, 0);
      const loadSeconds = (loadEnded - started) / 1000;
      const figures = {
        seconds: Number(loadSeconds.toFixed(1)),
        submitters: SUBMITTERS,
        matchesAccepted: accepted.length,
        shardParts: parts,
        playerResults: accepted.reduce((n, m) => n + m.results.length, 0),
        matchesPerSecond: Number((accepted.length / loadSeconds).toFixed(1)),
        settlementsPerSecond: Number((parts / ((drained - started) / 1000)).toFixed(1)),
        drainAfterLoadSeconds: Number(((drained - loadEnded) / 1000).toFixed(1)),
        duplicatesResubmitted: summaries.reduce((n, s) => n + s.duplicatesResubmitted, 0),
        conflictsRefused: summaries.reduce((n, s) => n + s.conflictsRefused, 0),
        roomEnters: summaries.reduce((n, s) => n + s.roomEnters, 0),
        roomLeaves: summaries.reduce((n, s) => n + s.roomLeaves, 0),
        roomFullRefusals: summaries.reduce((n, s) => n + s.roomFull, 0),
        roomInvariantChecks: roomChecks,
        workerRestarts: { sigterm: graceful, sigkill: crashed },
        workerRetries: sum('retried'),
        workerDuplicateJobs: sum('duplicates'),
        // As last reported: a SIGKILLed worker's final second is missing here (the ledger is the truth).
        partsAppliedByWorkers: sum('partsApplied'),
        jobsTriedMoreThanOnce: retriedJobs,
        workerWarnings,
        queues: counts,
      };
      console.log(`\nsoak figures\n${JSON.stringify(figures, null, 2)}\nper worker\n${JSON.stringify(perWorker, null, 2)}`);

      expect(
        summaries.flatMap((s) => Object.entries(s.unexpected).map(([k, v]) => `${s.id}: ${k} x${v}: ${s.samples.join(' | ')}`)),
        'unexplained submitter errors',
      ).toEqual([]);
      expect(accepted.length).toBeGreaterThan(0);
      expect(problems.slice(0, 20), 'exactly once').toEqual([]);
      expect(roomViolations.slice(0, 10), 'rooms').toEqual([]);
      for (const zone of Object.keys(zones)) {
        const snap = await new RoomService({ connection: rooms, prefix: roomsPrefix }).listRooms(zone);
        for (const r of snap.rooms) expect(r.count, `${r.roomId} above capacity`).toBeLessThanOrEqual(r.capacity);
      }
      expect(counts).toMatchObject({ waiting: 0, active: 0, delayed: 0, prioritized: 0, failed: 0 });
      expect(failed.failed).toEqual([]);
      expect(workerErrors, 'unexplained worker errors').toEqual([]);
      expect(graceful).toEqual({ code: 0, signal: null });
      expect(crashed).toEqual({ code: null, signal: 'SIGKILL' });
      expect(finalExits).toEqual([
        { code: 0, signal: null },
        { code: 0, signal: null },
      ]);
      expect(SECONDS).toBeGreaterThanOrEqual(60);
    },
    (SECONDS + 600) * 1000,
  );

  /** Jobs (over every shard queue) that took more than one try: retried or re-run after a crash. */
  async function jobsTriedMoreThanOnce(accepted: readonly SettlementInput[]): Promise<number> {
    let n = 0;
    for (const s of t.map.shards) {
      const q = new Queue(queueNameFor(s.id), { connection: sharedRedis(), prefix });
      try {
        const wanted = new Set(accepted.map((m) => jobIdFor(m.matchId)));
        const jobs = await q.getJobs(['completed'], 0, -1);
        n += jobs.filter((j) => wanted.has(j.id as string) && (j.attemptsStarted > 1 || j.attemptsMade > 1 || j.stalledCounter > 0)).length;
      } finally {
        await q.close();
      }
    }
    return n;
  }
});
