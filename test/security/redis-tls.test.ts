import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redactUrl, secretsOfUrl } from '../../src/index.js';
import { redisOptionsFromUrl } from '../../src/settlement/index.js';
import { freePort } from '../../src/demo/free-port.js';
import { within } from '../support/embedded-pg.js';
import { hasOpenssl, makeTestCerts, type TestCerts } from './certs.js';

/**
 * A private redis-server that speaks TLS only (no plaintext port), with the default user
 * disabled and one ACL user with a password: the deployment docs/security.md describes, reached
 * through the same rediss:// URL parsing the CLI and the worker use.
 */
const PASSWORD = `redis-pw-${randomBytes(6).toString('hex')}`;
const USER = 'shardline';

function redisTlsSupported(): boolean {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return false;
  // A build without TLS rejects the directive; port 0 everywhere makes it exit at once either way.
  const probe = spawnSync('redis-server', ['--port', '0', '--tls-port', '0', '--save', ''], { encoding: 'utf8', timeout: 10_000 });
  return !/Bad directive|wrong number of arguments|not supported/i.test(`${probe.stdout}${probe.stderr}`);
}

const supported = (await hasOpenssl()) && redisTlsSupported();
let certs: TestCerts;
let dir: string;
let port: number;
let server: ChildProcess | undefined;

beforeAll(async () => {
  if (!supported) return;
  certs = await makeTestCerts(['IP:127.0.0.1']);
  dir = mkdtempSync(path.join(tmpdir(), 'shardline-redis-tls-'));
  writeFileSync(path.join(dir, 'server.crt'), certs.serverCert);
  writeFileSync(path.join(dir, 'server.key'), certs.serverKey, { mode: 0o600 });
  port = await freePort();
  writeFileSync(
    path.join(dir, 'redis.conf'),
    [
      'bind 127.0.0.1',
      'port 0', // no plaintext listener at all
      `tls-port ${port}`,
      `tls-cert-file ${path.join(dir, 'server.crt')}`,
      `tls-key-file ${path.join(dir, 'server.key')}`,
      `tls-ca-cert-file ${certs.caFile}`,
      'tls-auth-clients no', // server-verified TLS; client certificates are not part of the setup
      `dir ${dir}`,
      'save ""',
      'appendonly no',
      'user default off',
      `user ${USER} on >${PASSWORD} ~* &* +@all`,
    ].join('\n'),
  );
  server = spawn('redis-server', [path.join(dir, 'redis.conf')], { stdio: 'ignore' });
  // Ready when a verified, authenticated client gets PONG.
  await within(
    (async () => {
      for (;;) {
        try {
          if ((await ping(good())) === 'PONG') return;
        } catch {
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    })(),
    30_000,
    'start of the TLS redis-server',
  );
}, 60_000);

afterAll(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server?.once('exit', r));
    server.kill('SIGTERM');
    await within(exited, 10_000, 'stop of redis-server').catch(() => server?.kill('SIGKILL'));
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
  await certs?.remove();
});

const url = (user: string, password: string, scheme = 'rediss') => `${scheme}://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/0`;

/** Options as the CLI builds them from REDIS_URL, plus the private CA (the CLI gets it from NODE_EXTRA_CA_CERTS: docs/security.md). */
function good(overrides: { url?: string; ca?: string } = {}): RedisOptions {
  const base = redisOptionsFromUrl(overrides.url ?? url(USER, PASSWORD));
  return base.tls ? { ...base, tls: { ca: readFileSync(overrides.ca ?? certs.caFile, 'utf8') } } : base;
}

/** One bounded attempt: no retries, no offline queue, a short connect timeout. */
async function ping(options: RedisOptions): Promise<string> {
  const r = new Redis({ ...options, lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  // connect() rejects with a bare "Connection is closed."; the cause arrives as an 'error' event.
  let cause: Error | undefined;
  r.on('error', (err: Error) => (cause ??= err));
  try {
    await within(r.connect(), 10_000, 'redis connect');
    return await within(r.ping(), 10_000, 'redis ping');
  } catch (err) {
    throw cause ?? err;
  } finally {
    r.disconnect();
  }
}

async function failureOf(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the connection to be refused');
}

describe.skipIf(!supported)('Redis over TLS with an ACL user (private redis-server)', () => {
  it('rediss:// with the ACL user, its password and the right CA works', async () => {
    expect(redisOptionsFromUrl(url(USER, PASSWORD))).toMatchObject({ username: USER, password: PASSWORD, tls: {} });
    expect(await ping(good())).toBe('PONG');
  });

  it('refuses a wrong password and the disabled default user, without echoing the password', async () => {
    const wrong = await failureOf(ping(good({ url: url(USER, 'not-the-password') })));
    expect(wrong.message).toMatch(/WRONGPASS|invalid username-password/i);
    expect(wrong.message).not.toContain('not-the-password');
    const anonymous = await failureOf(ping({ ...good(), username: undefined, password: undefined }));
    expect(anonymous.message).toMatch(/NOAUTH|Authentication required|closed|WRONGPASS/i);
  });

  it('refuses a server certificate from another CA', async () => {
    const err = await failureOf(ping(good({ ca: certs.otherCaFile })));
    expect(err.message).toMatch(/self[- ]signed|unable to (get|verify)|certificate/i);
  });

  it('refuses plaintext redis:// (the server has no plaintext port)', async () => {
    await failureOf(ping(good({ url: url(USER, PASSWORD, 'redis') })));
  });

  it('Redis URLs are masked like Postgres ones', () => {
    const u = url(USER, PASSWORD);
    expect(redactUrl(u)).not.toContain(PASSWORD);
    expect(redactUrl(u)).toContain(`${USER}:***@127.0.0.1`);
    expect(secretsOfUrl(u)).toContain(PASSWORD);
  });
});
