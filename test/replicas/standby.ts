import { execFile } from 'node:child_process';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from '../../src/demo/free-port.js';

const run = promisify(execFile);

/** The machine's PostgreSQL 15 (Debian's postgresql-15 package). */
export const PG_BIN = process.env.SHARDLINE_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export function standbyAvailable(): boolean {
  return ['initdb', 'pg_ctl', 'pg_basebackup'].every((b) => existsSync(path.join(PG_BIN, b)));
}

/**
 * A throwaway primary and a streaming standby of it (`pg_basebackup -R`), on free ports in a temp
 * folder, from the machine's PostgreSQL binaries. As root the servers run as the `postgres` system
 * user (initdb refuses root). Stopped with `pg_ctl stop` and the folder removed by destroy().
 */
export interface PrimaryWithStandby {
  readonly primaryPort: number;
  readonly standbyPort: number;
  primaryUrl(database: string): string;
  standbyUrl(database: string): string;
  /** Runs the base backup and starts the standby (call after creating and migrating the databases). */
  startStandby(): Promise<void>;
  stopStandby(): Promise<void>;
  /** Starts the standby again after stopStandby() (its data kept). */
  restartStandby(): Promise<void>;
  sql<T extends pg.QueryResultRow = pg.QueryResultRow>(where: 'primary' | 'standby', text: string, database?: string): Promise<T[]>;
  destroy(): Promise<void>;
}

export async function startPrimaryWithStandby(): Promise<PrimaryWithStandby> {
  const asRoot = process.getuid?.() === 0;
  const base = await mkdtemp(path.join(tmpdir(), 'shardline-repl-'));
  await chmod(base, 0o755);
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    await chown(base, Number(stdout.trim()), Number(gid.trim()));
  }
  const bin = (name: string) => path.join(PG_BIN, name);
  const pgRun = (name: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', bin(name), ...args], { cwd: base }) : run(bin(name), args, { cwd: base });
  const primaryDir = path.join(base, 'primary');
  const standbyDir = path.join(base, 'standby');
  const primaryPort = await freePort();
  const standbyPort = await freePort();
  const common = `-c listen_addresses=127.0.0.1 -c unix_socket_directories=${base} -c fsync=off -c max_connections=60`;
  const started = new Set<string>();
  const start = async (dir: string, port: number) => {
    await pgRun('pg_ctl', ['-D', dir, '-l', `${dir}.log`, '-w', '-t', '60', '-o', `-p ${port} ${common} -c wal_level=replica -c hot_standby=on`, 'start']);
    started.add(dir);
  };
  const stop = async (dir: string) => {
    if (!started.has(dir)) return;
    await pgRun('pg_ctl', ['-D', dir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    started.delete(dir);
  };

  try {
    await pgRun('initdb', ['-D', primaryDir, '--auth=trust', '--no-sync', '-U', 'postgres']);
    await start(primaryDir, primaryPort);
  } catch (err) {
    await stop(primaryDir).catch(() => undefined);
    await rm(base, { recursive: true, force: true });
    throw err;
  }
  const url = (port: number, database: string) => `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  return {
    primaryPort,
    standbyPort,
    primaryUrl: (db) => url(primaryPort, db),
    standbyUrl: (db) => url(standbyPort, db),
    async startStandby() {
      await pgRun('pg_basebackup', [
        '-h',
        '127.0.0.1',
        '-p',
        String(primaryPort),
        '-U',
        'postgres',
        '-D',
        standbyDir,
        '-R',
        '-X',
        'stream',
        '--checkpoint=fast',
      ]);
      await start(standbyDir, standbyPort);
    },
    stopStandby: () => stop(standbyDir),
    restartStandby: () => start(standbyDir, standbyPort),
    async sql<T extends pg.QueryResultRow>(where: 'primary' | 'standby', text: string, database = 'postgres') {
      const client = new pg.Client({ connectionString: url(where === 'primary' ? primaryPort : standbyPort, database) });
      client.on('error', () => undefined);
      await client.connect();
      try {
        return (await client.query<T>(text)).rows;
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    async destroy() {
      await stop(standbyDir).catch(() => undefined);
      await stop(primaryDir).catch(() => undefined);
      await rm(base, { recursive: true, force: true });
    },
  };
}
