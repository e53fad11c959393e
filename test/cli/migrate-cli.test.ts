import { afterAll, describe, expect, it } from 'vitest';
import { urlFor, uniqueName, RUN_PREFIX } from '../support/env.js';
import { runCli } from '../support/cli.js';
import { writeMapFile } from '../support/maps.js';
import { dropDatabases } from '../support/shards.js';

const dbs = [uniqueName(RUN_PREFIX + 'cli'), uniqueName(RUN_PREFIX + 'cli')];
afterAll(() => dropDatabases(dbs));

const mapFile = writeMapFile({
  version: 1,
  buckets: 4096,
  regions: ['shenzhen', 'sichuan'],
  shards: [
    { id: 'sz-1', region: 'shenzhen', connection: urlFor(dbs[0]!), buckets: ['0-2047'] },
    { id: 'sc-1', region: 'sichuan', connection: 'env:SHARDLINE_TEST_SC1_URL', buckets: ['2048-4095'] },
  ],
});
const env = { SHARDLINE_TEST_SC1_URL: urlFor(dbs[1]!).replace('postgres@', 'postgres:s3cr3t-pw@') };

describe('shardline CLI (subprocess)', () => {
  it('map check prints regions, shards and bucket counts', async () => {
    const r = await runCli(['map', 'check', '--map', mapFile], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/valid \(2 regions, 2 shards, 4096 buckets\)/);
    expect(r.stdout).toMatch(/sichuan\s+sc-1\s+2048\s+2048-4095\s+env:SHARDLINE_TEST_SC1_URL/);
  });

  it('map check names the missing environment variable and exits 1', async () => {
    const r = await runCli(['map', 'check', '--map', mapFile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/shards\[1\]\.connection: environment variable SHARDLINE_TEST_SC1_URL is not set/);
  });

  it('route prints region and shard per id, and rejects a bad id with its code', async () => {
    const ok = await runCli(['route', '--map', mapFile, '--json', '4194304', String((1n << 22n) | (3000n << 10n))], { env });
    expect(ok.code).toBe(0);
    expect(
      ok.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { shard: string }),
    ).toMatchObject([{ shard: 'sz-1' }, { shard: 'sc-1' }]);
    const bad = await runCli(['route', '--map', mapFile, 'twelve'], { env });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_PLAYER_ID.*"twelve"/);
  });

  it('migrate latest --create-databases, then status exits 0; shards check; never prints the password', async () => {
    const status0 = await runCli(['migrate', 'status', '--map', mapFile], { env });
    expect(status0.code).toBe(1);
    expect(status0.stderr).toMatch(/does not exist \(hint: create it/);

    const up = await runCli(['migrate', 'latest', '--map', mapFile, '--create-databases', '--concurrency', '2'], { env });
    expect(up.code).toBe(0);
    expect(up.stdout).toMatch(/shard\s+region\s+schema version\s+result/);
    expect(up.stdout).toMatch(/sz-1\s+shenzhen\s+\d{4}_\w+\s+database created; applied 0001_\w+/);

    const status = await runCli(['migrate', 'status', '--map', mapFile], { env });
    expect(status.code).toBe(0);
    const check = await runCli(['shards', 'check', '--map', mapFile], { env });
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/sc-1\s+sichuan\s+127\.0\.0\.1:5432\/\S+\s+yes\s+ok/);

    const back = await runCli(['migrate', 'rollback', '--map', mapFile, '--shard', 'sc-1'], { env });
    expect(back.code).toBe(0);
    const drift = await runCli(['migrate', 'status', '--map', mapFile], { env });
    expect(drift.code).toBe(1);
    expect(drift.stderr).toMatch(/drift: sc-1 not at/);

    for (const out of [status0, up, status, check, back, drift]) {
      expect(out.stdout + out.stderr).not.toContain('s3cr3t-pw');
    }
  });

  it("migrate status exits 1 naming the identity fault: two shards on one database, or one on another shard's database", async () => {
    const db = uniqueName(RUN_PREFIX + 'cli');
    dbs.push(db);
    const twoShards = (second: { id: string; region: string }) =>
      writeMapFile({
        version: 1,
        buckets: 4096,
        regions: [...new Set(['shenzhen', second.region])],
        shards: [
          { id: 'sz-1', region: 'shenzhen', connection: urlFor(db), buckets: ['0-2047'] },
          { ...second, connection: 'env:SHARDLINE_TEST_SECOND_URL', buckets: ['2048-4095'] },
        ],
      });
    const withPassword = (url: string) => url.replace('postgres@', 'postgres:s3cr3t-pw@');
    // sz-1 is stamped owning 0-2047, the buckets the maps below give it: their only fault is the database.
    const spare = uniqueName(RUN_PREFIX + 'cli');
    dbs.push(spare);
    const own = writeMapFile({
      version: 1,
      buckets: 4096,
      regions: ['shenzhen'],
      shards: [
        { id: 'sz-1', region: 'shenzhen', connection: urlFor(db), buckets: ['0-2047'] },
        { id: 'sz-spare', region: 'shenzhen', connection: urlFor(spare), buckets: ['2048-4095'] },
      ],
    });
    expect((await runCli(['migrate', 'latest', '--map', own, '--create-databases'])).code).toBe(0);

    // Same database under the same spelling: the map itself is wrong, so both shards are named.
    const shared = await runCli(['migrate', 'status', '--map', twoShards({ id: 'sz-2', region: 'shenzhen' })], {
      env: { SHARDLINE_TEST_SECOND_URL: withPassword(urlFor(db)) },
    });
    // Another spelling of the host: only the stamp on the database can tell.
    const aliased = await runCli(['migrate', 'status', '--map', twoShards({ id: 'sc-1', region: 'sichuan' })], {
      env: { SHARDLINE_TEST_SECOND_URL: withPassword(urlFor(db).replace('127.0.0.1', 'localhost')) },
    });

    expect(shared.code).toBe(1);
    expect(shared.stdout).toMatch(/shard\s+region\s+schema version\s+pending\s+app version\s+identity\s+result/);
    expect(shared.stdout).toMatch(/sz-2\s+shenzhen\s+\d{4}_\w+\s+0\s+\(none\)\s+FAULT \(see below\)\s+REFUSED: identity/);
    for (const id of ['sz-1', 'sz-2']) {
      expect(shared.stderr).toMatch(new RegExp(`${id}: identity: the map points shards "sz-1" and "sz-2" at the same database 127\\.0\\.0\\.1:\\d+/${db}`));
    }
    expect(shared.stderr).toMatch(/identity faults: sz-1, sz-2/);

    expect(aliased.code).toBe(1);
    expect(aliased.stdout).toMatch(/sz-1\s+shenzhen\s+\d{4}_\w+\s+0\s+\(none\)\s+ok\s+ok/);
    expect(aliased.stderr).toMatch(/sc-1: identity: the database is shard "sz-1"/);
    expect(aliased.stderr).not.toMatch(/drift/); // the exit code is the identity fault alone
    for (const out of [shared, aliased]) expect(out.stdout + out.stderr).not.toContain('s3cr3t-pw');
  });
});
