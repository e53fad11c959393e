import type { Kysely, Transaction } from 'kysely';
import { ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';

/** The isolation levels a shard transaction may ask for (Postgres runs READ UNCOMMITTED as READ COMMITTED). */
export const ISOLATION_LEVELS = ['read committed', 'repeatable read', 'serializable'] as const;
export type IsolationLevel = (typeof ISOLATION_LEVELS)[number];

export interface TransactionOptions {
  /** Default: the server's (`read committed` unless configured otherwise). */
  isolationLevel?: IsolationLevel;
  /** `read only` lets Postgres refuse a write by mistake; default `read write`. */
  accessMode?: 'read only' | 'read write';
}

const ACCESS_MODES = ['read only', 'read write'] as const;
const OPTION_KEYS: readonly string[] = ['isolationLevel', 'accessMode'];

/** Checks the options as given by untyped callers too, before anything is opened. */
export function validateTransactionOptions(options: unknown): TransactionOptions {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null) throw new ValidationError('options', `must be an object, got ${showValue(options)}`);
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) throw new ValidationError(`options.${key}`, `is not a transaction option (known: ${OPTION_KEYS.join(', ')})`);
  }
  const { isolationLevel, accessMode } = options as Record<string, unknown>;
  if (isolationLevel !== undefined && !(ISOLATION_LEVELS as readonly unknown[]).includes(isolationLevel)) {
    throw new ValidationError('options.isolationLevel', `must be one of ${ISOLATION_LEVELS.join(', ')}, got ${showValue(isolationLevel)}`);
  }
  if (accessMode !== undefined && !(ACCESS_MODES as readonly unknown[]).includes(accessMode)) {
    throw new ValidationError('options.accessMode', `must be one of ${ACCESS_MODES.join(', ')}, got ${showValue(accessMode)}`);
  }
  return options;
}

/** One Kysely transaction with the options applied. */
export function runTransaction<DB, T>(db: Kysely<DB>, options: TransactionOptions, fn: (trx: Transaction<DB>) => Promise<T>): Promise<T> {
  let builder = db.transaction();
  if (options.isolationLevel) builder = builder.setIsolationLevel(options.isolationLevel);
  if (options.accessMode) builder = builder.setAccessMode(options.accessMode);
  return builder.execute(fn);
}
