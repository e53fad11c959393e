/** Longer strings are cut: a message that copies a 100 kB input whole floods every log it reaches. */
export const SHOWN_MAX_LENGTH = 100;

/**
 * What JSON.stringify leaves raw but a log viewer or terminal acts on: C1 controls and DEL (NEL
 * breaks lines), format characters (bidi overrides and isolates, zero-width characters, tag
 * characters that smuggle hidden text) and the Unicode line and paragraph separators.
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

/**
 * A user-supplied value as it may appear inside an error message: a string JSON-quoted, with
 * every control, invisible or bidi character escaped as \uXXXX and cut to SHOWN_MAX_LENGTH code
 * units (the original length stated); any other value by its type, or its text for a number,
 * boolean or bigint, so neither a hostile toString nor a huge array gets into the message.
 */
export function showValue(value: unknown): string {
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined) return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null) return 'null';
  return Array.isArray(value) ? 'array' : typeof value;
}

function quote(s: string): string {
  const head = cutToLength(s, SHOWN_MAX_LENGTH);
  // JSON.stringify already escapes C0 controls, quotes, backslashes and lone surrogates.
  const quoted = escapeUnsafe(JSON.stringify(head));
  return head.length === s.length ? quoted : `${quoted}${lengthNote(s)}`;
}

/**
 * Untrusted text for a listing rather than a message (no quotes): cut to `max` code units, the
 * original length stated, with every control, invisible or bidi character escaped.
 */
export function printable(s: string, max: number): string {
  const head = cutToLength(s, max);
  return escapeUnsafe(head.length === s.length ? s : `${head}${lengthNote(s)}`);
}

/** At most `max` UTF-16 units of `s`, never half a surrogate pair (it would show as a lone escape). */
function cutToLength(s: string, max: number): string {
  if (s.length <= max) return s;
  return s.slice(0, isHighSurrogate(s.charCodeAt(max - 1)) ? max - 1 : max);
}

const lengthNote = (s: string) => `… (${s.length} characters)`;

function escapeUnsafe(text: string): string {
  return text.replace(UNSAFE, (c) =>
    c
      .split('')
      .map((unit) => unicodeEscape(unit.charCodeAt(0)))
      .join(''),
  );
}

function unicodeEscape(unit: number): string {
  return `\\u${unit.toString(16).padStart(4, '0')}`;
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}
