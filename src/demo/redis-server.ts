import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './free-port.js';

export interface DemoRedis {
  readonly url: string;
  /** True when the demo started this redis-server itself (and stops it on exit). */
  readonly started: boolean;
  stop(): Promise<void>;
}

async function answers(url: string): Promise<boolean> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1000, retryStrategy: () => null });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

/** Uses the Redis at `url` when it answers; otherwise starts a private redis-server on a free port. */
export async function ensureRedis(url: string, onLog?: (line: string) => void): Promise<DemoRedis> {
  if (await answers(url)) return { url, started: false, stop: async () => undefined };
  const port = await freePort();
  let child: ChildProcess;
  try {
    child = await new Promise<ChildProcess>((resolve, reject) => {
      const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      c.once('error', reject);
      c.once('spawn', () => resolve(c));
    });
  } catch {
    throw new Error(
      `no Redis answers at ${url} and there is no redis-server on the PATH: install Redis (e.g. "apt-get install redis-server") or set REDIS_URL`,
    );
  }
  child.stdout?.on('data', (d: Buffer) => onLog?.(d.toString().trimEnd()));
  const privateUrl = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 50 && !(await answers(privateUrl)); i++) await new Promise((r) => setTimeout(r, 100));
  return {
    url: privateUrl,
    started: true,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    },
  };
}
