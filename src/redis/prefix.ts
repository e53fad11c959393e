import { ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';

/** The key prefix of rooms and settlement when none is given (in an option or the map's `"prefix"`). */
export const DEFAULT_KEY_PREFIX = 'shardline';

/** A plain name: letters, digits, `_`, `.` and `-`; no braces (shardline places hash tags), no colons (its separator). */
export const KEY_PREFIX_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const PREFIX = KEY_PREFIX_PATTERN;

/**
 * The one prefix rule of RoomService, SettlementClient and SettlementWorker. The user gives a plain
 * name; shardline builds every key and its Redis Cluster hash tag from it (one tag per zone, one
 * per shard's queue), so a brace from the user could only break that placement.
 */
export function validateKeyPrefix(value: unknown, field = 'prefix'): string {
  if (typeof value === 'string' && /[{}]/.test(value)) {
    throw new ValidationError(field, `${showValue(value)} contains a brace: give a plain name, shardline places the Redis Cluster hash tags itself`);
  }
  if (typeof value !== 'string' || !PREFIX.test(value)) {
    throw new ValidationError(field, `${showValue(value)} is not a key prefix (1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit; no colons)`);
  }
  return value;
}
