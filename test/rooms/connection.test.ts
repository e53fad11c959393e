import { describe, expect, it } from 'vitest';
import { RoomService, ValidationError } from '../../src/index.js';
import { connectionOptions, duplicateConnection, isRedisClient, resolveConnection } from '../../src/redis/connection.js';
import { DEFAULT_KEY_PREFIX, validateKeyPrefix } from '../../src/redis/prefix.js';
import { REDIS_URL, uniqueName } from '../support/env.js';
import { redis } from './helpers.js';

const url = new URL(REDIS_URL);
const options = { host: url.hostname, port: Number(url.port || 6379), lazyConnect: true };

describe('the Redis connection wrapper', () => {
  it('tells a client from options, and shares a client without owning it', async () => {
    const c = redis();
    try {
      expect(isRedisClient(c)).toBe(true);
      expect(isRedisClient(options)).toBe(false);
      const shared = resolveConnection(c);
      expect(shared.client).toBe(c);
      expect(shared.owned).toBe(false);
      expect(connectionOptions(c)).toBe(c.options);
      expect(connectionOptions(options)).toBe(options);
    } finally {
      c.disconnect();
    }
  });

  it('builds and owns a client from options; duplicates either form under a name', async () => {
    const own = resolveConnection(options);
    expect(own.owned).toBe(true);
    expect(isRedisClient(own.client)).toBe(true);
    expect(await own.client.ping()).toBe('PONG');
    const name = uniqueName('slconn');
    const fromOptions = duplicateConnection(options, name);
    const fromClient = duplicateConnection(own.client, `${name}-dup`);
    try {
      expect(fromOptions).not.toBe(own.client);
      expect(await fromOptions.client('GETNAME')).toBe(name);
      expect(await fromClient.client('GETNAME')).toBe(`${name}-dup`);
    } finally {
      fromOptions.disconnect();
      fromClient.disconnect();
      await own.client.quit();
    }
  });

  it('refuses an ioredis keyPrefix in either form, pointing at the `prefix` option', () => {
    const c = redis();
    const prefixed = c.duplicate({ keyPrefix: 'x:', lazyConnect: true });
    try {
      for (const connection of [prefixed, { ...options, keyPrefix: 'x:' }]) {
        for (const call of [() => resolveConnection(connection), () => connectionOptions(connection), () => duplicateConnection(connection, 'n')]) {
          const err = (() => {
            try {
              call();
              return null;
            } catch (e) {
              return e;
            }
          })();
          expect(err).toBeInstanceOf(ValidationError);
          expect(err).toMatchObject({ field: 'connection.keyPrefix' });
          expect((err as Error).message).toMatch(/`prefix` option/);
        }
      }
    } finally {
      prefixed.disconnect();
      c.disconnect();
    }
  });
});

describe('the key prefix rule', () => {
  it('accepts plain names, the default among them', () => {
    expect(DEFAULT_KEY_PREFIX).toBe('shardline');
    for (const p of ['shardline', 'game-1', 'a.b_c', 'X'.repeat(64)]) expect(validateKeyPrefix(p)).toBe(p);
  });

  it('refuses braces with a message saying shardline places the hash tags', () => {
    for (const p of ['{shardline}', 'a{b', 'b}']) {
      expect(() => validateKeyPrefix(p)).toThrow(/places the Redis Cluster hash tags itself/);
    }
  });

  it.each(['', 'a:b', 'a b', '-lead', 'x'.repeat(65), 'é', 42, null])('refuses %j, naming the field', (p) => {
    expect(() => validateKeyPrefix(p, 'options.prefix')).toThrow(/^options\.prefix: /);
  });

  it('is the rule of RoomService: no colons, no braces', () => {
    const c = redis();
    try {
      for (const prefix of ['a:b', '{x}', '']) {
        expect(() => new RoomService({ connection: c, prefix })).toThrow(ValidationError);
      }
    } finally {
      c.disconnect();
    }
  });
});
