import { dirname, isAbsolute, join } from 'node:path';
import { ShardMapError } from '../errors/index.js';
import { attachConnectionUrl, targetOfUrl } from './connection-url.js';
import { secretsOfUrl } from './redact.js';
import { BUCKET_COUNT, shardMapSchema, sslModes, type ShardMapFile, type SslMode } from './schema.js';
import type { RegionSpec, ReplicaSpec, ShardMap, ShardSpec } from './types.js';

export type Env = Readonly<Record<string, string | undefined>>;

export interface ValidateOptions {
  /** Shown in errors; the map's own path when loaded from disk. */
  file?: string;
  /** Where `env:NAME` connections are looked up. The library never reads process.env itself. */
  env?: Env;
  /**
   * Reads the file named by `NAME_FILE` when `env:NAME` is used and NAME itself is unset (the
   * Docker/Kubernetes secrets convention). Given by the program's edge (the CLI passes a reader);
   * without it, `NAME_FILE` is reported as unsupported rather than read behind the caller's back.
   */
  readSecretFile?: (file: string) => string;
}

/**
 * Checks a parsed shard map and builds the routing table. Pure: everything it needs comes in as
 * arguments, and every fault found is reported at once (not just the first).
 */
export function validateShardMap(raw: unknown, options: ValidateOptions = {}): ShardMap {
  const file = options.file ?? '<shard map>';
  const { map, issues } = parseSchema(raw);
  if (!map) throw new ShardMapError(file, issues);
  checkNames(map, issues);
  const owner = assignBuckets(map, issues);
  const shards = map.shards.map((s, index) => buildShard(s, index, options, issues));
  checkReplicaTargets(shards, issues);
  if (issues.length > 0) throw new ShardMapError(file, issues);

  const regions: RegionSpec[] = map.regions.map((name) => ({
    name,
    shards: shards.filter((s) => s.region === name),
  }));
  return {
    file,
    version: 1,
    ...(map.name !== undefined ? { name: map.name } : {}),
    ...(map.prefix !== undefined ? { prefix: map.prefix } : {}),
    ...(map.epoch !== undefined ? { epoch: map.epoch } : {}),
    regions,
    shards,
    bucketOwner: owner,
  };
}

/**
 * The schema's verdict. Unknown keys alone do not stop the checks that follow (buckets, regions,
 * connections): they are reported with every other fault, so one run of `map check` shows them
 * all. Any other schema fault does, since the later checks need the shape the schema guarantees.
 */
function parseSchema(raw: unknown): { map: ShardMapFile | undefined; issues: string[] } {
  const first = shardMapSchema.safeParse(raw);
  if (first.success) return { map: first.data, issues: [] };
  const issues = first.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
  const unknownKeys = first.error.issues.filter((i) => i.code === 'unrecognized_keys');
  if (unknownKeys.length < first.error.issues.length) return { map: undefined, issues };
  let stripped: unknown;
  try {
    stripped = structuredClone(raw);
  } catch {
    return { map: undefined, issues }; // not plain data (a function, a class instance): the schema's verdict stands
  }
  for (const i of unknownKeys) {
    const holder = i.path.reduce<unknown>((o, k) => (o as Record<PropertyKey, unknown>)[k], stripped) as Record<string, unknown>;
    for (const key of i.keys) delete holder[key];
  }
  const second = shardMapSchema.safeParse(stripped);
  return { map: second.success ? second.data : undefined, issues };
}

function checkNames(map: ShardMapFile, issues: string[]): void {
  const seenRegion = new Set<string>();
  map.regions.forEach((r, i) => {
    if (seenRegion.has(r)) issues.push(`regions[${i}]: region "${r}" is listed twice`);
    seenRegion.add(r);
  });
  const seenShard = new Map<string, number>();
  map.shards.forEach((s, i) => {
    const first = seenShard.get(s.id);
    if (first !== undefined) issues.push(`shards[${i}].id: duplicate shard id "${s.id}" (also shards[${first}])`);
    else seenShard.set(s.id, i);
    if (!seenRegion.has(s.region)) {
      issues.push(`shards[${i}].region: shard "${s.id}" is in region "${s.region}", which is not in "regions"`);
    }
  });
  for (const r of seenRegion) {
    if (!map.shards.some((s) => s.region === r)) issues.push(`regions: region "${r}" has no shards`);
  }
}

/** bucket -> shard index; reports overlaps with both owners and gaps as compact ranges. */
function assignBuckets(map: ShardMapFile, issues: string[]): Uint16Array {
  const NONE = 0xffff;
  const owner = new Uint16Array(BUCKET_COUNT).fill(NONE);
  map.shards.forEach((s, si) => {
    s.buckets.forEach((text, bi) => {
      const range = parseRange(text);
      const where = `shards[${si}].buckets[${bi}]`;
      if (!range) return issues.push(`${where}: "${text}" is not a bucket range`);
      const [lo, hi] = range;
      if (lo > hi) return issues.push(`${where}: range "${text}" is backwards`);
      if (hi >= BUCKET_COUNT) return issues.push(`${where}: bucket ${hi} is outside 0-${BUCKET_COUNT - 1}`);
      for (let b = lo; b <= hi; b++) {
        const prev = owner[b] as number;
        if (prev !== NONE) {
          const other = map.shards[prev]?.id ?? '?';
          const end = firstOverlapEnd(owner, b, hi, prev);
          issues.push(`${where}: buckets ${b === end ? b : `${b}-${end}`} are owned by both "${other}" and "${s.id}"`);
          b = end;
          continue;
        }
        owner[b] = si;
      }
      return undefined;
    });
  });
  const gaps = ranges(owner, NONE);
  if (gaps.length > 0) {
    issues.push(`buckets: ${gaps.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(', ')} owned by no shard`);
  }
  return owner;
}

function firstOverlapEnd(owner: Uint16Array, from: number, hi: number, prev: number): number {
  let end = from;
  while (end + 1 <= hi && owner[end + 1] === prev) end++;
  return end;
}

function ranges(owner: Uint16Array, value: number): [number, number][] {
  const out: [number, number][] = [];
  for (let b = 0; b < owner.length; b++) {
    if (owner[b] !== value) continue;
    let e = b;
    while (e + 1 < owner.length && owner[e + 1] === value) e++;
    out.push([b, e]);
    b = e;
  }
  return out;
}

export function parseRange(text: string): [number, number] | undefined {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text);
  if (!m) return undefined;
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  return [lo, hi];
}

/** The URL a map `connection` names ('' when it is faulty: the fault is in `issues`). */
function resolveConnection(connection: string, shardId: string, where: string, options: ValidateOptions, issues: string[]): string {
  if (connection.startsWith('env:')) return resolveEnvRef(connection.slice(4), shardId, where, options, issues) ?? '';
  if (!isPostgresUrl(connection)) {
    issues.push(`${where}: expected "env:NAME" or a postgres:// URL`);
  } else if (new URL(connection).password !== '' || secretsOfUrl(connection).length > 0) {
    issues.push(`${where}: the URL holds a password; put it in an environment variable and write "env:NAME" here`);
  } else {
    return connection;
  }
  return '';
}

function buildShard(s: ShardMapFile['shards'][number], index: number, options: ValidateOptions, issues: string[]): ShardSpec {
  const url = resolveConnection(s.connection, s.id, `shards[${index}].connection`, options, issues);
  const ssl = url ? sslOf(s, url, `shards[${index}]`, options.file, issues) : s.ssl;
  const buckets = s.buckets
    .map(parseRange)
    .filter((r): r is [number, number] => r !== undefined && r[0] <= r[1])
    .sort((a, b) => a[0] - b[0]);
  const shard = attachConnectionUrl(
    {
      id: s.id,
      region: s.region,
      index,
      connectionRef: s.connection,
      target: targetOfUrl(url, s.connection),
      buckets,
      bucketCount: buckets.reduce((n, [a, b]) => n + (b - a + 1), 0),
      ...(ssl ? { ssl } : {}),
      ...(s.pool ? { pool: s.pool } : {}),
    },
    url,
  );
  if (!s.replicas?.length) return shard;
  const replicas = s.replicas.map((r, replica): ReplicaSpec => {
    const where = `shards[${index}].replicas[${replica}]`;
    const rUrl = resolveConnection(r.connection, s.id, `${where}.connection`, options, issues);
    const rSsl = rUrl ? sslOf(r, rUrl, where, options.file, issues) : r.ssl;
    // Not the primary's TLS or pool settings: a replica states its own.
    const { ssl: _ssl, pool: _pool, ...base } = shard;
    return attachConnectionUrl(
      {
        ...base,
        replica,
        connectionRef: r.connection,
        target: targetOfUrl(rUrl, r.connection),
        ...(rSsl ? { ssl: rSsl } : {}),
        ...(r.pool ? { pool: r.pool } : {}),
      },
      rUrl,
    );
  });
  return attachConnectionUrl({ ...shard, replicas }, url);
}

/** A replica at a database some shard or another replica already uses is a copy-paste slip, not a replica. */
function checkReplicaTargets(shards: readonly ShardSpec[], issues: string[]): void {
  const seen = new Map<string, string>();
  for (const s of shards) if (s.target) seen.set(s.target, `shard "${s.id}"`);
  for (const s of shards) {
    for (const r of s.replicas ?? []) {
      const where = `shards[${s.index}].replicas[${r.replica}].connection`;
      const other = seen.get(r.target);
      if (other !== undefined) issues.push(`${where}: points at ${r.target}, the database of ${other}; a replica must be a standby of its own`);
      else seen.set(r.target, `replica ${r.replica} of shard "${s.id}"`);
    }
  }
}

/**
 * `env:NAME`: the URL is in $NAME, or in the file named by $NAME_FILE. Messages name variables
 * and files, never what they hold: a value that is not a URL may still be a secret.
 */
function resolveEnvRef(name: string, shardId: string, where: string, options: ValidateOptions, issues: string[]): string | undefined {
  const env = options.env ?? {};
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    issues.push(`${where}: "${name}" is not an environment variable name`);
    return undefined;
  }
  const direct = env[name];
  const fileVar = `${name}_FILE`;
  const file = env[fileVar];
  let value: string;
  if (direct !== undefined && direct !== '') {
    if (file !== undefined && file !== '') {
      issues.push(`${where}: both ${name} and ${fileVar} are set (shard "${shardId}"); set only one`);
      return undefined;
    }
    value = direct;
  } else if (file !== undefined && file !== '') {
    if (!options.readSecretFile) {
      issues.push(`${where}: ${fileVar} is set, but this program does not read secret files; set ${name} instead`);
      return undefined;
    }
    try {
      // Secret files usually end with a newline (echo, kubectl create secret --from-file).
      value = options.readSecretFile(file).trim();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
      issues.push(`${where}: cannot read the file "${file}" named by ${fileVar} (${code})`);
      return undefined;
    }
  } else {
    issues.push(`${where}: environment variable ${name} is not set (shard "${shardId}"); set it, or ${fileVar} to a file holding the URL`);
    return undefined;
  }
  const source = direct !== undefined && direct !== '' ? `environment variable ${name}` : `the file named by ${fileVar}`;
  if (!isPostgresUrl(value)) {
    issues.push(`${where}: ${source} does not hold a postgres:// URL`);
    return undefined;
  }
  return value;
}

const URL_SSL_PARAMS = new Set(['sslmode', 'sslrootcert']);

/**
 * The map's `ssl` block, completed from `sslmode`/`sslrootcert` in the URL (managed Postgres hands
 * out such URLs). Dropping them silently would downgrade a URL that asked for TLS to plaintext, so
 * they are honoured, a conflict with the map is refused, and other ssl* parameters (client keys,
 * pg's own `ssl=`) are refused because pg would act on them outside the map's control.
 */
function sslOf(
  s: Pick<ShardMapFile['shards'][number], 'ssl'>,
  url: string,
  where: string,
  file: string | undefined,
  issues: string[],
): ShardMapFile['shards'][number]['ssl'] {
  const params = new URL(url).searchParams;
  for (const key of params.keys()) {
    if (/^ssl/i.test(key) && !URL_SSL_PARAMS.has(key)) {
      issues.push(`${where}.connection: the URL parameter "${key}" is not supported; write TLS settings in the shard's "ssl" block`);
    }
  }
  const urlMode = params.get('sslmode') ?? undefined;
  const urlCa = params.get('sslrootcert') ?? undefined;
  if (urlMode !== undefined && !(sslModes as readonly string[]).includes(urlMode)) {
    issues.push(`${where}.connection: sslmode "${urlMode}" in the URL is not one of ${sslModes.join(', ')}`);
    return s.ssl;
  }
  if (s.ssl && urlMode !== undefined && urlMode !== s.ssl.mode) {
    issues.push(`${where}.ssl.mode: "${s.ssl.mode}" in the map conflicts with sslmode=${urlMode} in the URL`);
  }
  if (s.ssl?.ca !== undefined && urlCa !== undefined && urlCa !== s.ssl.ca) {
    issues.push(`${where}.ssl.ca: the map and the URL's sslrootcert name different CA files`);
  }
  const mode = s.ssl?.mode ?? (urlMode as SslMode | undefined) ?? (urlCa !== undefined ? 'prefer' : undefined);
  if (mode === undefined) return undefined;
  const ca = s.ssl?.ca ?? urlCa;
  if (ca !== undefined && mode === 'disable') issues.push(`${where}.ssl.ca: a CA file is given but the mode is "disable"`);
  // A relative CA path means "next to the map file", not "wherever the process was started".
  const caPath = ca === undefined || file === undefined || isAbsolute(ca) ? ca : join(dirname(file), ca);
  return { mode, ...(caPath !== undefined ? { ca: caPath } : {}) };
}

function isPostgresUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return u.protocol === 'postgres:' || u.protocol === 'postgresql:';
  } catch {
    return false;
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(root)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}
