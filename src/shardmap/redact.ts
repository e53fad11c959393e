/** Query parameters that carry a credential in a connection URL (pg, libpq and Redis clients accept them). */
const SECRET_PARAMS = /^(password|pass|passwd|pwd|sslpassword|token|secret)$/i;

/** Masks the password of a connection URL so it can appear in logs, errors and tables. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const key of [...u.searchParams.keys()]) if (SECRET_PARAMS.test(key)) u.searchParams.set(key, '***');
    return u.toString();
  } catch {
    // Not a URL we can parse: show nothing of it rather than risk leaking a secret.
    return '<unparseable connection string>';
  }
}

/**
 * The secrets a connection URL holds, in every spelling they may be printed in (as written, and
 * percent-decoded), for `redactSecrets`. Empty for a URL without credentials or that won't parse.
 */
export function secretsOfUrl(url: string): string[] {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return [];
  }
  const raw = [u.password, ...[...u.searchParams].filter(([k]) => SECRET_PARAMS.test(k)).map(([, v]) => v)].filter((s) => s !== '');
  const out = new Set<string>();
  for (const s of raw) {
    out.add(s);
    try {
      out.add(decodeURIComponent(s));
    } catch {
      // A malformed escape: the raw form is all that can appear.
    }
    out.add(encodeURIComponent(s));
  }
  return [...out];
}

/**
 * Replaces every occurrence of the given secrets in a text (for error messages from drivers).
 * Secrets shorter than 3 characters are left alone: masking them would garble ordinary words
 * while hiding nothing (a password that short falls to guessing anyway).
 */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  // Longest first, so a secret that contains another is masked whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) if (s.length >= 3) out = out.split(s).join('***');
  return out;
}
