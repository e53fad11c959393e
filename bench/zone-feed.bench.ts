/**
 * The zone feed at the design's scale: W watchers of one zone in this process while another
 * process seats players with autoEnter. For every change: the time from its write (the storm's
 * send of the autoEnter that made it) to its delivery to every watcher; p50/p99/max over the
 * changes, and the Redis connections the watchers hold. Twice: watchers that iterate the watch
 * event by event (`for await (const e of watch)`), and watchers that take it a batch at a time
 * (`watch.batches()`). Baseline, same run and same storm: one watcher alone (the lag of the feed
 * itself, without the fan-out).
 *
 *   npx tsx bench/zone-feed.bench.ts [--watchers 10000] [--entries 5000] [--rate 500] [--concurrency 16]
 *   (or SHARDLINE_BENCH_WATCHERS / _ENTRIES / _RATE / _CONCURRENCY; SHARDLINE_BENCH_REDIS_URL)
 *
 * Keys live under a unique prefix and are deleted at the end; nothing else in Redis is touched.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { RoomService, type ZoneEvent, type ZoneWatch } from '../src/index.js';
import { printResults } from './report.js';
import type { BenchResult } from './types.js';

const REDIS_URL = process.env.SHARDLINE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const here = path.dirname(fileURLToPath(import.meta.url));

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const raw = i >= 0 ? process.argv[i + 1] : process.env[`SHARDLINE_BENCH_${name.toUpperCase()}`];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${raw}`);
  return n;
}

const now = () => performance.timeOrigin + performance.now();
const round = (n: number) => Math.round(n * 100) / 100;

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

interface StormReply {
  entries: [string, number, number, number][];
  seconds: number;
}

/** The storm process, started and connected; `go()` runs it and resolves with its record. */
async function startStorm(args: string[]): Promise<{ go(): Promise<StormReply> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'zone-storm.ts'), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  let buf = '';
  const lines: string[] = [];
  let waiting: (() => void) | undefined;
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
      waiting?.();
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const line = async (): Promise<string> => {
    for (;;) {
      const l = lines.shift();
      if (l !== undefined) return l;
      const more = new Promise<void>((r) => (waiting = r));
      const code = await Promise.race([more, exited.then((c) => c)]);
      if (typeof code === 'number' || code === null) if (lines.length === 0) throw new Error(`storm process exited (${code}) early`);
    }
  };
  if ((await line()) !== 'ready') throw new Error('storm process did not say ready');
  return {
    async go() {
      child.stdin.write('go\n');
      return JSON.parse(await line()) as StormReply;
    },
  };
}

async function connectionsNamed(client: Redis, name: string): Promise<number> {
  const list = (await client.client('LIST')) as string;
  return list.split('\n').filter((l) => l.includes(` name=${name} `)).length;
}

interface Run {
  lags: number[];
  firstLags: number[];
  feedConnections: number;
  stormSeconds: number;
  entries: number;
}

/** One storm of `entries` autoEnters into a fresh zone, watched by `watchers` watches of one service. */
async function runOnce(
  admin: Redis,
  prefix: string,
  zone: string,
  watchers: number,
  mode: 'events' | 'batches',
  entries: number,
  rate: number,
  concurrency: number,
  firstPlayer: number,
): Promise<Run> {
  const client = new Redis(REDIS_URL);
  const service = new RoomService({ connection: client, prefix });
  try {
    const capacity = 400;
    const rooms = Math.ceil(entries / capacity) + 1;
    await service.defineRooms(
      zone,
      Array.from({ length: rooms }, (_, i) => ({ roomId: `${zone}-r${i}`, capacity })),
    );
    const base = (await service.listRooms(zone)).version;
    const delivered = new Uint32Array(entries + 1);
    const lastAt = new Float64Array(entries + 1);
    const firstAt = new Float64Array(entries + 1);
    const keyOf: string[] = new Array<string>(entries + 1);
    const ws: ZoneWatch[] = Array.from({ length: watchers }, () => service.watch(zone, { sweepMs: false }));
    let snapshots = 0;
    /** One delivery to watcher k; true once it has the storm's last change. */
    const deliver = (k: number, e: ZoneEvent, t: number): boolean => {
      if (e.type === 'snapshot') {
        snapshots++;
        return false;
      }
      const i = e.version - base;
      if (i < 1 || i > entries) return false;
      if (k === 0) keyOf[i] = `${e.roomId}:${e.count}`;
      if (delivered[i] === 0) firstAt[i] = t;
      delivered[i]!++;
      if (t > lastAt[i]!) lastAt[i] = t;
      return i === entries;
    };
    const consumers = ws.map(async (w, k) => {
      if (mode === 'events') {
        for await (const e of w) if (deliver(k, e, now())) break;
        return;
      }
      for await (const batch of w.batches()) {
        const t = now(); // the whole batch is in the watcher's hands at once
        let last = false;
        for (const e of batch) last = deliver(k, e, t) || last;
        if (last) break;
      }
    });
    while (snapshots < watchers) await new Promise((r) => setTimeout(r, 20));
    const storm = await startStorm([REDIS_URL, prefix, zone, String(firstPlayer), String(entries), String(rate), String(concurrency)]);
    const going = storm.go();
    // Sampled mid-storm: what the watchers hold while they work.
    await new Promise((r) => setTimeout(r, 300));
    const feedConnections = await connectionsNamed(admin, `${prefix}:watch:${zone}`);
    const reply = await going;
    await Promise.all(consumers);
    const sentAt = new Map(reply.entries.map(([room, count, sent]) => [`${room}:${count}`, sent]));
    const lags: number[] = [];
    const firstLags: number[] = [];
    for (let i = 1; i <= entries; i++) {
      if (delivered[i] !== watchers) throw new Error(`change ${base + i} reached ${delivered[i]} of ${watchers} watchers`);
      const sent = sentAt.get(keyOf[i]!);
      if (sent === undefined) throw new Error(`change ${base + i} (${keyOf[i]}) matches no entry of the storm`);
      lags.push(lastAt[i]! - sent);
      firstLags.push(firstAt[i]! - sent);
    }
    lags.sort((a, b) => a - b);
    firstLags.sort((a, b) => a - b);
    return { lags, firstLags, feedConnections, stormSeconds: reply.seconds, entries };
  } finally {
    await service.close();
    client.disconnect();
  }
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

export async function run(): Promise<BenchResult[]> {
  const watchers = option('watchers', 10_000);
  const entries = option('entries', 5000);
  const rate = option('rate', 500);
  const concurrency = option('concurrency', 16);
  const prefix = `slbench-feed-${process.pid}`;
  const admin = new Redis(REDIS_URL);
  try {
    const alone = await runOnce(admin, prefix, 'feed-one', 1, 'events', entries, rate, concurrency, 10_000_000);
    const results: BenchResult[] = [];
    const modes = [
      ['batches', 'watch.batches()', 20_000_000],
      ['events', 'for await per event', 30_000_000],
    ] as const;
    for (const [mode, label, firstPlayer] of modes) {
      const many = await runOnce(admin, prefix, `feed-${mode}`, watchers, mode, entries, rate, concurrency, firstPlayer);
      const p99 = percentile(many.lags, 99);
      const p99Alone = percentile(alone.lags, 99);
      results.push({
        name: `rooms: zone feed, ${watchers} watchers of one zone (${label}), autoEnter storm ${entries} at ${rate || 'max'}/s, lag write -> every watcher`,
        unit: 'ms p99',
        value: round(p99),
        baselineName: '1 watcher, same storm',
        baseline: round(p99Alone),
        ratio: p99 > 0 ? round(p99Alone / p99) : 0,
        target: 'p99 <= 100 ms, one connection per zone',
        met: p99 <= 100 && many.feedConnections === 1,
        extra: {
          p50Ms: round(percentile(many.lags, 50)),
          maxMs: round(many.lags.at(-1) ?? NaN),
          firstWatcherP50Ms: round(percentile(many.firstLags, 50)),
          redisConnectionsOfWatchers: many.feedConnections,
          stormPerSecond: Math.round(many.entries / many.stormSeconds),
          aloneP50Ms: round(percentile(alone.lags, 50)),
        },
      });
    }
    return results;
  } finally {
    await deleteKeys(admin, prefix);
    admin.disconnect();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  printResults(await run());
}
