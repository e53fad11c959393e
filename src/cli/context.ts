import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ValidationError } from '../errors/index.js';
import { redisOptionsFromUrl } from '../settlement/index.js';
import { loadShardMap, redactSecrets, secretsOfUrl, type ShardMap } from '../shardmap/index.js';
import { connectionUrlOf } from '../shardmap/connection-url.js';

/** The CLI is one of the two places (with the worker entry) allowed to read the environment. */
export const env: Readonly<Record<string, string | undefined>> = process.env;

// ---- secrets: known to this process, never printed ------------------------------------------

const secrets = new Set<string>();

export function registerSecrets(values: Iterable<string>): void {
  for (const v of values) if (v.length >= 3) secrets.add(v);
}

/** The text with every secret this process knows of replaced by ***. */
export function maskSecrets(text: string): string {
  return secrets.size === 0 ? text : redactSecrets(text, [...secrets]);
}

/** Names whose values are secrets whatever they look like (PGPASSWORD, REDIS_PASSWORD, API_TOKEN...). */
const SECRET_NAME = /PASSW(OR)?D|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|API_KEY/i;

/**
 * Every credential in the environment: passwords inside URL-shaped values (a shard's, Redis's)
 * and the values of variables named like secrets. Short values of secret-named variables are
 * skipped: masking "true" or "1" everywhere would garble output and hide nothing.
 */
export function secretsInEnv(source: Readonly<Record<string, string | undefined>>): string[] {
  const out: string[] = [];
  for (const [name, value] of Object.entries(source)) {
    if (!value) continue;
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) out.push(...secretsOfUrl(value));
    else if (SECRET_NAME.test(name) && value.length >= 6) out.push(value);
  }
  return out;
}

/**
 * The safety net under every message the CLI prints: stdout and stderr mask known secrets, so a
 * driver message, a log line or a future command that echoes a URL cannot leak a password.
 */
export function installOutputMasking(): void {
  registerSecrets(secretsInEnv(env));
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
    stream.write = (chunk: unknown, ...rest: unknown[]) => {
      const textual = rest[0] === undefined || typeof rest[0] === 'function' || rest[0] === 'utf8' || rest[0] === 'utf-8';
      if (secrets.size === 0 || !textual) return write(chunk, ...rest);
      if (typeof chunk === 'string') return write(maskSecrets(chunk), ...rest);
      if (chunk instanceof Uint8Array) return write(maskSecrets(Buffer.from(chunk).toString('utf8')), ...rest);
      return write(chunk, ...rest);
    };
  }
}

/** `NAME_FILE` secret files (see validateShardMap): read here, at the edge, and masked from then on. */
function readSecretFile(file: string): string {
  const text = readFileSync(file, 'utf8').trim();
  registerSecrets([...secretsOfUrl(text), text]);
  return text;
}

const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/**
 * $REDIS_URL, or the file named by $REDIS_URL_FILE (read like a shard's `NAME_FILE`, so its
 * password is masked from then on), or the local server. Messages name the variable or the file,
 * never what they hold: a value that is not a URL may still be a password.
 */
export function redisUrlFromEnv(): string {
  // Empty counts as unset, as for the shards, so a blank REDIS_URL left in a unit file cannot shadow the file.
  const direct = env.REDIS_URL ?? '';
  const file = env.REDIS_URL_FILE ?? '';
  if (direct !== '' && file !== '') throw new ValidationError('REDIS_URL', 'both REDIS_URL and REDIS_URL_FILE are set; set only one');
  if (direct === '' && file === '') return DEFAULT_REDIS_URL;
  const source = direct !== '' ? 'REDIS_URL' : 'REDIS_URL_FILE';
  let url = direct;
  if (direct === '') {
    try {
      url = readSecretFile(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new ValidationError(source, `cannot read the file "${file}" named by REDIS_URL_FILE (${code})`);
    }
  }
  try {
    redisOptionsFromUrl(url);
  } catch (err) {
    // Its reasons (scheme, database number) hold no credentials, but they name REDIS_URL whatever the source.
    if (err instanceof ValidationError) throw new ValidationError(source, err.message.replace(/^REDIS_URL: /, ''));
    const holder = source === 'REDIS_URL' ? 'the value' : `the file "${file}"`;
    throw new ValidationError(source, `${holder} does not hold a redis:// or rediss:// URL`);
  }
  return url;
}

/**
 * --map, then $SHARDLINE_MAP, then ./shardmap/local.json of the working directory. Nothing else:
 * a map found anywhere else (such as the example map inside the installed package) would point
 * commands at databases the user never named.
 */
export function resolveMapPath(flag: string | undefined): string {
  if (flag) return flag;
  if (env.SHARDLINE_MAP) return env.SHARDLINE_MAP;
  const local = path.resolve('shardmap/local.json');
  if (existsSync(local)) return local;
  throw new ValidationError('--map', `no shard map given: pass --map <file> or set SHARDLINE_MAP (there is no shardmap/local.json in ${process.cwd()})`);
}

export async function loadMap(flag: string | undefined): Promise<ShardMap> {
  const map = await loadShardMap(resolveMapPath(flag), env, { readSecretFile });
  for (const shard of map.shards) registerSecrets(secretsOfUrl(connectionUrlOf(shard)));
  return map;
}

/** Plain aligned table: readable on a terminal and stable for scripts and tests to grep. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(',').filter(Boolean)];
}

/** A commander parser for a whole number >= `min`, refusing anything else with a typed error naming the flag. */
export function integerAtLeast(name: string, min: number) {
  return (value: string): number => {
    const n = /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min) throw new ValidationError(name, `must be a whole number of at least ${min}, got ${JSON.stringify(value)}`);
    return n;
  };
}

export const positiveInt = (name: string) => integerAtLeast(name, 1);
export const nonNegativeInt = (name: string) => integerAtLeast(name, 0);
