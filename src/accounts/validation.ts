import { ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import type { PlayerStatus } from '../db/index.js';

export const NICKNAME_MAX_LENGTH = 32;
export const GAME_ID_MAX_LENGTH = 64;
export const PLAYER_STATUSES: readonly PlayerStatus[] = ['active', 'suspended', 'deleted'];

/**
 * Letters (with their combining marks), digits, punctuation, symbols and the ASCII space. This
 * refuses what makes names unreadable or spoofable in a UI: control and format characters (bidi
 * overrides, zero-width joiners), private-use and unassigned code points, tabs, line breaks and
 * exotic spaces. Punctuation such as ' ; ( ) stays allowed: SQL is parameterised, names are data.
 */
export const PRINTABLE_TEXT = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]+$/u;
const CONTROL = /\p{Cc}/u;

/**
 * The stored form of a nickname: NFC-normalised and trimmed, then 1..32 code points from the set
 * above, with no run of two spaces. Throws ValidationError(field) otherwise.
 */
export function normalizeNickname(value: unknown, field = 'nickname'): string {
  if (typeof value !== 'string') throw new ValidationError(field, `must be a string, got ${typeOf(value)}`);
  const nick = value.normalize('NFC').trim();
  const length = [...nick].length;
  if (length === 0) throw new ValidationError(field, 'must not be empty');
  if (length > NICKNAME_MAX_LENGTH) throw new ValidationError(field, `must be at most ${NICKNAME_MAX_LENGTH} characters, got ${length}`);
  if (!PRINTABLE_TEXT.test(nick)) {
    throw new ValidationError(field, 'may hold only letters, digits, punctuation, symbols and single spaces (no control, format or invisible characters)');
  }
  if (nick.includes('  ')) throw new ValidationError(field, 'must not contain two spaces in a row');
  return nick;
}

export function validateStatus(value: unknown, field = 'status'): PlayerStatus {
  if (typeof value === 'string' && (PLAYER_STATUSES as readonly string[]).includes(value)) return value as PlayerStatus;
  throw new ValidationError(field, `must be one of ${PLAYER_STATUSES.join(', ')}, got ${showValue(value)}`);
}

/** Game ids are opaque to shardline; this only keeps them short and printable. */
export function validateGameId(value: unknown, field = 'gameId'): string {
  if (typeof value !== 'string') throw new ValidationError(field, `must be a string, got ${typeOf(value)}`);
  if (value.length === 0) throw new ValidationError(field, 'must not be empty');
  if ([...value].length > GAME_ID_MAX_LENGTH) throw new ValidationError(field, `must be at most ${GAME_ID_MAX_LENGTH} characters`);
  if (CONTROL.test(value)) throw new ValidationError(field, 'must not contain control characters');
  return value;
}

/** An integer in min..max, or `fallback` when absent. */
export function validateLimit(value: unknown, fallback: number, max: number, field = 'limit', min = 1): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(field, `must be an integer from ${min} to ${max}, got ${showValue(value)}`);
  }
  return value;
}

export function validateRegionName(value: unknown, field = 'region'): string {
  if (typeof value !== 'string' || value.length === 0) throw new ValidationError(field, `must be a region name, got ${showValue(value)}`);
  return value;
}

/**
 * Refuses a key of `input` outside `allowed`, naming it: a misspelt field (`nickName`) or one the
 * call does not take (`id`, `region` in a patch) would otherwise be dropped without a word.
 */
export function refuseUnknownFields(input: object, allowed: readonly string[], reason: string): void {
  for (const key of Object.keys(input)) {
    if (!allowed.includes(key)) throw new ValidationError(key, `${reason} (allowed: ${allowed.join(', ')})`);
  }
}

export function typeOf(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}
