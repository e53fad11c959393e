import type pg from 'pg';
import { openPool, targetOf, type ConnectionOptions } from '../db/connection.js';
import { toShardError } from '../db/pg-errors.js';
import { MoveBusyError } from '../errors/index.js';
import type { ShardMap, ShardSpec } from '../shardmap/index.js';
import { readOwnership, type OwnershipRecord } from './ownership-record.js';

/**
 * The mover's connections: one small pool per shard it touches, as the owner role (the map's
 * connections, as `shardline migrate` uses), with no statement timeout (a COPY of a batch or a purge
 * may take longer than an app query ever should).
 */
export class MoverShards {
  private readonly pools = new Map<string, pg.Pool>();
  private readonly locks: pg.PoolClient[] = [];

  constructor(
    readonly map: ShardMap,
    private readonly connection: ConnectionOptions = {},
  ) {}

  shard(id: string): ShardSpec {
    const s = this.map.shards.find((x) => x.id === id);
    if (!s) throw new Error(`unknown shard ${id}`);
    return s;
  }

  pool(id: string): pg.Pool {
    let p = this.pools.get(id);
    if (!p) {
      p = openPool(this.shard(id), { poolMax: 4, statementTimeoutMs: 0, applicationName: 'shardline-mover', ...this.connection });
      p.on('error', () => undefined);
      p.on('connect', (c) => c.on('error', () => undefined));
      this.pools.set(id, p);
    }
    return p;
  }

  /** Runs `fn` on a client of the shard; connection failures come out as ShardUnavailableError. */
  async with<T>(id: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const shard = this.shard(id);
    let client: pg.PoolClient;
    try {
      client = await this.pool(id).connect();
    } catch (err) {
      throw toShardError(err, shard.id, targetOf(shard));
    }
    let broken = false;
    try {
      return await fn(client);
    } catch (err) {
      broken = isBrokenConnection(err);
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /**
   * Runs `fn` in a transaction with `lock_timeout` set, retrying (with backoff) when the fence's
   * locks could not be had in time (a long writer in flight) or a deadlock was broken: the fence
   * must wait out writers, never stall them behind it for long.
   */
  async tx<T>(id: string, fn: (c: pg.PoolClient) => Promise<T>, options: { lockTimeoutMs?: number; attempts?: number } = {}): Promise<T> {
    const attempts = options.attempts ?? 20;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.with(id, async (c) => {
          await c.query('BEGIN');
          try {
            await c.query(`SELECT set_config('lock_timeout', $1, true)`, [`${Math.max(1, Math.floor(options.lockTimeoutMs ?? 1000))}ms`]);
            const out = await fn(c);
            await c.query('COMMIT');
            return out;
          } catch (err) {
            await c.query('ROLLBACK').catch(() => undefined);
            throw err;
          }
        });
      } catch (err) {
        const code = (err as { code?: string }).code;
        if ((code === '55P03' || code === '40P01') && attempt < attempts) {
          await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** attempt) * (0.5 + Math.random() / 2)));
          continue;
        }
        throw err;
      }
    }
  }

  async record(id: string): Promise<OwnershipRecord> {
    return this.with(id, (c) => readOwnership(c));
  }

  /** Every shard's ownership record (null where unreachable, with the error). */
  async records(): Promise<Map<string, OwnershipRecord>> {
    const entries = await Promise.all(this.map.shards.map(async (s) => [s.id, await this.record(s.id)] as const));
    return new Map(entries);
  }

  /**
   * Takes the mover's session lock on a shard, held until close(): two movers (or a mover and a
   * resume of the same move) never work one shard at once. A killed mover's session ends with its
   * process, and the server releases the lock with it.
   */
  async lock(id: string): Promise<void> {
    const shard = this.shard(id);
    let client: pg.PoolClient;
    try {
      client = await this.pool(id).connect();
    } catch (err) {
      throw toShardError(err, shard.id, targetOf(shard));
    }
    const r = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock($1, $2) AS ok`, [...MOVER_LOCK]);
    if (r.rows[0]?.ok !== true) {
      client.release();
      throw new MoveBusyError(id, null, 'another shardline mover is connected to it right now; wait for it, or stop it first');
    }
    this.locks.push(client);
  }

  async close(): Promise<void> {
    for (const c of this.locks.splice(0)) {
      await c.query(`SELECT pg_advisory_unlock($1, $2)`, [...MOVER_LOCK]).catch(() => undefined);
      c.release();
    }
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }
}

/** The mover's advisory lock key (two int4: "SH", "MV"), also read by `shards check` in pg_locks. */
export const MOVER_LOCK = [21320, 19798] as const;

function isBrokenConnection(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return code.startsWith('08') || code === '57P01' || /Connection terminated/i.test(String((err as Error).message));
}
