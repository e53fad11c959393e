import { InvalidPlayerIdError } from '../errors/index.js';
import { BUCKET_BITS } from '../shardmap/schema.js';

/**
 * A player id: 63 bits, always positive so it fits Postgres `bigint`.
 *
 *   [ 41 bits: ms since 2024-01-01 UTC ][ 12 bits: bucket ][ 10 bits: sequence ]
 *
 * The bucket names the shard (through the map), so routing needs no lookup service; the time in the
 * high bits makes ids sort roughly by creation. In JSON and on the command line it is a decimal
 * string, never a JS number (which loses precision above 2^53).
 */
export type PlayerId = bigint & { readonly __brand: 'PlayerId' };

export const ID_EPOCH_MS = 1_704_067_200_000; // 2024-01-01T00:00:00Z
export const TIME_BITS = 41;
export const SEQ_BITS = 10;
export const SEQ_COUNT = 1 << SEQ_BITS;
export const MAX_PLAYER_ID = (1n << 63n) - 1n;

const SEQ_SHIFT = 0n;
const BUCKET_SHIFT = BigInt(SEQ_BITS);
const TIME_SHIFT = BigInt(SEQ_BITS + BUCKET_BITS);
const BUCKET_MASK = (1n << BigInt(BUCKET_BITS)) - 1n;
const SEQ_MASK = (1n << BigInt(SEQ_BITS)) - 1n;
const MAX_TIME = 2 ** TIME_BITS - 1;

export interface PlayerIdParts {
  /** Milliseconds since ID_EPOCH_MS. */
  readonly time: number;
  readonly bucket: number;
  readonly seq: number;
}

export function encodePlayerId(parts: PlayerIdParts): PlayerId {
  const { time, bucket, seq } = parts;
  if (!Number.isInteger(time) || time < 0 || time > MAX_TIME) throw new RangeError(`time ${time} out of range`);
  if (!Number.isInteger(bucket) || bucket < 0 || bucket >= 1 << BUCKET_BITS) throw new RangeError(`bucket ${bucket} out of range`);
  if (!Number.isInteger(seq) || seq < 0 || seq >= SEQ_COUNT) throw new RangeError(`seq ${seq} out of range`);
  return ((BigInt(time) << TIME_SHIFT) | (BigInt(bucket) << BUCKET_SHIFT) | (BigInt(seq) << SEQ_SHIFT)) as PlayerId;
}

export function decodePlayerId(id: PlayerId): PlayerIdParts & { readonly createdAt: Date } {
  const time = Number(id >> TIME_SHIFT);
  return {
    time,
    bucket: Number((id >> BUCKET_SHIFT) & BUCKET_MASK),
    seq: Number(id & SEQ_MASK),
    createdAt: new Date(ID_EPOCH_MS + time),
  };
}

/** The bucket bits of an id: the router's hot path, so no validation here. */
export function bucketOf(id: PlayerId): number {
  return Number((id >> BUCKET_SHIFT) & BUCKET_MASK);
}

/**
 * Accepts a bigint or a decimal string; anything else (a JS number included) is refused with an
 * InvalidPlayerIdError naming the value.
 */
export function parsePlayerId(value: unknown): PlayerId {
  if (typeof value === 'bigint') {
    if (value < 1n || value > MAX_PLAYER_ID) throw new InvalidPlayerIdError(value, 'must be between 1 and 2^63-1');
    return value as PlayerId;
  }
  if (typeof value === 'number') {
    throw new InvalidPlayerIdError(value, 'pass player ids as a decimal string or bigint, not a JS number');
  }
  if (typeof value !== 'string') throw new InvalidPlayerIdError(value, `expected a decimal string, got ${typeof value}`);
  if (value.length === 0) throw new InvalidPlayerIdError(value, 'empty');
  if (value.startsWith('-')) throw new InvalidPlayerIdError(value, 'negative');
  if (!/^[0-9]{1,19}$/.test(value)) throw new InvalidPlayerIdError(value, 'not a decimal integer of at most 19 digits');
  const n = BigInt(value);
  if (n < 1n || n > MAX_PLAYER_ID) throw new InvalidPlayerIdError(value, 'must be between 1 and 2^63-1');
  return n as PlayerId;
}

export function isPlayerId(value: unknown): value is PlayerId {
  return typeof value === 'bigint' && value >= 1n && value <= MAX_PLAYER_ID;
}

export function formatPlayerId(id: PlayerId): string {
  return id.toString();
}
