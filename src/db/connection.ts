import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import pg from 'pg';
import { ShardUnavailableError } from '../errors/index.js';
import { connectionUrlOf } from '../shardmap/connection-url.js';
import type { ShardSpec } from '../shardmap/types.js';

export interface ConnectionOptions {
  /** Max connections per shard pool; the map's `pool.max` wins for its shard. Default 10. */
  poolMax?: number;
  /** How long to wait for a connection before the shard counts as unavailable. Default 5000 ms. */
  connectionTimeoutMs?: number;
  /** Server-side statement timeout, 0 for none. Default 30000 ms. */
  statementTimeoutMs?: number;
  /** Idle connections are closed after this long. Default 10000 ms. */
  idleTimeoutMs?: number;
  /** Shown in pg_stat_activity. */
  applicationName?: string;
}

const INT8_OID = 20;

/**
 * int8 comes back as bigint (player ids, scores, counts) instead of pg's default string. Set per
 * pool, never on pg's global parser table, so shardline does not change other code in the process.
 */
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8_OID && format !== 'binary'
      ? (v: string) => BigInt(v)
      : (pg.types.getTypeParser(oid, format as 'text') as (v: string) => unknown)) as typeof pg.types.getTypeParser,
};

/** host:port/database of a shard: safe to print (no user, no password). */
export function targetOf(shard: Pick<ShardSpec, 'target'>): string {
  return shard.target;
}

export function databaseOf(shard: ShardSpec): string {
  return decodeURIComponent(new URL(connectionUrlOf(shard)).pathname.slice(1));
}

/**
 * TLS options for pg from the map's `ssl` block, with libpq's sslmode names:
 * - disable: plaintext.
 * - prefer, require: encrypted, the certificate is not checked (with `ca`, require checks the
 *   chain like verify-ca, as libpq does). node-postgres cannot fall back to plaintext, so prefer
 *   behaves as require: a server without TLS is refused rather than silently used in the clear.
 * - verify-ca: the chain must lead to `ca` (or, without it, to Node's public roots).
 * - verify-full: verify-ca, and the certificate must name the host of the URL.
 */
export function sslConfig(shard: ShardSpec): pg.PoolConfig['ssl'] {
  const ssl = shard.ssl;
  if (!ssl || ssl.mode === 'disable') return false;
  const ca = ssl.ca === undefined ? undefined : readCa(shard, ssl.ca);
  const verifyChain: ConnectionOptionsTls = {
    rejectUnauthorized: true,
    ...(ca === undefined ? {} : { ca }),
    // The chain is checked by Node before this is called; only the name check is skipped.
    checkServerIdentity: () => undefined,
  };
  switch (ssl.mode) {
    case 'prefer':
    case 'require':
      return ca === undefined ? { rejectUnauthorized: false } : verifyChain;
    case 'verify-ca':
      return verifyChain;
    case 'verify-full': {
      // Compare against the host written in the URL, not whatever name pg hands to tls.connect:
      // for an IP address pg sends no SNI and Node would otherwise fall back to "localhost".
      const host = hostOf(shard);
      return {
        rejectUnauthorized: true,
        ...(ca === undefined ? {} : { ca }),
        ...(isIP(host) === 0 ? { servername: host } : {}),
        checkServerIdentity: (_name: string, cert: PeerCertificate) => checkServerIdentity(host, cert),
      };
    }
  }
}

type ConnectionOptionsTls = Exclude<pg.PoolConfig['ssl'], boolean | undefined>;

function hostOf(shard: ShardSpec): string {
  // URL keeps IPv6 literals in brackets; certificates and isIP want them bare.
  return new URL(connectionUrlOf(shard)).hostname.replace(/^\[(.*)\]$/, '$1');
}

function readCa(shard: ShardSpec, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ShardUnavailableError(shard.id, targetOf(shard), `cannot read the CA certificate file "${file}" (${code})`, {
      cause,
      transient: false,
      hint: 'ssl.ca in the shard map names a PEM file; a relative path is relative to the map file',
    });
  }
}

/**
 * TLS settings belong in the map's `ssl` block. validateShardMap folds sslmode/sslrootcert from a
 * URL into it and refuses the rest; they are also dropped here because pg lets parameters in the
 * connection string override the `ssl` object (and would read key files named there itself).
 */
function withoutSslParams(url: URL): URL {
  for (const key of [...url.searchParams.keys()]) if (/^ssl/i.test(key)) url.searchParams.delete(key);
  return url;
}

export function poolConfig(shard: ShardSpec, options: ConnectionOptions = {}): pg.PoolConfig {
  const url = withoutSslParams(new URL(connectionUrlOf(shard)));
  return {
    connectionString: url.toString(),
    ssl: sslConfig(shard),
    max: shard.pool?.max ?? options.poolMax ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5000,
    idleTimeoutMillis: options.idleTimeoutMs ?? 10_000,
    statement_timeout: options.statementTimeoutMs ?? 30_000,
    application_name: options.applicationName ?? 'shardline',
    types,
  };
}

/**
 * A pool for the shard that does not show its URL: pg-pool keeps its options, connection string
 * included, on the pool, where logging or inspecting the pool (or a Kysely db over it) would print
 * the password. Each new client reads the property directly, so hiding it from enumeration (as
 * pg-pool itself hides `password`) changes nothing else.
 */
export function openPool(shard: ShardSpec, options: ConnectionOptions = {}): pg.Pool {
  const pool = new pg.Pool(poolConfig(shard, options));
  Object.defineProperty(pool.options, 'connectionString', { enumerable: false });
  return pool;
}
