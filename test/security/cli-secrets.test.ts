import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Accounts, ShardSet, loadShardMap } from '../../src/index.js';
import { freePort } from '../../src/demo/free-port.js';
import { runCli, startCli, type CliResult } from '../support/cli.js';
import { startEmbeddedPg, within, type EmbeddedPg } from '../support/embedded-pg.js';
import { writeMapFile } from '../support/maps.js';
import { waitFor } from '../support/wait.js';

/**
 * Every CLI command, run as operators run it, against a private server with password auth and a
 * password that needs URL encoding. No output of any run may contain a password, in any spelling.
 * To cover a new command, add its runs to `outputs` (see `cli`).
 */
const hex = randomBytes(5).toString('hex');
const PASSWORD = `Kn0wn-p@ss:w0rd/${hex}`;
const WRONG = `Wr0ng-p@ss:${hex}`;
const SU_PASSWORD = `su-${randomBytes(6).toString('hex')}`;
const REDIS_PASSWORD = `Redis-p@ss:${randomBytes(5).toString('hex')}`;
const USER = 'cli_owner';
const SECRETS = [PASSWORD, WRONG, SU_PASSWORD, REDIS_PASSWORD].flatMap((s) => [s, encodeURIComponent(s)]);
/** A V8 stack frame: "    at fn (file:line:col)". The CLI prints messages, never traces. */
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

let server: EmbeddedPg;
let redis: ChildProcess | undefined;
let redisUrl: string;
let dir: string;
let mapFile: string;
let env: Record<string, string>;
const outputs: { args: string; result: CliResult }[] = [];
/** Player ids created for the settlement runs. */
let players: string[] = [];

/** Runs the CLI and records its output for the final grep. */
async function cli(args: string[], extraEnv: Record<string, string> = env): Promise<CliResult> {
  const result = await runCli(args, { env: extraEnv, timeoutMs: 90_000 });
  outputs.push({ args: args.join(' '), result });
  return result;
}

/** Temp map files of this file, removed in afterAll. */
const mapFiles: string[] = [];
function writeTempMap(map: unknown): string {
  const file = writeMapFile(map);
  mapFiles.push(file);
  return file;
}

const dbUrl = (db: string, password: string) => server.urlFor(db, { user: USER, password });

/** `shardline worker` in the background, serving metrics on a free port; stop() sends SIGTERM. */
function startWorker(): { metricsPort: Promise<number>; stop(): Promise<CliResult> } {
  const worker = startCli(['worker', '--map', mapFile, '--metrics-port', '0', '--log-level', 'info', '--grace-ms', '2000'], { env, timeoutMs: 240_000 });
  const { child } = worker;
  const metricsPort = waitFor(
    'the worker to serve metrics',
    async () => {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`worker exited (${child.exitCode ?? child.signalCode}) before serving metrics:\n${worker.output()}`);
      return Number(/"port":(\d+)[^\n]*metrics served/.exec(worker.stdout())?.[1] ?? 0);
    },
    90_000,
  );
  metricsPort.catch(() => undefined);
  return {
    metricsPort,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return within(worker.done, 30_000, 'worker stop').catch(() => (child.kill('SIGKILL'), { code: -1, stdout: worker.stdout(), stderr: worker.stderr() }));
    },
  };
}

beforeAll(async () => {
  server = await startEmbeddedPg({ name: 'cli', password: SU_PASSWORD });
  // The owner may create databases (for --create-databases) and the NOLOGIN app role.
  await server.admin((c) => c.query(`CREATE ROLE ${USER} LOGIN CREATEDB CREATEROLE PASSWORD '${PASSWORD.replace(/'/g, "''")}'`));
  dir = mkdtempSync(path.join(tmpdir(), 'shardline-cli-secrets-'));
  // sc-1's URL comes from a secret file named by CLI_SC1_URL_FILE (Docker/Kubernetes secrets).
  writeFileSync(path.join(dir, 'sc1-url'), `${dbUrl('cli_sc_1', PASSWORD)}\n`, { mode: 0o600 });
  mapFile = writeTempMap({
    version: 1,
    buckets: 4096,
    regions: ['shenzhen', 'sichuan'],
    shards: [
      { id: 'sz-1', region: 'shenzhen', connection: 'env:CLI_SZ1_URL', buckets: ['0-2047'] },
      { id: 'sc-1', region: 'sichuan', connection: 'env:CLI_SC1_URL', buckets: ['2048-4095'] },
    ],
  });
  // A private Redis that requires an ACL user and password, for the settlement commands.
  const redisPort = await freePort();
  const conf = path.join(dir, 'redis.conf');
  const lines = [
    `port ${redisPort}`,
    'bind 127.0.0.1',
    'save ""',
    'appendonly no',
    `dir ${dir}`,
    'user default off',
    `user shardline on >${REDIS_PASSWORD} ~* &* +@all`,
  ];
  writeFileSync(conf, lines.join('\n'), { mode: 0o600 });
  redis = spawn('redis-server', [conf], { stdio: 'ignore' });
  redisUrl = `redis://shardline:${encodeURIComponent(REDIS_PASSWORD)}@127.0.0.1:${redisPort}/0`;
  await within(
    (async () => {
      for (;;) {
        const r = new Redis(redisUrl, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
        r.on('error', () => undefined);
        try {
          await r.connect();
          if ((await r.ping()) === 'PONG') return;
        } catch {
          await new Promise((res) => setTimeout(res, 100));
        } finally {
          r.disconnect();
        }
      }
    })(),
    30_000,
    'start of redis-server',
  );
  env = {
    CLI_SZ1_URL: dbUrl('cli_sz_1', PASSWORD),
    CLI_SC1_URL_FILE: path.join(dir, 'sc1-url'),
    SHARDLINE_APP_ROLE: 'cli_app',
    REDIS_URL: redisUrl,
    SHARDLINE_QUEUE_PREFIX: `cli_${hex}`,
  };
}, 120_000);

afterAll(async () => {
  if (redis && redis.exitCode === null) {
    const exited = new Promise((r) => redis?.once('exit', r));
    redis.kill('SIGTERM');
    await within(exited, 10_000, 'stop of redis-server').catch(() => redis?.kill('SIGKILL'));
  }
  await server?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
  for (const file of mapFiles) rmSync(path.dirname(file), { recursive: true, force: true });
});

describe('no CLI output ever holds a password', () => {
  it('help and map check: shows env references, never URLs', async () => {
    const [help, check] = await Promise.all([cli(['--help']), cli(['map', 'check', '--map', mapFile])]);
    expect(help.code).toBe(0);
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/sichuan\s+sc-1\s+2048\s+2048-4095\s+env:CLI_SC1_URL/);
  }, 120_000);

  it('map check refuses credentials written into the map without echoing them', async () => {
    const literal = (connection: string) =>
      writeTempMap({ version: 1, buckets: 4096, regions: ['r'], shards: [{ id: 'x-1', region: 'r', connection, buckets: ['0-4095'] }] });
    const [inUserinfo, inQuery] = await Promise.all([
      cli(['map', 'check', '--map', literal(dbUrl('x', PASSWORD))]),
      cli(['map', 'check', '--map', literal(`postgres://${USER}@127.0.0.1:${server.port}/x?password=${encodeURIComponent(PASSWORD)}`)]),
    ]);
    expect(inUserinfo.code).toBe(1);
    expect(inUserinfo.stderr).toMatch(/the URL holds a password; put it in an environment variable/);
    expect(inQuery.code).toBe(1);
    expect(inQuery.stderr).toMatch(/the URL holds a password/);
  }, 120_000);

  it('map check names bad secret sources, never their contents', async () => {
    // A file holding only the password (a common mistake) is refused without being shown.
    writeFileSync(path.join(dir, 'just-password'), PASSWORD);
    const check = (extra: Record<string, string>) => cli(['map', 'check', '--map', mapFile], { ...env, ...extra });
    // Independent runs, two at a time: each CLI start costs seconds on a busy machine.
    const [both, missing] = await Promise.all([check({ CLI_SC1_URL: dbUrl('cli_sc_1', PASSWORD) }), check({ CLI_SC1_URL_FILE: path.join(dir, 'nope') })]);
    const [notUrl, badEnv] = await Promise.all([
      check({ CLI_SC1_URL_FILE: path.join(dir, 'just-password') }),
      check({ CLI_SZ1_URL: `postgres://${USER}:${PASSWORD}@127.0.0.1:notaport/x` }),
    ]);
    expect(both.stderr).toMatch(/both CLI_SC1_URL and CLI_SC1_URL_FILE are set/);
    expect(missing.stderr).toMatch(/cannot read the file ".*nope" named by CLI_SC1_URL_FILE \(ENOENT\)/);
    expect(notUrl.stderr).toMatch(/the file named by CLI_SC1_URL_FILE does not hold a postgres:\/\/ URL/);
    expect(badEnv.stderr).toMatch(/environment variable CLI_SZ1_URL does not hold a postgres:\/\/ URL/);
    for (const r of [both, missing, notUrl, badEnv]) expect(r.code).toBe(1);
  }, 120_000);

  it('route, including an argument that happens to be the password (masked by the output filter)', async () => {
    const [ok, pasted] = await Promise.all([cli(['route', '--map', mapFile, '4194304']), cli(['route', '--map', mapFile, PASSWORD])]);
    expect(ok.code).toBe(0);
    expect(pasted.code).toBe(1);
    expect(pasted.stderr).toMatch(/INVALID_PLAYER_ID.*\*\*\*/);
  }, 120_000);

  it('migrate latest/status/rollback and shards check, through success and drift', async () => {
    const before = await cli(['migrate', 'status', '--map', mapFile]);
    expect(before.code).toBe(1);
    expect(before.stderr).toMatch(/does not exist/);
    const up = await cli(['migrate', 'latest', '--map', mapFile, '--create-databases']);
    expect(up.code).toBe(0);
    expect((await cli(['migrate', 'status', '--map', mapFile])).code).toBe(0);
    const check = await cli(['shards', 'check', '--map', mapFile]);
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(new RegExp(`sc-1\\s+sichuan\\s+127\\.0\\.0\\.1:${server.port}/cli_sc_1\\s+yes\\s+ok`));
    expect((await cli(['migrate', 'rollback', '--map', mapFile, '--shard', 'sc-1'])).code).toBe(0);
    expect((await cli(['migrate', 'status', '--map', mapFile])).code).toBe(1);
    expect((await cli(['migrate', 'latest', '--map', mapFile])).code).toBe(0);
  }, 120_000);

  it("a wrong password fails with the server's message and a hint, never the password tried", async () => {
    const wrongEnv = { ...env, CLI_SZ1_URL: dbUrl('cli_sz_1', WRONG) };
    const commands = [
      ['shards', 'check'],
      ['migrate', 'status'],
      ['migrate', 'latest'],
      ['migrate', 'rollback', '--shard', 'sz-1'],
    ];
    for (let i = 0; i < commands.length; i += 2) {
      const pair = commands.slice(i, i + 2);
      const results = await Promise.all(pair.map((args) => cli([...args, '--map', mapFile], wrongEnv)));
      results.forEach((r, j) => {
        expect({ args: pair[j], code: r.code }).toEqual({ args: pair[j], code: 1 });
        expect(r.stderr).toMatch(/password authentication failed for user "cli_owner"/);
      });
    }
  }, 120_000);

  it('worker, settle, settlements status/failed/retry/reconcile, and the metrics endpoint', async () => {
    // Two players, one per shard, created through the library as the owner.
    const map = await loadShardMap(mapFile, env, { readSecretFile: (f) => readFileSync(f, 'utf8') });
    const shards = new ShardSet(map, { poolMax: 1 });
    try {
      const accounts = new Accounts(shards);
      players = [
        String((await accounts.createPlayer({ region: 'shenzhen', nickname: 'a' })).id),
        String((await accounts.createPlayer({ region: 'sichuan', nickname: 'b' })).id),
      ];
    } finally {
      await shards.close();
    }
    const matchFile = path.join(dir, 'match.json');
    const matchId = `cli-${hex}`;
    writeFileSync(
      matchFile,
      JSON.stringify({
        matchId,
        gameId: 'go',
        endedAt: new Date().toISOString(),
        results: [
          { playerId: players[0], scoreDelta: 3, outcome: 'win' },
          { playerId: players[1], scoreDelta: -3, outcome: 'loss' },
        ],
      }),
    );

    const worker = startWorker();
    try {
      const port = await within(worker.metricsPort, 90_000, 'worker start');
      const settled = await cli(['settle', '--map', mapFile, '--file', matchFile, '--wait', '60000']);
      expect(settled.code).toBe(0);
      expect(JSON.parse(settled.stdout)).toMatchObject({ matchId, state: 'applied' });
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/shardline_settlement_parts_applied_total\{shard="sz-1"\} 1/);
      outputs.push({ args: 'GET /metrics', result: { code: 0, stdout: metrics, stderr: '' } });
      const [status, failed] = await Promise.all([cli(['settlements', 'status', matchId, '--map', mapFile]), cli(['settlements', 'failed', '--map', mapFile])]);
      expect(status.code).toBe(0);
      expect(failed.stdout).toMatch(/no failed settlements/);
      const [retry, reconcile] = await Promise.all([
        cli(['settlements', 'retry', '--all', '--map', mapFile]),
        cli(['settlements', 'reconcile', '--map', mapFile]),
      ]);
      expect([retry.code, reconcile.code]).toEqual([0, 0]);
    } finally {
      outputs.push({ args: 'worker', result: await worker.stop() });
    }
  }, 240_000);

  it('settle with a wrong Redis or database password fails without echoing it', async () => {
    const match = (matchId: string) => {
      const file = path.join(dir, `${matchId}.json`);
      const results = [{ playerId: players[0], scoreDelta: 1, outcome: 'win' }];
      writeFileSync(file, JSON.stringify({ matchId, gameId: 'go', endedAt: new Date().toISOString(), results }));
      return file;
    };
    const wrongRedis = redisUrl.replace(encodeURIComponent(REDIS_PASSWORD), encodeURIComponent(WRONG));
    const [badRedis, badPg] = await Promise.all([
      cli(['settle', '--map', mapFile, '--file', match(`bad-redis-${hex}`)], { ...env, REDIS_URL: wrongRedis }),
      cli(['settle', '--map', mapFile, '--file', match(`bad-pg-${hex}`)], { ...env, CLI_SZ1_URL: dbUrl('cli_sz_1', WRONG) }),
    ]);
    // Refused up front by the CLI's Redis check, naming the server and the refused AUTH, before
    // anything is written; the password tried is not in the output (last test).
    expect(badRedis.code).toBe(1);
    expect(badRedis.stderr).toMatch(/Redis at 127\.0\.0\.1:\d+ refused the connection: WRONGPASS/);
    expect(badPg.code).toBe(1);
    expect(badPg.stderr).toMatch(/password authentication failed for user "cli_owner"/);
  }, 120_000);

  it("REDIS_URL_FILE: read like a shard's NAME_FILE, its password masked, a wrong one never echoed", async () => {
    // REDIS_URL is blanked (empty counts as unset), so the only source of the Redis password is the file.
    const urlFile = (name: string, url: string) => {
      const file = path.join(dir, name);
      writeFileSync(file, `${url}\n`, { mode: 0o600 });
      return file;
    };
    const rightFile = urlFile('redis-url', redisUrl);
    const wrongFile = urlFile('redis-url-wrong', redisUrl.replace(encodeURIComponent(REDIS_PASSWORD), encodeURIComponent(WRONG)));
    const fromFile = (file: string) => ({ ...env, REDIS_URL: '', REDIS_URL_FILE: file });
    const [worker, failed] = await Promise.all([
      cli(['worker', '--map', mapFile, '--grace-ms', '1000'], fromFile(wrongFile)),
      cli(['settlements', 'failed', '--map', mapFile], fromFile(wrongFile)),
    ]);
    expect(worker.code).toBe(1);
    expect(worker.stderr).toMatch(/WRONGPASS/);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/Redis at 127\.0\.0\.1:\d+ refused the connection: WRONGPASS/);
    // The right file works, and a match id that happens to be its password is masked on output.
    const [ok, pasted] = await Promise.all([
      cli(['settlements', 'failed', '--map', mapFile], fromFile(rightFile)),
      cli(['settlements', 'status', REDIS_PASSWORD, '--map', mapFile], fromFile(rightFile)),
    ]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/no failed settlements/);
    expect(pasted.code).toBe(1);
    expect(pasted.stderr).toMatch(/no shard knows match "\*\*\*"/);
    const [both, missing] = await Promise.all([
      cli(['settlements', 'failed', '--map', mapFile], { ...env, REDIS_URL_FILE: rightFile }),
      cli(['settlements', 'failed', '--map', mapFile], fromFile(path.join(dir, 'nope'))),
    ]);
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/both REDIS_URL and REDIS_URL_FILE are set; set only one/);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read the file ".*nope" named by REDIS_URL_FILE \(ENOENT\)/);
  }, 240_000);

  it('every output of every run above is free of passwords and stack traces', () => {
    expect(outputs.length).toBeGreaterThanOrEqual(36);
    for (const { args, result } of outputs) {
      const text = result.stdout + result.stderr;
      for (const secret of SECRETS) expect({ args, leaked: text.includes(secret) }).toEqual({ args, leaked: false });
      expect({ args, trace: STACK_FRAME.test(text) }).toEqual({ args, trace: false });
    }
  });
});
