/**
 * Rooms: enters per second with many concurrent clients through RoomService, beside a raw
 * baseline in the same run: the SAME Lua script (ROOM_SCRIPTS.enter) called straight through
 * ioredis EVALSHA with hand-built keys and no shardline code. Both replay one identical,
 * seeded sequence of enters (first seats, moves, renewals) on a fresh zone, rounds interleaved.
 * Also autoEnter in a zone of thousands of rooms, and the lag of `watch` behind an enter.
 *
 *   npx tsx bench/rooms.bench.ts [--ops 30000] [--clients 256] [--connections 4] [--rounds 3]
 *   (or SHARDLINE_BENCH_OPS / _CLIENTS / _CONNECTIONS / _ROUNDS; SHARDLINE_BENCH_REDIS_URL)
 *
 * Keys live under a unique prefix and are deleted at the end; nothing else in Redis is touched.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { RoomService } from '../src/index.js';
import { ROOM_SCRIPTS } from '../src/rooms/scripts.js';
import { printResults } from './report.js';
import type { BenchResult } from './types.js';

const REDIS_URL = process.env.SHARDLINE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const LEASE_MS = 30_000;
const LOG_LEN = 10_000;

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const raw = i >= 0 ? process.argv[i + 1] : process.env[`SHARDLINE_BENCH_${name.toUpperCase()}`];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${raw}`);
  return n;
}

/** A small seeded PRNG so both sides replay the same enters. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Op {
  room: string;
  player: string;
}

function workload(ops: number, rooms: readonly string[], players: number): Op[] {
  const rnd = mulberry32(42);
  return Array.from({ length: ops }, () => ({
    room: rooms[Math.floor(rnd() * rooms.length)]!,
    player: String(1_000_000 + Math.floor(rnd() * players)),
  }));
}

/** Runs `ops` through `clients` concurrent loops; returns ops/s. */
async function drive(ops: readonly Op[], clients: number, fn: (op: Op, i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = next++; i < ops.length; i = next++) await fn(ops[i]!, i);
    }),
  );
  return ops.length / ((performance.now() - t0) / 1000);
}

async function deleteKeys(client: Redis, prefix: string): Promise<void> {
  for (const pattern of [`{${prefix}:*`, `${prefix}:*`]) {
    let cursor = '0';
    do {
      const [nextCursor, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = nextCursor;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== '0');
  }
}

const percentile = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
/** Throughput over runs of equal op counts: total ops / total time (the harmonic mean of the rates). */
const overall = (rates: readonly number[]) => rates.length / rates.reduce((t, x) => t + 1 / x, 0);
const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

export async function run(): Promise<BenchResult[]> {
  const opCount = option('ops', 30_000);
  const clients = option('clients', 256);
  const connections = option('connections', 4);
  const rounds = option('rounds', 3);
  const prefix = `slbench_rooms_${process.pid}_${Date.now().toString(36)}`;
  const admin = new Redis(REDIS_URL);
  const conns = Array.from({ length: connections }, () => new Redis(REDIS_URL));
  const services = conns.map((connection) => new RoomService({ connection, prefix, leaseMs: LEASE_MS, changeLogLength: LOG_LEN }));
  const svc = services[0]!;
  try {
    const shaEnter = (await admin.script('LOAD', ROOM_SCRIPTS.enter)) as string;
    const shaAuto = (await admin.script('LOAD', ROOM_SCRIPTS.autoEnter)) as string;
    const roomCount = 200;
    const playerCount = 20_000;

    /** A fresh zone with `roomCount` rooms of 400; room ids are unique per zone (they are global). */
    const makeZone = async (zone: string, n: number, capacity = 400): Promise<string[]> => {
      const rooms = Array.from({ length: n }, (_, i) => `${zone}-r${i}`);
      for (let i = 0; i < rooms.length; i += 500) {
        await svc.defineRooms(
          zone,
          rooms.slice(i, i + 500).map((roomId) => ({ roomId, capacity })),
        );
      }
      return rooms;
    };
    /** The zone layout written out by hand: the baseline uses no shardline code on its hot path. */
    const rawArgs = (zone: string) => {
      const t = `{${prefix}:zone:${zone}}`;
      return [`${t}:cap`, `${t}:count`, `${t}:open`, `${t}:seat`, `${t}:leases`, `${t}:ver`, `${t}:changes`, `${t}:m:`, String(LOG_LEN)];
    };

    // Warm-up (JIT, connections, script cache) on a throwaway zone.
    {
      const rooms = await makeZone('warm', 20);
      const ops = workload(5000, rooms, 2000);
      const head = rawArgs('warm');
      await drive(ops, clients, (op, i) => conns[i % connections]!.evalsha(shaEnter, 7, ...head, op.room, op.player, LEASE_MS));
      await drive(ops, clients, (op, i) => services[i % connections]!.enter(op.room, op.player));
    }

    const raw: number[] = [];
    const lib: number[] = [];
    let seated = 0;
    for (let r = 0; r < rounds; r++) {
      const rawRooms = await makeZone(`raw${r}`, roomCount);
      const libRooms = await makeZone(`lib${r}`, roomCount);
      const rawOps = workload(opCount, rawRooms, playerCount);
      const libOps = workload(opCount, libRooms, playerCount);
      const head = rawArgs(`raw${r}`);
      const runRaw = async () =>
        raw.push(await drive(rawOps, clients, (op, i) => conns[i % connections]!.evalsha(shaEnter, 7, ...head, op.room, op.player, LEASE_MS)));
      const runLib = async () => lib.push(await drive(libOps, clients, (op, i) => services[i % connections]!.enter(op.room, op.player)));
      // Alternate who goes first, so drift on a shared machine does not favour one side.
      if (r % 2 === 0) await runRaw().then(runLib);
      else await runLib().then(runRaw);
      const a = await svc.listRooms(`raw${r}`);
      const b = await svc.listRooms(`lib${r}`);
      const sum = (s: typeof a) => s.rooms.reduce((t, x) => t + x.count, 0);
      // Same distinct players seated (rooms never fill here); versions may differ a little, since
      // concurrent clients interleave a player's own enters differently from run to run.
      if (sum(a) !== sum(b)) throw new Error(`raw and shardline runs diverged: ${sum(a)} vs ${sum(b)} seated`);
      seated = sum(b);
    }

    // autoEnter in a zone of 5,000 rooms: the fullest room with a seat, O(log rooms) per call.
    const bigRooms = 5000;
    await makeZone('autoraw', bigRooms, 50);
    await makeZone('autolib', bigRooms, 50);
    const autoOps = Math.min(opCount, 20_000);
    const autoHead = rawArgs('autoraw');
    const players = Array.from({ length: autoOps }, (_, i) => ({ room: '', player: String(5_000_000 + i) }));
    const half = Math.floor(autoOps / 2);
    const autoRaw: number[] = [];
    const autoLib: number[] = [];
    // Two interleaved halves per side (raw, lib, lib, raw) on zones filling alike.
    autoRaw.push(await drive(players.slice(0, half), clients, (op, i) => conns[i % connections]!.evalsha(shaAuto, 7, ...autoHead, op.player, LEASE_MS)));
    autoLib.push(await drive(players.slice(0, half), clients, (op, i) => services[i % connections]!.autoEnter('autolib', op.player)));
    autoLib.push(await drive(players.slice(half), clients, (op, i) => services[i % connections]!.autoEnter('autolib', op.player)));
    autoRaw.push(await drive(players.slice(half), clients, (op, i) => conns[i % connections]!.evalsha(shaAuto, 7, ...autoHead, op.player, LEASE_MS)));
    const autoRawRate = overall(autoRaw);
    const autoLibRate = overall(autoLib);

    // How far a watcher lags an enter: time from the enter's reply to the change arriving.
    const lagRooms = await makeZone('lag', 10);
    const w = svc.watch('lag');
    await w.next();
    const lags: number[] = [];
    for (let i = 0; i < 200; i++) {
      await services[1 % connections]!.enter(lagRooms[i % 10]!, String(7_000_000 + i));
      const t0 = performance.now();
      await w.next();
      lags.push(performance.now() - t0);
    }
    w.close();
    lags.sort((a, b) => a - b);

    const value = overall(lib);
    const baseline = overall(raw);
    return [
      {
        name: `rooms: enter (${clients} concurrent clients, ${connections} connections)`,
        unit: 'enters/s',
        value: Math.round(value),
        baselineName: 'same Lua via raw ioredis EVALSHA',
        baseline: Math.round(baseline),
        ratio: round(value / baseline),
        target: '>= 0.7',
        extra: {
          rounds,
          opsPerRound: opCount,
          rooms: roomCount,
          seatedAfterRound: seated,
          shardlineRounds: lib.map((x) => Math.round(x)).join('/'),
          rawRounds: raw.map((x) => Math.round(x)).join('/'),
        },
      },
      {
        name: `rooms: autoEnter (${bigRooms} rooms in the zone)`,
        unit: 'autoEnters/s',
        value: Math.round(autoLibRate),
        baselineName: 'same Lua via raw ioredis EVALSHA',
        baseline: Math.round(autoRawRate),
        ratio: round(autoLibRate / autoRawRate),
        extra: { watchLagP50Ms: round(percentile(lags, 50)), watchLagP99Ms: round(percentile(lags, 99)), watchLagMaxMs: round(lags.at(-1) ?? NaN) },
      },
    ];
  } finally {
    for (const s of services) await s.close();
    await deleteKeys(admin, prefix);
    for (const c of conns) c.disconnect();
    admin.disconnect();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  run().then(printResults, (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
