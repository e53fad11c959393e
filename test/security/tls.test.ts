import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardSet, ShardUnavailableError, migrateShards, schemaStatus, validateShardMap, type ShardMap } from '../../src/index.js';
import { runCli } from '../support/cli.js';
import { startEmbeddedPg, type EmbeddedPg } from '../support/embedded-pg.js';
import { hasOpenssl, makeTestCerts, type TestCerts } from './certs.js';

/**
 * A private PostgreSQL that accepts TLS only (hostssl rules, password auth), with a certificate
 * for IP:127.0.0.1 signed by a throwaway CA. It also listens on 127.0.0.2, an address the
 * certificate does not name, to tell verify-ca from verify-full.
 */
const PASSWORD = `tls-pw-${randomBytes(6).toString('hex')}`;
const DB = 'tls_shard';
const timeouts = { connectionTimeoutMs: 10_000 };
const openssl = await hasOpenssl();

let server: EmbeddedPg;
let certs: TestCerts;

beforeAll(async () => {
  if (!openssl) return;
  certs = await makeTestCerts(['IP:127.0.0.1']);
  server = await startEmbeddedPg({
    name: 'tls',
    password: PASSWORD,
    files: { 'server.crt': certs.serverCert, 'server.key': certs.serverKey },
    config: { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key', listen_addresses: '127.0.0.1,127.0.0.2' },
    hba: ['hostssl all all 127.0.0.0/8 scram-sha-256'],
  });
  await server.admin((c) => c.query(`CREATE DATABASE ${DB}`));
  // Stamp and migrate once, over verified TLS; the other tests only connect.
  const [r] = await migrateShards(mapOf({ mode: 'verify-full', ca: certs.caFile }).shards, 'latest', timeouts);
  expect(r).toMatchObject({ ok: true });
}, 120_000);

afterAll(async () => {
  await server?.destroy();
  await certs?.remove();
});

function urlAt(host: string, query = ''): string {
  const u = new URL(server.urlFor(DB));
  u.hostname = host;
  return u.toString() + query;
}

function mapOf(ssl: { mode: string; ca?: string } | undefined, options: { host?: string; query?: string } = {}): ShardMap {
  return validateShardMap(
    {
      version: 1,
      buckets: 4096,
      regions: ['tls'],
      shards: [{ id: 'tls-1', region: 'tls', connection: 'env:TLS_SHARD_URL', buckets: ['0-4095'], ...(ssl ? { ssl } : {}) }],
    },
    { env: { TLS_SHARD_URL: urlAt(options.host ?? '127.0.0.1', options.query) } },
  );
}

/** Connects through the library (identity check included) and says whether the session is TLS. */
async function connect(map: ShardMap): Promise<{ ssl: boolean; version: string | null }> {
  const set = new ShardSet(map, timeouts);
  try {
    const db = await set.db('tls-1');
    const r = await sql<{ ssl: boolean; version: string | null }>`SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()`.execute(db);
    return r.rows[0]!;
  } finally {
    await set.close();
  }
}

async function failureOf(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected the connection to be refused');
}

const CERT_REFUSED = /self[- ]signed|unable to (get|verify)|certificate/i;

describe.skipIf(!openssl)('TLS to a shard (embedded PostgreSQL with a self-signed CA)', () => {
  it('verify-full with the right CA connects, encrypted', async () => {
    expect(await connect(mapOf({ mode: 'verify-full', ca: certs.caFile }))).toMatchObject({ ssl: true, version: expect.stringMatching(/^TLSv1\.[23]$/) });
  });

  it('verify-full with another CA, or with only the public roots, is refused', async () => {
    const wrong = await failureOf(connect(mapOf({ mode: 'verify-full', ca: certs.otherCaFile })));
    expect(wrong.message).toMatch(CERT_REFUSED);
    const publicRoots = await failureOf(connect(mapOf({ mode: 'verify-full' })));
    expect(publicRoots.message).toMatch(CERT_REFUSED);
  });

  it('verify-full refuses a host the certificate does not name; verify-ca accepts it', async () => {
    const mismatch = await failureOf(connect(mapOf({ mode: 'verify-full', ca: certs.caFile }, { host: '127.0.0.2' })));
    expect(mismatch.message).toMatch(/127\.0\.0\.2|altnames|does not match/i);
    expect(await connect(mapOf({ mode: 'verify-ca', ca: certs.caFile }, { host: '127.0.0.2' }))).toMatchObject({ ssl: true });
  });

  it('require encrypts without checking the certificate, but checks the chain when a CA is given (libpq)', async () => {
    expect(await connect(mapOf({ mode: 'require' }))).toMatchObject({ ssl: true });
    expect(await connect(mapOf({ mode: 'prefer' }))).toMatchObject({ ssl: true });
    expect((await failureOf(connect(mapOf({ mode: 'require', ca: certs.otherCaFile })))).message).toMatch(CERT_REFUSED);
  });

  it('plaintext is refused by a hostssl-only server, as a typed permanent failure', async () => {
    for (const ssl of [{ mode: 'disable' }, undefined]) {
      const err = await failureOf(connect(mapOf(ssl)));
      expect(err).toBeInstanceOf(ShardUnavailableError);
      expect(err.message).toMatch(/no pg_hba\.conf entry.*no encryption/);
      expect((err as ShardUnavailableError).transient).toBe(false);
      expect(err.message).not.toContain(PASSWORD);
    }
  });

  it('sslmode and sslrootcert in the URL are honoured, never silently dropped', async () => {
    const fromUrl = mapOf(undefined, { query: `?sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.caFile)}` });
    expect(fromUrl.shards[0]?.ssl).toEqual({ mode: 'verify-full', ca: certs.caFile });
    expect(await connect(fromUrl)).toMatchObject({ ssl: true });
    expect(await connect(mapOf(undefined, { query: '?sslmode=require' }))).toMatchObject({ ssl: true });
    const wrong = mapOf(undefined, { query: `?sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.otherCaFile)}` });
    expect((await failureOf(connect(wrong))).message).toMatch(CERT_REFUSED);
    expect(() => mapOf({ mode: 'verify-full', ca: certs.caFile }, { query: '?sslmode=disable' })).toThrow(/conflicts with sslmode=disable/);
  });

  it('a CA file that cannot be read is a typed error naming the file, not a crash', async () => {
    const missing = path.join(certs.dir, 'missing-ca.crt');
    const err = await failureOf(connect(mapOf({ mode: 'verify-full', ca: missing })));
    expect(err).toBeInstanceOf(ShardUnavailableError);
    expect(err.message).toContain(missing);
    expect((err as ShardUnavailableError).transient).toBe(false);
    const status = await schemaStatus(mapOf({ mode: 'verify-full', ca: missing }).shards, timeouts);
    expect(status.unreachable).toEqual(['tls-1']);
  });

  it('CLI: a CA path relative to the map file; shards check passes with the right CA, fails with another', async () => {
    const write = (name: string, ca: string) => {
      const file = path.join(certs.dir, name);
      const shard = { id: 'tls-1', region: 'tls', connection: 'env:TLS_SHARD_URL', buckets: ['0-4095'], ssl: { mode: 'verify-full', ca } };
      writeFileSync(file, JSON.stringify({ version: 1, buckets: 4096, regions: ['tls'], shards: [shard] }));
      return file;
    };
    const env = { TLS_SHARD_URL: urlAt('127.0.0.1') };
    const good = await runCli(['shards', 'check', '--map', write('good.json', 'ca.crt')], { env });
    expect(good.stdout).toMatch(/tls-1\s+tls\s+127\.0\.0\.1:\d+\/tls_shard\s+yes\s+ok/);
    expect(good.code).toBe(0);
    const bad = await runCli(['shards', 'check', '--map', write('bad.json', 'other-ca.crt')], { env });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(CERT_REFUSED);
    for (const out of [good, bad]) expect(out.stdout + out.stderr).not.toContain(PASSWORD);
  });
});
