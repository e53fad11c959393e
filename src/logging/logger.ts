import { pino } from 'pino';

/** One log call: structured fields first (errors under `err`), then the message. */
export type LogFn = (fields: object, message?: string) => void;

/**
 * What shardline logs through. A pino logger fits as it is; any other logger fits behind a few
 * lines of adapter. `debug` is optional: without it, debug lines are dropped.
 */
export interface Logger {
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  debug?: LogFn;
}

/** The logger of a component given none: pino to stdout, named after the component. */
export function defaultLogger(name: string): Logger {
  return pino({ name });
}
