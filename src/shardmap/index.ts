export { BUCKET_BITS, BUCKET_COUNT, shardMapSchema, sslModes } from './schema.js';
export type { ShardMapFile, SslMode } from './schema.js';
export type { RegionSpec, ReplicaSpec, ShardMap, ShardSpec } from './types.js';
export { validateShardMap } from './validate.js';
export type { Env, ValidateOptions } from './validate.js';
export { loadShardMap } from './load.js';
export { redactUrl, redactSecrets, secretsOfUrl } from './redact.js';
