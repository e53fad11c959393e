export type { LogFn, Logger } from './logger.js';
