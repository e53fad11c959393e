import path from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Router, ShardMapError, ShardSet, redactSecrets, redactUrl, secretsOfUrl, validateShardMap } from '../../src/index.js';
import { secretsInEnv } from '../../src/cli/context.js';
import { connectionUrlOf } from '../../src/shardmap/connection-url.js';
import { poolConfig } from '../../src/db/connection.js';

/** Where credentials may come from, and that no error about them shows them. */
const PW = 'S3cr3t/p@ss:word';
const URL_WITH_PW = `postgres://app:${encodeURIComponent(PW)}@db.internal:5432/shard1`;

function mapWith(shard: Record<string, unknown>): unknown {
  return {
    version: 1,
    buckets: 4096,
    regions: ['r'],
    shards: [{ id: 's-1', region: 'r', connection: 'env:SHARD_URL', buckets: ['0-4095'], ...shard }],
  };
}

function issuesOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ShardMapError);
    const message = (err as Error).message;
    for (const secret of secretsOfUrl(URL_WITH_PW)) expect(message).not.toContain(secret);
    return message;
  }
  throw new Error('the map was accepted');
}

describe('credentials in the shard map', () => {
  it('env:NAME reads $NAME, or the file named by $NAME_FILE through the reader the edge passes in', () => {
    expect(connectionUrlOf(validateShardMap(mapWith({}), { env: { SHARD_URL: URL_WITH_PW } }).shards[0]!)).toBe(URL_WITH_PW);
    const read: string[] = [];
    const map = validateShardMap(mapWith({}), {
      env: { SHARD_URL_FILE: '/run/secrets/shard-url' },
      readSecretFile: (file) => (read.push(file), `${URL_WITH_PW}\n`),
    });
    expect(read).toEqual(['/run/secrets/shard-url']);
    expect(connectionUrlOf(map.shards[0]!)).toBe(URL_WITH_PW); // the trailing newline of the file is not part of it
    expect(map.shards[0]?.connectionRef).toBe('env:SHARD_URL');
  });

  it('refuses NAME_FILE without a reader, both NAME and NAME_FILE, and unreadable or non-URL files', () => {
    expect(issuesOf(() => validateShardMap(mapWith({}), { env: { SHARD_URL_FILE: '/x' } }))).toMatch(
      /SHARD_URL_FILE is set, but this program does not read secret files/,
    );
    expect(issuesOf(() => validateShardMap(mapWith({}), { env: { SHARD_URL: URL_WITH_PW, SHARD_URL_FILE: '/x' }, readSecretFile: () => URL_WITH_PW }))).toMatch(
      /both SHARD_URL and SHARD_URL_FILE are set/,
    );
    const enoent = () => {
      throw Object.assign(new Error(`ENOENT: no such file, open '/x'`), { code: 'ENOENT' });
    };
    expect(issuesOf(() => validateShardMap(mapWith({}), { env: { SHARD_URL_FILE: '/x' }, readSecretFile: enoent }))).toMatch(
      /cannot read the file "\/x" named by SHARD_URL_FILE \(ENOENT\)/,
    );
    expect(issuesOf(() => validateShardMap(mapWith({}), { env: { SHARD_URL_FILE: '/x' }, readSecretFile: () => PW }))).toMatch(
      /the file named by SHARD_URL_FILE does not hold a postgres:\/\/ URL/,
    );
    expect(issuesOf(() => validateShardMap(mapWith({}), { env: { SHARD_URL: PW } }))).toMatch(
      /environment variable SHARD_URL does not hold a postgres:\/\/ URL/,
    );
  });

  it('refuses a literal URL with a password, in the user info or as a query parameter', () => {
    expect(issuesOf(() => validateShardMap(mapWith({ connection: URL_WITH_PW })))).toMatch(/the URL holds a password/);
    expect(issuesOf(() => validateShardMap(mapWith({ connection: `postgres://app@db:5432/x?password=${encodeURIComponent(PW)}` })))).toMatch(
      /the URL holds a password/,
    );
  });
});

describe('TLS settings', () => {
  const withUrl = (query: string, shard: Record<string, unknown> = {}, file?: string) =>
    validateShardMap(mapWith(shard), { env: { SHARD_URL: `${URL_WITH_PW}${query}` }, ...(file ? { file } : {}) }).shards[0]!;

  it('folds sslmode and sslrootcert from the URL into the map, and refuses conflicts and other ssl parameters', () => {
    expect(withUrl('?sslmode=verify-full&sslrootcert=/etc/ca.pem').ssl).toEqual({ mode: 'verify-full', ca: '/etc/ca.pem' });
    expect(withUrl('?sslmode=require', { ssl: { mode: 'require' } }).ssl).toEqual({ mode: 'require' });
    expect(issuesOf(() => withUrl('?sslmode=disable', { ssl: { mode: 'verify-full' } }))).toMatch(/conflicts with sslmode=disable/);
    expect(issuesOf(() => withUrl('?sslmode=allow'))).toMatch(/sslmode "allow" in the URL is not one of/);
    expect(issuesOf(() => withUrl('?sslcert=/c.pem&sslkey=/k.pem'))).toMatch(/"sslcert" is not supported[\s\S]*"sslkey" is not supported/);
    expect(issuesOf(() => withUrl('?ssl=true'))).toMatch(/"ssl" is not supported/);
    expect(issuesOf(() => withUrl('', { ssl: { mode: 'disable', ca: 'ca.pem' } }))).toMatch(/a CA file is given but the mode is "disable"/);
  });

  it('resolves a relative CA path against the map file, not the working directory', () => {
    const file = path.join('/etc/shardline', 'map.json');
    expect(withUrl('', { ssl: { mode: 'verify-full', ca: 'certs/ca.pem' } }, file).ssl?.ca).toBe('/etc/shardline/certs/ca.pem');
    expect(withUrl('', { ssl: { mode: 'verify-full', ca: '/abs/ca.pem' } }, file).ssl?.ca).toBe('/abs/ca.pem');
  });

  it("hands pg a connection string without ssl parameters, so the map's ssl block is the only source", () => {
    const shard = withUrl('?sslmode=require&application_name=x', { ssl: { mode: 'require' } });
    const cfg = poolConfig(shard);
    expect(cfg.connectionString).not.toMatch(/ssl/);
    expect(cfg.ssl).toEqual({ rejectUnauthorized: false });
    expect(poolConfig(withUrl('')).ssl).toBe(false);
  });
});

describe('masking', () => {
  it('redactUrl masks user-info and query-parameter passwords; secretsOfUrl lists every spelling', () => {
    expect(redactUrl(URL_WITH_PW)).toBe('postgres://app:***@db.internal:5432/shard1');
    expect(redactUrl(`postgres://app@db/x?password=${encodeURIComponent(PW)}`)).not.toContain(encodeURIComponent(PW));
    expect(redactUrl('not a url with secret')).toBe('<unparseable connection string>');
    expect(secretsOfUrl(URL_WITH_PW)).toEqual(expect.arrayContaining([PW, encodeURIComponent(PW)]));
    expect(redactSecrets(`auth failed for ${PW} (${encodeURIComponent(PW)})`, secretsOfUrl(URL_WITH_PW))).toBe('auth failed for *** (***)');
  });

  it('the CLI finds secrets in URL-shaped variables and secret-named ones, not in ordinary settings', () => {
    const found = secretsInEnv({
      SHARD_URL: URL_WITH_PW,
      REDIS_URL: 'rediss://worker:redis-secret-1@cache:6380/0',
      PGPASSWORD: 'pg-secret-2',
      API_TOKEN: 'tok-secret-3',
      FEATURE_TOKEN_ENABLED: 'true', // too short to be a secret worth garbling output for
      HOME: '/root',
    });
    expect(found).toEqual(expect.arrayContaining([PW, 'redis-secret-1', 'pg-secret-2', 'tok-secret-3']));
    expect(found).not.toContain('true');
    expect(found).not.toContain('/root');
  });
});

describe('no public object carries the resolved URL', () => {
  it('the map, a ShardSpec, router.shardFor and the Router itself print and serialize without the password', () => {
    const map = validateShardMap(mapWith({}), { env: { SHARD_URL: URL_WITH_PW } });
    const router = new Router(map);
    const shard = router.shardFor(router.newPlayerId('r'));
    expect(shard.target).toBe('db.internal:5432/shard1');
    const shown = [
      JSON.stringify(map, (_k, v: unknown) => (v instanceof Uint16Array ? [...v.slice(0, 4)] : v)),
      JSON.stringify(shard),
      JSON.stringify({ ...shard }),
      inspect(map, { depth: null, showHidden: true }),
      inspect(shard, { depth: null, showHidden: true }),
      inspect(router, { depth: null, showHidden: true }),
    ];
    for (const text of shown) {
      for (const secret of secretsOfUrl(URL_WITH_PW)) expect(text).not.toContain(secret);
      expect(text).not.toContain('app:');
    }
    // The connection still reaches pg, through the internal accessor only.
    expect(poolConfig(shard).connectionString).toBe(URL_WITH_PW);
  });
});

describe('no driver object a caller can reach shows the password', () => {
  it("a ShardSet's pools and Kysely dbs print without it, and still connect", async () => {
    // The local server trusts 127.0.0.1 and ignores the password: only where it shows up is tested.
    const pw = `pool-pw-${Date.now().toString(36)}`;
    const map = validateShardMap(mapWith({}), { env: { SHARD_URL: `postgres://postgres:${pw}@127.0.0.1:5432/postgres` } });
    const shards = new ShardSet(map, { poolMax: 1 });
    try {
      const pool = shards.pool('s-1');
      expect((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one).toBe(1);
      for (const shown of [inspect(pool, { depth: 6 }), inspect(shards.rawDb('s-1'), { depth: 6 }), inspect(shards, { depth: 6 })]) {
        expect(shown).not.toContain(pw);
      }
    } finally {
      await shards.close();
    }
  });
});
