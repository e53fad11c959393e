import { ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';

/** How a board folds a player's match scores: their sum, the best single match, or the last match's. */
export const BOARD_OPERATORS = ['sum', 'best', 'set'] as const;
export type BoardOperator = (typeof BOARD_OPERATORS)[number];

/** When a board starts afresh: never, each UTC day, week or month, or with each season the app opens. */
export const BOARD_PERIODS = ['all-time', 'daily', 'weekly', 'monthly', 'season'] as const;
export type BoardPeriod = (typeof BOARD_PERIODS)[number];

/** Week starts, in ISO order (stored as 1..7, Monday = 1). */
export const WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** The period label of an all-time board. */
export const ALL_TIME = 'all-time';

const DAY_MS = 86_400_000;
const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/**
 * The label of the calendar period `at` falls in, in UTC: `2026-12-01` (daily), `2026-12`
 * (monthly), `2026-W49` (weekly). A week starting on Monday is the ISO week (its year is the ISO
 * week-year, so 2027-01-01 is in 2026-W53); a week starting on another day carries the ISO label of
 * the Monday-to-Sunday week holding the same days shifted forward to start on Monday: a Sunday week
 * Nov 22 – Nov 28 is labelled like Nov 23 – Nov 29, `2026-W48`.
 */
export function calendarPeriodOf(period: Exclude<BoardPeriod, 'season'>, at: Date, weekStart: Weekday = 'monday'): string {
  const t = at.getTime();
  if (!Number.isFinite(t)) throw new ValidationError('endedAt', `must be a valid date, got ${showValue(at)}`);
  switch (period) {
    case 'all-time':
      return ALL_TIME;
    case 'daily':
      return at.toISOString().slice(0, 10);
    case 'monthly':
      return at.toISOString().slice(0, 7);
    case 'weekly': {
      const iso = WEEKDAYS.indexOf(weekStart) + 1;
      return isoWeekOf(new Date(t + ((8 - iso) % 7) * DAY_MS));
    }
    default: {
      const unhandled: never = period;
      throw new Error(`unknown period ${String(unhandled)}`);
    }
  }
}

function isoWeekOf(at: Date): string {
  const day = Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate());
  const mondayBased = (new Date(day).getUTCDay() + 6) % 7;
  const thursday = new Date(day + (3 - mondayBased) * DAY_MS); // the ISO week belongs to the year of its Thursday
  const year = thursday.getUTCFullYear();
  const dayOfYear = (thursday.getTime() - Date.UTC(year, 0, 1)) / DAY_MS + 1;
  return `${year}-W${pad(Math.floor((dayOfYear - 1) / 7) + 1)}`;
}

const LABELS: Record<Exclude<BoardPeriod, 'season'>, RegExp> = {
  'all-time': /^all-time$/,
  daily: /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/,
  weekly: /^\d{4}-W(0[1-9]|[1-4]\d|5[0-3])$/,
  monthly: /^\d{4}-(0[1-9]|1[0-2])$/,
};

/** Season ids and board names: what the migration's CHECKs accept. */
export const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** A period label asked for on a board of this period kind, checked (it names a period, maybe one with no scores). */
export function validatePeriodLabel(period: BoardPeriod, label: unknown, field = 'period'): string {
  if (typeof label !== 'string') throw new ValidationError(field, `must be a period label or a Date, got ${showValue(label)}`);
  const ok = period === 'season' ? NAME.test(label) : LABELS[period].test(label);
  if (!ok)
    throw new ValidationError(field, `${showValue(label)} is not a ${period === 'season' ? 'season id' : `${period} period label`} (${EXAMPLES[period]})`);
  return label;
}

const EXAMPLES: Record<BoardPeriod, string> = {
  'all-time': "'all-time'",
  daily: "e.g. '2026-12-01'",
  weekly: "e.g. '2026-W48'",
  monthly: "e.g. '2026-12'",
  season: "e.g. 's1': letters, digits, '_', '.', '-'",
};

export function validateOperator(value: unknown, field = 'operator'): BoardOperator {
  if (typeof value !== 'string' || !(BOARD_OPERATORS as readonly string[]).includes(value)) {
    throw new ValidationError(field, `must be one of ${BOARD_OPERATORS.join(', ')}, got ${showValue(value)}`);
  }
  return value as BoardOperator;
}

export function validatePeriodKind(value: unknown, field = 'period'): BoardPeriod {
  if (typeof value !== 'string' || !(BOARD_PERIODS as readonly string[]).includes(value)) {
    throw new ValidationError(field, `must be one of ${BOARD_PERIODS.join(', ')}, got ${showValue(value)}`);
  }
  return value as BoardPeriod;
}

export function validateWeekday(value: unknown, field = 'weekStart'): Weekday {
  if (typeof value !== 'string' || !(WEEKDAYS as readonly string[]).includes(value.toLowerCase())) {
    throw new ValidationError(field, `must be a weekday (${WEEKDAYS.join(', ')}), got ${showValue(value)}`);
  }
  return value.toLowerCase() as Weekday;
}
