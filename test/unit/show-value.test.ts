import { describe, expect, it } from 'vitest';
import { InvalidPlayerIdError, ValidationError } from '../../src/errors/index.js';
import { SHOWN_MAX_LENGTH, showValue } from '../../src/errors/show-value.js';

describe('showValue', () => {
  it('quotes an ordinary string exactly as JSON does', () => {
    expect(showValue('twelve')).toBe('"twelve"');
    expect(showValue('say "hi" \\ bye')).toBe(JSON.stringify('say "hi" \\ bye'));
    expect(showValue('')).toBe('""');
    expect(showValue('😀')).toBe('"😀"');
  });

  it('escapes C0 controls, DEL and C1 controls', () => {
    expect(showValue('line\r\nforged')).toBe('"line\\r\\nforged"');
    expect(showValue('a\u0000b\u007fc\u0085d')).toBe('"a\\u0000b\\u007fc\\u0085d"');
  });

  it('escapes bidi, zero-width and line-separator code points as \\uXXXX', () => {
    expect(showValue('\u202Eevil\u202C')).toBe('"\\u202eevil\\u202c"');
    expect(showValue('zero\u200Bwidth')).toBe('"zero\\u200bwidth"');
    expect(showValue('\u2066x\u2069\u200f\u2028\ufeff')).toBe('"\\u2066x\\u2069\\u200f\\u2028\\ufeff"');
  });

  it('escapes an astral format character (a tag character) as its surrogate pair', () => {
    expect(showValue('a\u{E0041}')).toBe('"a\\udb40\\udc41"');
  });

  it('escapes a lone surrogate', () => {
    expect(showValue('\uD800')).toBe('"\\ud800"');
  });

  it('cuts a long string and states its length', () => {
    const shown = showValue('a'.repeat(100_000));
    expect(shown).toBe(`"${'a'.repeat(SHOWN_MAX_LENGTH)}"… (100000 characters)`);
    expect(showValue('a'.repeat(SHOWN_MAX_LENGTH))).toBe(`"${'a'.repeat(SHOWN_MAX_LENGTH)}"`);
  });

  it('does not split a surrogate pair at the cut', () => {
    const s = `${'a'.repeat(SHOWN_MAX_LENGTH - 1)}😀😀`;
    expect(showValue(s)).toBe(`"${'a'.repeat(SHOWN_MAX_LENGTH - 1)}"… (${s.length} characters)`);
  });

  it('shows other values by their text or type, never by their own toString', () => {
    expect(showValue(42)).toBe('42');
    expect(showValue(true)).toBe('true');
    expect(showValue(5n)).toBe('5n');
    expect(showValue(null)).toBe('null');
    expect(showValue(undefined)).toBe('undefined');
    expect(showValue(['\u202e'.repeat(5000)])).toBe('array');
    expect(showValue({ toString: () => 'forged\nline' })).toBe('object');
    expect(showValue(Symbol('\u202e'))).toBe('symbol');
  });
});

describe('error messages built with showValue', () => {
  it('keep ordinary values as before', () => {
    expect(new InvalidPlayerIdError('twelve', 'nope').message).toBe('invalid player id "twelve": nope');
    expect(new InvalidPlayerIdError(0n, 'must be between 1 and 2^63-1').message).toBe('invalid player id 0: must be between 1 and 2^63-1');
    expect(new ValidationError('results.2.scoreDelta', 'must be a number').message).toBe('results.2.scoreDelta: must be a number');
  });

  it('quote a field that is not a plain path, keeping the field itself', () => {
    const err = new ValidationError('x\r\nforged: line', 'unknown field');
    expect(err.message).toBe('"x\\r\\nforged: line": unknown field');
    expect(err.field).toBe('x\r\nforged: line');
  });
});
