import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../../src/demo/free-port.js';
import { startCli } from '../../support/cli.js';
import type { WorkerFixtureConfig } from '../fixtures/worker.js';

/**
 * Real processes for the fault tests: settlement workers (the fixture or the real CLI) and private
 * redis-servers. Every process started here is remembered by pid, so afterAll can end exactly
 * these (and nothing else) even when a test failed half-way.
 */

const started = new Set<ChildProcess>();

/** SIGKILLs every process this file started that is still running. Call in afterAll. */
export async function killStarted(): Promise<void> {
  const alive = [...started].filter((c) => c.exitCode === null && c.signalCode === null);
  await Promise.all(
    alive.map(
      (c) =>
        new Promise<void>((resolve) => {
          c.once('exit', () => resolve());
          c.kill('SIGKILL');
          setTimeout(resolve, 5000).unref();
        }),
    ),
  );
  started.clear();
}

export interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything printed so far (stdout then stderr interleaved as it came). */
  output(): string;
  /** The JSON event lines ({"evt": ...}) printed so far. */
  events(): Record<string, unknown>[];
  /** Resolves with the first event (past or future) for which `pred` holds; rejects after timeoutMs or on exit. */
  waitForEvent(what: string, pred: (e: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>;
  /** Resolves once the process has exited (always bounded: SIGKILL after the spawn's time limit). */
  readonly done: Promise<Ended>;
  kill(signal: NodeJS.Signals): void;
}

function track(child: ChildProcess, limitMs: number): Proc {
  started.add(child);
  let out = '';
  let pending = '';
  const events: Record<string, unknown>[] = [];
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    const s = d.toString();
    out += s;
    pending += s;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.startsWith('{"evt":')) {
        try {
          events.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // a torn line: ignore, the next one counts
        }
      }
    }
    for (const l of listeners) l();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const limit = setTimeout(() => child.kill('SIGKILL'), limitMs);
  limit.unref();
  const done = new Promise<Ended>((resolve) => {
    child.once('exit', (code, signal) => {
      clearTimeout(limit);
      started.delete(child);
      for (const l of listeners) l();
      resolve({ code, signal });
    });
  });
  return {
    child,
    pid: child.pid ?? -1,
    output: () => out,
    events: () => events,
    done,
    kill: (signal) => {
      child.kill(signal);
    },
    waitForEvent(what, pred, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = events.find(pred);
          if (hit) finish(() => resolve(hit));
          else if (child.exitCode !== null || child.signalCode !== null)
            finish(() => reject(new Error(`process exited while waiting for ${what}:\n${out.slice(-3000)}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}:\n${out.slice(-3000)}`))), timeoutMs);
        const finish = (fn: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          fn();
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** The settlement worker fixture (test/faults/fixtures/worker.ts) as its own OS process. */
export function spawnWorker(config: WorkerFixtureConfig, limitMs = 170_000): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/faults/fixtures/worker.ts', JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env },
  });
  return track(child, limitMs);
}

/** The real `shardline` bin with `args`, the way operators run it. */
export function spawnCli(args: readonly string[], env: Record<string, string>, limitMs = 120_000): Proc {
  return track(startCli(args, { env, timeoutMs: limitMs }).child, limitMs);
}

/** Any node script (e.g. a submitter) run with tsx. */
export function spawnScript(script: string, args: readonly string[], limitMs: number): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  return track(child, limitMs);
}

// ---- a private redis-server -------------------------------------------------------------------

export interface OwnRedis {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  options(): { host: string; port: number };
  /** Starts the server (again) on the same port and data dir. */
  start(): Promise<void>;
  /** SIGTERM: Redis writes its AOF and exits cleanly. SIGKILL: a crash. */
  stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Stops it and deletes its data dir. */
  destroy(): Promise<void>;
  /** Everything the server logged. */
  log(): string;
}

/**
 * A redis-server of our own on a free port with its own data dir, e.g. for restarts (never the
 * shared :6379). `args` are extra server flags such as `--appendonly yes`.
 */
export async function ownRedis(args: readonly string[]): Promise<OwnRedis> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), 'shardline-faults-redis-'));
  let proc: ChildProcess | undefined;
  let log = '';
  const url = `redis://127.0.0.1:${port}`;
  const answers = async (): Promise<boolean> => {
    const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 500, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return (await r.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      r.disconnect();
    }
  };
  const start = async () => {
    const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    started.add(c);
    c.once('exit', () => started.delete(c));
    c.stdout?.on('data', (d: Buffer) => (log += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (log += d.toString()));
    proc = c;
    const deadline = Date.now() + 15_000;
    while (!(await answers())) {
      if (c.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server on port ${port} did not come up:\n${log.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async (signal: 'SIGTERM' | 'SIGKILL') => {
    const c = proc;
    proc = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    const timer = setTimeout(() => c.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  await start();
  return {
    port,
    url,
    dir,
    options: () => ({ host: '127.0.0.1', port }),
    start,
    stop,
    async destroy() {
      await stop('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
    log: () => log,
  };
}
