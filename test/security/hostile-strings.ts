/**
 * Strings an attacker (or a confused client) sends through every text input: SQL and Lua
 * injection, encoding tricks, control and bidi characters, oversized and numeric-looking values.
 */
export const HOSTILE_STRINGS: readonly string[] = [
  `'; DROP TABLE players; --`,
  `Robert'); DROP TABLE player_stats;--`,
  `" OR "1"="1`,
  `1 OR 1=1`,
  `1; SELECT pg_sleep(30)`,
  `$1`,
  `$$; DROP TABLE players; $$`,
  `\\'; DELETE FROM players; --`,
  `%`,
  `_`,
  `*`,
  `\\`,
  `\u0000`,
  `ab\u0000cd`,
  `line\r\nforged: log line`,
  `tab\there`,
  `\u202Eevil\u202C`,
  `zero\u200Bwidth`,
  `\uD800`, // a lone surrogate: not valid UTF-8
  `${'{'}{7*7}}`,
  `__proto__`,
  `constructor`,
  `../../../etc/passwd`,
  `<script>alert(1)</script>`,
  `redis.call('FLUSHALL')`,
  `{hash}tag`,
  ` `,
  ``,
  `NaN`,
  `-1`,
  `0`,
  `9223372036854775808`, // 2^63: one past the largest player id
  `99999999999999999999999999999999`,
  `0x1F`,
  `1e3`,
  ` 42`,
  `a`.repeat(100_000),
  `😀`.repeat(40),
  `Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇`,
];

/** Short, printable label for a hostile string in test names and failure output. */
export function label(s: string): string {
  const shown = JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…(${s.length} chars)` : s);
  return shown;
}
