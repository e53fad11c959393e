import { Cluster } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { RoomService, ValidationError } from '../../src/index.js';
import {
  clusterSpecOf,
  connectionOptions,
  duplicateConnection,
  isClusterConnection,
  parseClusterNodes,
  resolveConnection,
} from '../../src/redis/connection.js';

// No server needed: lazy clients, never connected.
const seeds = [
  { host: '127.0.0.1', port: 7000 },
  { host: '127.0.0.1', port: 7001 },
];

describe('the Redis connection wrapper with a Cluster', () => {
  it('tells a Cluster client and the cluster options from one Redis and its options', () => {
    const c = new Cluster(seeds, { lazyConnect: true, redisOptions: { password: 'pw' } });
    try {
      expect(isClusterConnection(c)).toBe(true);
      expect(isClusterConnection({ cluster: seeds })).toBe(true);
      expect(isClusterConnection({ host: '127.0.0.1', port: 6379 })).toBe(false);
      expect(connectionOptions(c)).toEqual({ password: 'pw' });
      expect(clusterSpecOf(c).nodes).toEqual(seeds);
      expect(resolveConnection(c)).toEqual({ client: c, owned: false });
    } finally {
      c.disconnect();
    }
  });

  it('builds and owns a Cluster from seeds; duplicates one with overrides, under a connection name', () => {
    const own = resolveConnection({ cluster: seeds, clusterOptions: { lazyConnect: true } });
    const dup = duplicateConnection(own.client, 'sl-dup', { scaleReads: 'slave' });
    try {
      expect(own.owned).toBe(true);
      expect(isClusterConnection(own.client)).toBe(true);
      const options = (dup as Cluster).options;
      expect(options.scaleReads).toBe('slave');
      expect(options.redisOptions?.connectionName).toBe('sl-dup');
      expect(clusterSpecOf(dup as Cluster).nodes).toEqual(seeds);
    } finally {
      own.client.disconnect();
      dup.disconnect();
    }
  });

  it('refuses an ioredis keyPrefix on the cluster or its nodes', () => {
    for (const connection of [
      { cluster: seeds, clusterOptions: { keyPrefix: 'x:' } },
      { cluster: seeds, clusterOptions: { redisOptions: { keyPrefix: 'x:' } } },
    ]) {
      expect(() => resolveConnection(connection)).toThrow(ValidationError);
      expect(() => new RoomService({ connection })).toThrow(/`prefix` option/);
    }
  });

  it('parses seed lists of the CLI, naming the variable on a bad one', () => {
    expect(parseClusterNodes('10.0.0.1:7000, 10.0.0.2:7001,[::1]:7002')).toEqual([
      { host: '10.0.0.1', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
      { host: '::1', port: 7002 },
    ]);
    for (const bad of ['', 'host', 'host:0', 'host:99999', 'a:1,b']) {
      expect(() => parseClusterNodes(bad, 'SHARDLINE_REDIS_CLUSTER')).toThrow(/^SHARDLINE_REDIS_CLUSTER: /);
    }
  });
});
