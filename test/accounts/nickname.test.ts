import { describe, expect, it } from 'vitest';
import { NICKNAME_MAX_LENGTH, ValidationError, normalizeNickname } from '../../src/index.js';

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return (e as ValidationError).field;
  }
  return undefined;
}

describe('nickname rules', () => {
  it.each([
    ['Zoë', 'Zoë'],
    ['  padded  ', 'padded'],
    ['李小龙', '李小龙'],
    ['Ｋａｔａ', 'Ｋａｔａ'],
    ['o\u0301scar', 'óscar'], // NFC: o + combining acute becomes one code point
    ["'); DROP TABLE players; --", "'); DROP TABLE players; --"],
    ['x'.repeat(NICKNAME_MAX_LENGTH), 'x'.repeat(NICKNAME_MAX_LENGTH)],
    ['🐉'.repeat(NICKNAME_MAX_LENGTH), '🐉'.repeat(NICKNAME_MAX_LENGTH)], // counted in code points, not UTF-16 units
    ['a-b_c.d', 'a-b_c.d'],
  ])('accepts %j as %j', (input, stored) => {
    expect(normalizeNickname(input)).toBe(stored);
  });

  it.each([
    [''],
    ['   '],
    ['x'.repeat(NICKNAME_MAX_LENGTH + 1)],
    ['nul\u0000byte'],
    ['tab\tname'],
    ['line\nbreak'],
    ['zero\u200Bwidth'],
    ['bidi\u202Eevil'],
    ['nb\u00A0space'],
    ['two  spaces'],
    ['private\uE000use'],
  ])('refuses %j', (input) => {
    expect(fieldOf(() => normalizeNickname(input))).toBe('nickname');
  });

  it('refuses non-strings, naming the field it was given', () => {
    expect(fieldOf(() => normalizeNickname(42, 'patch.nickname'))).toBe('patch.nickname');
    expect(fieldOf(() => normalizeNickname(null))).toBe('nickname');
  });
});
