import type pg from 'pg';
import type { ShardSet } from '../../src/index.js';

/**
 * Counts the statements each shard's pool really sends, by wrapping `query` on every client the
 * pool hands out (pass-through: the real server still answers). Warm the shards up (identity
 * check) before `reset()`, since that check is a statement too.
 */
export interface QueryCounter {
  counts(): Record<string, number>;
  statements(shardId: string): string[];
  reset(): void;
}

const WRAPPED = Symbol('shardline.test.wrapped');

export function countQueries(shardSet: ShardSet): QueryCounter {
  const seen = new Map<string, string[]>();
  for (const shard of shardSet.shards) {
    seen.set(shard.id, []);
    shardSet.pool(shard.id).on('acquire', (client: pg.PoolClient & { [WRAPPED]?: true }) => {
      if (client[WRAPPED]) return;
      client[WRAPPED] = true;
      const original = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as { query: unknown }).query = (...args: unknown[]) => {
        const first = args[0];
        const text = typeof first === 'string' ? first : ((first as { text?: string } | undefined)?.text ?? '?');
        seen.get(shard.id)?.push(text);
        return original(...args);
      };
    });
  }
  return {
    counts: () => Object.fromEntries([...seen].map(([id, list]) => [id, list.length])),
    statements: (id) => [...(seen.get(id) ?? [])],
    reset: () => {
      for (const list of seen.values()) list.length = 0;
    },
  };
}
