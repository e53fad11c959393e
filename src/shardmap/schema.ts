import { z } from 'zod';
import { KEY_PREFIX_PATTERN } from '../redis/prefix.js';

/** The bucket space is fixed: player ids carry 12 bucket bits, so a map always has 4096 buckets. */
export const BUCKET_BITS = 12;
export const BUCKET_COUNT = 1 << BUCKET_BITS;

const name = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and dashes, at most 63 characters');

const bucketRange = z.string().regex(/^\d+(-\d+)?$/, 'a bucket number or an inclusive range such as "0-1023"');

export const sslModes = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

const sslSchema = z.strictObject({
  mode: z.enum(sslModes),
  /**
   * Path to the CA certificate (PEM) that verifies the server (verify-ca, verify-full; with
   * require, the chain is then checked too). A relative path is relative to the map file's folder.
   */
  ca: z.string().min(1).optional(),
});

/**
 * A streaming replica of a shard, connected like the primary. Only reads that accept it
 * (`readFrom: 'replica'`) go there, and only while its replay lag is within their `maxLagMs`.
 */
const replicaSchema = z.strictObject({
  connection: z.string().min(1),
  ssl: sslSchema.optional(),
  pool: z.strictObject({ max: z.number().int().min(1).max(500) }).optional(),
});

const shardSchema = z.strictObject({
  id: name,
  region: name,
  /**
   * `env:NAME`: the URL is read from $NAME, or from the file named by $NAME_FILE. Or a literal URL
   * without any credential (refused when it holds a password): the map is not a secret store.
   */
  connection: z.string().min(1),
  /**
   * May be empty: a shard added ahead of the bucket moves that will fill it (it is migrated and
   * checked like any other, and routing never sends it a player until it owns a bucket).
   */
  buckets: z.array(bucketRange),
  ssl: sslSchema.optional(),
  pool: z.strictObject({ max: z.number().int().min(1).max(500) }).optional(),
  replicas: z.array(replicaSchema).max(16).optional(),
});

export const shardMapSchema = z.strictObject({
  version: z.literal(1),
  name: z.string().optional(),
  /**
   * The deployment's Redis key prefix (settlement queues, rooms), by the one rule of
   * validateKeyPrefix: a plain name, since shardline places the Redis Cluster hash tags itself.
   */
  prefix: z
    .string()
    .regex(
      KEY_PREFIX_PATTERN,
      'a plain Redis key prefix: letters, digits, "_", "." and "-", starting with a letter or digit, at most 64 characters (no braces, no colons)',
    )
    .optional(),
  buckets: z.literal(BUCKET_COUNT),
  /**
   * The ownership epoch this map was written at (default 0): live routing combines the map with the
   * shards' ownership records, the higher epoch winning (docs/shard-map.md, "Live routing").
   */
  epoch: z.number().int().min(0).max(2147483647).optional(),
  regions: z.array(name).min(1),
  shards: z.array(shardSchema).min(1),
});

export type ShardMapFile = z.infer<typeof shardMapSchema>;
export type SslMode = (typeof sslModes)[number];
