import { ValidationError } from '../errors/index.js';

/**
 * Position after the last item of a match-history page. `endedAt` is kept to the microsecond as
 * UTC text (YYYY-MM-DDTHH:MM:SS.ffffff): a JS Date holds milliseconds only, and a cursor rounded
 * to the millisecond would skip rows ending later within that same millisecond.
 */
export interface HistoryPosition {
  endedAt: string;
  matchId: string;
}

const UTC_MICROS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/;

export function encodeHistoryCursor(pos: HistoryPosition): string {
  return Buffer.from(JSON.stringify({ v: 1, t: pos.endedAt, m: pos.matchId }), 'utf8').toString('base64url');
}

export function decodeHistoryCursor(cursor: unknown, field = 'before'): HistoryPosition {
  const refuse = () => new ValidationError(field, 'not a cursor returned by getMatchHistory');
  if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > 1024) throw refuse();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw refuse();
  }
  if (typeof parsed !== 'object' || parsed === null) throw refuse();
  const { v, t, m } = parsed as Record<string, unknown>;
  if (v !== 1 || typeof t !== 'string' || !UTC_MICROS.test(t) || typeof m !== 'string') throw refuse();
  return { endedAt: t, matchId: m };
}
