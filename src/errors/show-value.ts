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
  let head = s;
  if (s.length > SHOWN_MAX_LENGTH) {
    // Never split a surrogate pair: half of one would show as a lone surrogate escape.
    const cut = isHighSurrogate(s.charCodeAt(SHOWN_MAX_LENGTH - 1)) ? SHOWN_MAX_LENGTH - 1 : SHOWN_MAX_LENGTH;
    head = s.slice(0, cut);
  }
  // JSON.stringify already escapes C0 controls, quotes, backslashes and lone surrogates.
  const quoted = JSON.stringify(head).replace(UNSAFE, (c) => unicodeEscape(c.charCodeAt(0)) + (c.length > 1 ? unicodeEscape(c.charCodeAt(1)) : ''));
  return head.length === s.length ? quoted : `${quoted}… (${s.length} characters)`;
}

function unicodeEscape(unit: number): string {
  return `\\u${unit.toString(16).padStart(4, '0')}`;
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}
