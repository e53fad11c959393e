import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketOf, type PlayerId } from '../../src/routing/player-id.js';
import { bucketOfKey } from '../../src/routing/key-bucket.js';
import { createTestShards, type TestShards } from '../support/shards.js';

/**
 * The fence (migration 0009) computes buckets in SQL; routing computes them in TypeScript. If the
 * two ever differ, the fence refuses a correctly routed write, or lets a misrouted one through.
 */
describe('SQL bucket expressions equal the TypeScript ones', () => {
  let t: TestShards;

  beforeAll(async () => {
    t = await createTestShards('one-shard');
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it("a player id's bucket, on random ids over the whole id space", async () => {
    const ids = Array.from({ length: 2000 }, () => randomBytes(8).readBigUInt64BE() >> 1n);
    ids.push(0n, 1023n, 1024n, (1n << 63n) - 1n, (12345n << 22n) | (4095n << 10n) | 1023n);
    const { rows } = await t.shardSet
      .pool('sz-1')
      .query<{ id: string; b: number }>(`SELECT id::text, ((id >> 10) & 4095)::int AS b FROM unnest($1::bigint[]) AS u(id)`, [ids.map(String)]);
    expect(rows.map((r) => r.b)).toEqual(ids.map((id) => bucketOf(id as PlayerId)));
  });

  it("a match id's home bucket, on random and non-ASCII match ids", async () => {
    const keys = ['room-42-round-7', 'room-1', 'Zoë 李 match', 'm-%2F', '🎮 ランク戦 #1', "o'brien", 'a\\b', ' '];
    for (let i = 0; i < 500; i++) keys.push(randomBytes(1 + (i % 40)).toString('base64'));
    // Code points across the planes, skipping the surrogates (not characters: no UTF-8 of their own).
    const char = (n: number) => (n >= 0xd800 && n <= 0xdfff ? n + 0x800 : n);
    for (let i = 0; i < 200; i++)
      keys.push(String.fromCodePoint(...Array.from({ length: 1 + (i % 9) }, (_, k) => char(0xa0 + ((i * 7919 + k * 104729) % 0x2f000)))));
    const { rows } = await t.shardSet.pool('sz-1').query<{ b: number }>(
      `SELECT ((get_byte(sha256(convert_to(k, 'UTF8')), 2) & 15) << 8) | get_byte(sha256(convert_to(k, 'UTF8')), 3) AS b
         FROM unnest($1::text[]) WITH ORDINALITY AS u(k, i) ORDER BY i`,
      [keys],
    );
    expect(rows.map((r) => r.b)).toEqual(keys.map((k) => bucketOfKey(k)));
    expect(bucketOfKey('room-42-round-7')).toBe(2717);
    expect(bucketOfKey('Zoë 李 match')).toBe(3);
  });
});
