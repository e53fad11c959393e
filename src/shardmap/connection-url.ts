import type { ShardSpec } from './types.js';

/**
 * A shard's resolved connection URL, which may hold a password. It lives here rather than on the
 * ShardSpec so that nothing a caller can print, log or serialize (the map, `router.shardFor(id)`,
 * an error) carries it: JSON.stringify, util.inspect and spreading a spec never see this table.
 * Internal: only the code that opens connections (src/db/connection.ts) and the CLI's masking read it.
 */
const urls = new WeakMap<ShardSpec, string>();

/** Records `url` as the connection of `shard` and returns the shard. @internal */
export function attachConnectionUrl<T extends ShardSpec>(shard: T, url: string): T {
  urls.set(shard, url);
  return shard;
}

/**
 * The resolved URL of a shard built by validateShardMap; '' for a spec built by hand (which then
 * cannot be connected to). Never print it: use `shard.target` or `redactUrl`. @internal
 */
export function connectionUrlOf(shard: ShardSpec): string {
  return urls.get(shard) ?? '';
}

/** host:port/database of a connection URL: safe to print (no user, no password); `fallback` if unparseable. */
export function targetOfUrl(url: string, fallback: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return fallback;
  }
}
