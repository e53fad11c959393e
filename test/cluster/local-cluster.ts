import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Cluster, Redis, type ClusterNode, type ClusterOptions } from 'ioredis';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);

/**
 * A real Redis Cluster of this machine's `redis-server`: three masters with one replica each, on
 * free ports, in a temporary folder; stopped by pid. Short node timeouts, so a killed master is
 * replaced by its replica within a few seconds; partial coverage allowed, so the other masters
 * keep serving meanwhile.
 */
export interface LocalCluster {
  readonly nodes: ClusterNode[];
  readonly ports: number[];
  /** A Cluster client on the seeds; closed by `stop()` unless the caller closes it first. */
  client(options?: ClusterOptions): Cluster;
  /** A plain client of one node (for CLUSTER, INFO, CLIENT LIST on that node). */
  node(port: number): Redis;
  /** The master port serving a key's slot, from a node that knows the current slot map. */
  masterOf(key: string): Promise<number>;
  /** The replica ports of a master. */
  replicasOf(masterPort: number): Promise<number[]>;
  /** Kills a node (SIGKILL: no goodbye to the cluster); resolves once the process is gone. */
  kill(port: number): Promise<void>;
  /**
   * Waits until every live node reports cluster_state:ok with every slot served, and marks every
   * killed node as failed (so its replica has taken over its slots).
   */
  waitHealthy(): Promise<void>;
  stop(): Promise<void>;
}

/** A port p with p and the cluster bus port p + 10000 both free on 127.0.0.1. */
async function freePair(taken: Set<number>): Promise<number> {
  for (;;) {
    const p = 20000 + Math.floor(Math.random() * 25000);
    if (taken.has(p) || taken.has(p + 10000)) continue;
    if ((await bindable(p)) && (await bindable(p + 10000))) {
      taken.add(p);
      taken.add(p + 10000);
      return p;
    }
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export async function startLocalCluster(): Promise<LocalCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'shardline-cluster-'));
  const taken = new Set<number>();
  const ports: number[] = [];
  for (let i = 0; i < 6; i++) ports.push(await freePair(taken));
  const procs = new Map<number, ChildProcess>();
  const clients: { disconnect(): void }[] = [];
  for (const port of ports) {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--cluster-node-timeout',
        '1000',
        '--cluster-require-full-coverage',
        'no',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--maxmemory-policy',
        'noeviction',
        '--logfile',
        `redis-${port}.log`,
      ],
      { stdio: 'ignore' },
    );
    procs.set(port, child);
  }
  const stop = async (): Promise<void> => {
    for (const c of clients) c.disconnect();
    await Promise.all(
      [...procs.values()].map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            p.once('exit', () => resolve());
            p.kill('SIGKILL');
          }),
      ),
    );
    await rm(dir, { recursive: true, force: true });
  };
  const node = (port: number): Redis => {
    const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, lazyConnect: false });
    r.on('error', () => undefined);
    clients.push(r);
    return r;
  };
  try {
    await waitFor('the redis-server processes', async () => {
      const up = await Promise.all(
        ports.map((p) =>
          run('redis-cli', ['-p', String(p), 'PING']).then(
            (r) => r.stdout.trim() === 'PONG',
            () => false,
          ),
        ),
      );
      return up.every(Boolean);
    });
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes']);
  } catch (err) {
    await stop();
    throw err;
  }
  const killed = new Set<number>();
  const alive = () => ports.filter((p) => !killed.has(p) && procs.get(p)?.exitCode === null && procs.get(p)?.signalCode === null);
  const info = async (port: number, section: string): Promise<string> => (await run('redis-cli', ['-p', String(port), ...section.split(' ')])).stdout;
  const cluster: LocalCluster = {
    nodes: ports.map((port) => ({ host: '127.0.0.1', port })),
    ports,
    client(options = {}) {
      const c = new Cluster(
        ports.map((port) => ({ host: '127.0.0.1', port })),
        { retryDelayOnFailover: 200, retryDelayOnClusterDown: 200, ...options },
      );
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    node,
    async masterOf(key) {
      const from = alive()[0] as number;
      const slot = Number((await info(from, `CLUSTER KEYSLOT ${key}`)).trim());
      for (const p of alive()) {
        const role = await info(p, 'ROLE');
        if (!role.startsWith('master')) continue;
        const nodes = await info(p, 'CLUSTER NODES');
        const self = nodes.split('\n').find((l) => l.includes('myself'));
        const ranges = (self ?? '').split(' ').slice(8);
        for (const r of ranges) {
          const [lo, hi] = r.split('-').map(Number);
          if (lo !== undefined && slot >= lo && slot <= (hi ?? lo)) return p;
        }
      }
      throw new Error(`no live master serves slot ${slot}`);
    },
    async replicasOf(masterPort) {
      const out = await info(masterPort, 'INFO replication');
      return [...out.matchAll(/^slave\d+:ip=[^,]+,port=(\d+)/gm)].map((m) => Number(m[1]));
    },
    async kill(port) {
      killed.add(port);
      const p = procs.get(port);
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        p.once('exit', () => resolve());
        p.kill('SIGKILL');
      });
    },
    async waitHealthy() {
      const state = async () => {
        const from = alive()[0];
        return from === undefined ? 'no live node' : await info(from, 'CLUSTER NODES').catch((e: unknown) => String(e));
      };
      await waitFor(
        'the cluster to be healthy',
        async () => {
          for (const p of alive()) {
            const state = await info(p, 'CLUSTER INFO').catch(() => '');
            if (!/cluster_state:ok/.test(state) || !/cluster_slots_ok:16384/.test(state)) return false;
            // Replicas synced and listed, so a client that reads the slot map now sees them.
            const role = await info(p, 'INFO replication').catch(() => '');
            if (/role:slave/.test(role) && !/master_link_status:up/.test(role)) return false;
            const nodes = await info(p, 'CLUSTER NODES').catch(() => '');
            for (const k of killed) {
              const line = nodes.split('\n').find((l) => l.includes(`:${k}@`));
              if (line && !(line.split(' ')[2] ?? '').split(',').includes('fail')) return false;
              // Its slots are served by a live master now, not still listed against it.
              if (line && line.split(' ').length > 8) return false;
            }
          }
          return true;
        },
        // A loaded machine (CI shares it) can take a while to elect a replica.
        90_000,
        200,
      ).catch(async (err: unknown) => {
        throw new Error(`${String(err)}; cluster nodes now:\n${await state()}`);
      });
    },
    stop,
  };
  await cluster.waitHealthy();
  return cluster;
}
