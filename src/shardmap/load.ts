import { readFile } from 'node:fs/promises';
import { ShardMapError } from '../errors/index.js';
import type { ShardMap } from './types.js';
import { validateShardMap, type Env, type ValidateOptions } from './validate.js';

/** Reads and validates a shard map file. The only I/O in this folder. */
export async function loadShardMap(file: string, env: Env = {}, options: Pick<ValidateOptions, 'readSecretFile'> = {}): Promise<ShardMap> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : 'cannot read file';
    throw new ShardMapError(file, [reason], { cause });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new ShardMapError(file, [`not valid JSON: ${(cause as Error).message}`], { cause });
  }
  return validateShardMap(raw, { ...options, file, env });
}
