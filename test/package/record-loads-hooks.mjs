import { appendFileSync } from 'node:fs';
import process from 'node:process';

/**
 * Module hooks (they run on the loader thread): log each resolved URL and its importer, change nothing.
 * @type {import('node:module').ResolveHook}
 */
export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  const log = process.env.SHARDLINE_LOAD_LOG;
  if (log) appendFileSync(log, `${resolved.url} ${context.parentURL ?? ''}\n`);
  return resolved;
}
