import { describe, expect, it } from 'vitest';
import { ShardSet } from '../../src/db/index.js';
import { lsnBytes, resolveReadOptions } from '../../src/db/replicas.js';
import { ShardMapError, ValidationError } from '../../src/errors/index.js';
import { connectionUrlOf } from '../../src/shardmap/connection-url.js';
import { validateShardMap } from '../../src/shardmap/index.js';
import { errorOf } from '../support/errors.js';

const base = (replicas: unknown) => ({
  version: 1,
  buckets: 4096,
  regions: ['r1'],
  shards: [
    {
      id: 'a',
      region: 'r1',
      connection: 'postgres://app@db-a:5432/a',
      buckets: ['0-4095'],
      ssl: { mode: 'require' },
      pool: { max: 20 },
      replicas,
    },
  ],
});

function issuesOf(raw: unknown, env: Record<string, string> = {}): string[] {
  try {
    validateShardMap(raw, { file: '<map>', env });
  } catch (err) {
    if (err instanceof ShardMapError) return [...err.issues];
    throw err;
  }
  return [];
}

describe('replicas in the shard map', () => {
  it('resolves a replica like a primary, with its own connection, TLS and pool (never the primary’s)', () => {
    const map = validateShardMap(base([{ connection: 'env:A_REPLICA' }, { connection: 'postgres://app@db-a-2:5432/a', pool: { max: 3 } }]), {
      file: '<map>',
      env: { A_REPLICA: 'postgres://app:secret@db-a-1:5432/a' },
    });
    const [r0, r1] = map.shards[0]?.replicas ?? [];
    expect(r0).toMatchObject({ id: 'a', region: 'r1', replica: 0, connectionRef: 'env:A_REPLICA', target: 'db-a-1:5432/a', buckets: [[0, 4095]] });
    expect(r0?.ssl).toBeUndefined();
    expect(r0?.pool).toBeUndefined();
    expect(r1).toMatchObject({ replica: 1, target: 'db-a-2:5432/a', pool: { max: 3 } });
    expect(connectionUrlOf(r0 as NonNullable<typeof r0>)).toBe('postgres://app:secret@db-a-1:5432/a');
    expect(JSON.stringify(map)).not.toContain('secret');
  });

  it('reports every replica fault with its path', () => {
    const issues = issuesOf(
      base([
        { connection: 'postgres://app:pw@db-x:5432/a' },
        { connection: 'env:MISSING' },
        { connection: 'postgres://app@db-a:5432/a' },
        { connection: 'postgres://app@db-y:5432/a', lag: 5 },
      ]),
    );
    expect(issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^shards\[0\]\.replicas\[0\]\.connection: the URL holds a password/),
        expect.stringMatching(/^shards\[0\]\.replicas\[1\]\.connection: environment variable MISSING is not set/),
        expect.stringMatching(/^shards\[0\]\.replicas\[2\]\.connection: points at db-a:5432\/a, the database of shard "a"/),
        expect.stringMatching(/replicas\[3\].*lag/),
      ]),
    );
    expect(issues.join('\n')).not.toContain('pw@');
  });

  it('a map without replicas has none (no empty array on the spec)', () => {
    const map = validateShardMap(base(undefined), { file: '<map>' });
    expect('replicas' in (map.shards[0] as object)).toBe(false);
  });
});

describe('read options', () => {
  it('defaults to the primary and 1000 ms, the ShardSet options first', () => {
    expect(resolveReadOptions(undefined)).toEqual({ readFrom: 'primary', maxLagMs: 1000 });
    expect(resolveReadOptions({}, { readFrom: 'replica', maxLagMs: 200 })).toEqual({ readFrom: 'replica', maxLagMs: 200 });
    expect(resolveReadOptions({ readFrom: 'primary' }, { readFrom: 'replica' })).toEqual({ readFrom: 'primary', maxLagMs: 1000 });
  });

  it('refuses what is not a read option value', async () => {
    expect(() => resolveReadOptions({ readFrom: 'standby' as 'replica' })).toThrow(ValidationError);
    expect(() => resolveReadOptions({ maxLagMs: -1 })).toThrow(/maxLagMs/);
    expect(() => resolveReadOptions({ maxLagMs: 1.5 })).toThrow(/maxLagMs/);
    const map = validateShardMap(base(undefined), { file: '<map>' });
    expect(() => new ShardSet(map, { readFrom: 'nearest' as 'replica' })).toThrow(/options\.readFrom/);
    expect(() => new ShardSet(map, { replicaLagCacheMs: -5 })).toThrow(/replicaLagCacheMs/);
    const shards = new ShardSet(map);
    try {
      expect(await errorOf(shards.readDb('a', { maxLagMs: -1 }))).toBeInstanceOf(ValidationError);
      expect(await errorOf(shards.scatter(async () => 1, { readFrom: 'x' as 'replica' }))).toBeInstanceOf(ValidationError);
    } finally {
      await shards.close();
    }
  });

  it('reads WAL positions as byte counts', () => {
    expect(lsnBytes('0/3000000')).toBe(0x3000000);
    expect(lsnBytes('16/B374D848')).toBe(0x16 * 2 ** 32 + 0xb374d848);
  });
});
