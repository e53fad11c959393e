import { createHash } from 'node:crypto';
import { z } from 'zod';
import { InvalidPlayerIdError, ValidationError } from '../errors/index.js';
import { OUTCOMES, type JsonObject, type JsonValue, type Outcome } from '../db/schema.js';
import { parsePlayerId, type PlayerId, type Router } from '../routing/index.js';
import type { GameSettings, SettlementLimits } from './types.js';

export interface NormalizedResult {
  playerId: PlayerId;
  scoreDelta: number;
  outcome: Outcome;
  /** As the game's schema returned it, keys sorted (so equal data has one canonical JSON). */
  data?: JsonObject;
  /** Position in the caller's `results` (for error fields; not part of the content). */
  index: number;
}

/** The games whose results may carry `data`, each with the schema that checks it. */
export type GameTable = Readonly<Record<string, GameSettings<unknown>>>;

/** A validated match: results sorted by player id, so equal content has one canonical form. */
export interface NormalizedMatch {
  matchId: string;
  gameId: string;
  endedAt: Date;
  results: NormalizedResult[];
  /** sha256 (hex) of the canonical form of the whole match. */
  contentHash: string;
}

// Printable ASCII without spaces: safe in logs, URLs, Redis keys and BullMQ job ids (after encoding).
const ID_RE = /^[\x21-\x7e]+$/;
const ISO_WITH_ZONE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i;
const EARLIEST = Date.UTC(2000, 0, 1);

const idString = (what: string, max: number) =>
  z
    .string({ error: `${what} must be a string` })
    .min(1, `${what} must not be empty`)
    .max(max, `${what} must be at most ${max} characters`)
    .regex(ID_RE, `${what} must be printable ASCII without spaces`);

// zod compiles a schema on its first parses: building one per submission cost more CPU than the
// rest of the validation. One schema per pair of score bounds (the only limits it embeds).
const inputSchemas = new Map<string, ReturnType<typeof buildInputSchema>>();

function inputSchema(limits: SettlementLimits) {
  const key = `${limits.minScoreDelta}:${limits.maxScoreDelta}`;
  let schema = inputSchemas.get(key);
  if (!schema) {
    schema = buildInputSchema(limits);
    inputSchemas.set(key, schema);
  }
  return schema;
}

function buildInputSchema(limits: Pick<SettlementLimits, 'minScoreDelta' | 'maxScoreDelta'>) {
  const result = z.strictObject({
    playerId: z.union([z.string(), z.bigint()], { error: 'must be a decimal string or bigint' }),
    scoreDelta: z
      .number({ error: 'must be a number' })
      .refine(Number.isSafeInteger, 'must be an integer')
      .refine((n) => n >= limits.minScoreDelta && n <= limits.maxScoreDelta, `must be between ${limits.minScoreDelta} and ${limits.maxScoreDelta}`),
    outcome: z.enum(OUTCOMES, { error: `must be one of ${OUTCOMES.join(', ')}` }),
    // Checked by the game's own schema afterwards (checkData), with the path mapped to the spot.
    data: z.unknown().optional(),
  });
  return z.strictObject({
    matchId: idString('matchId', 128),
    gameId: idString('gameId', 64),
    endedAt: z.union([z.date(), z.string()], { error: 'must be a Date or an ISO 8601 string' }),
    results: z.array(result),
  });
}

/**
 * Checks a submission at the edge and puts it in canonical form. Throws ValidationError naming the
 * first offending field; touches nothing outside this process. Player existence is checked later,
 * on the shards, before anything is written. With `router` null, ids are checked for form only, not
 * for routing to a shard of the map: for a caller without the map (a game server in front of a
 * remote submitter), whose submission is checked in full again where it is received.
 */
export function normalizeMatch(
  input: unknown,
  router: Router | null,
  limits: SettlementLimits,
  games: GameTable = {},
  now: number = Date.now(),
): NormalizedMatch {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ValidationError('(input)', 'must be an object');
  const results = (input as { results?: unknown }).results;
  // Cheap bounds first, so an oversized request is refused before it is walked.
  if (!Array.isArray(results)) throw new ValidationError('results', 'must be an array');
  if (results.length === 0) throw new ValidationError('results', 'must hold at least one result');
  if (results.length > limits.maxResults) throw new ValidationError('results', `must hold at most ${limits.maxResults} results, got ${results.length}`);
  const bytes = payloadBytes(input);
  if (bytes > limits.maxPayloadBytes) throw new ValidationError('(input)', `payload is ${bytes} bytes, the limit is ${limits.maxPayloadBytes}`);

  const parsed = inputSchema(limits).safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.map(String) ?? [];
    if (issue?.code === 'unrecognized_keys') {
      throw new ValidationError([...path, issue.keys[0] ?? '?'].join('.'), 'unknown field');
    }
    throw new ValidationError(path.join('.') || '(input)', issue?.message ?? 'invalid');
  }
  const data = parsed.data;

  const endedAt = parseEndedAt(data.endedAt);
  if (endedAt.getTime() < EARLIEST) throw new ValidationError('endedAt', 'is before 2000-01-01');
  if (endedAt.getTime() > now + limits.maxClockSkewMs) throw new ValidationError('endedAt', 'is in the future');

  const seen = new Map<PlayerId, number>();
  const normalized = data.results.map((r, i): NormalizedResult => {
    let playerId: PlayerId;
    try {
      playerId = parsePlayerId(r.playerId);
      router?.shardFor(playerId); // every id must route to a shard of the map
    } catch (err) {
      if (err instanceof InvalidPlayerIdError) throw new ValidationError(`results.${i}.playerId`, err.message);
      throw err;
    }
    const first = seen.get(playerId);
    if (first !== undefined) throw new ValidationError(`results.${i}.playerId`, `player ${playerId} already appears in results.${first}`);
    seen.set(playerId, i);
    if (r.data === undefined) return { playerId, scoreDelta: r.scoreDelta, outcome: r.outcome, index: i };
    return { playerId, scoreDelta: r.scoreDelta, outcome: r.outcome, data: checkData(games, data.gameId, r.data, `results.${i}.data`), index: i };
  });
  normalized.sort((a, b) => (a.playerId < b.playerId ? -1 : a.playerId > b.playerId ? 1 : 0));

  const match = { matchId: data.matchId, gameId: data.gameId, endedAt, results: normalized };
  return { ...match, contentHash: contentHash(match) };
}

function parseEndedAt(value: Date | string): Date {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new ValidationError('endedAt', 'is an invalid Date');
    return new Date(value.getTime());
  }
  if (!ISO_WITH_ZONE.test(value)) throw new ValidationError('endedAt', 'must be an ISO 8601 timestamp with a time zone, e.g. 2025-01-31T12:00:00Z');
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new ValidationError('endedAt', 'is not a valid timestamp');
  return d;
}

function payloadBytes(input: object): number {
  try {
    return Buffer.byteLength(JSON.stringify(input, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
  } catch {
    throw new ValidationError('(input)', 'is not serialisable (cyclic?)');
  }
}

// Deeper JSON is refused before anything walks it: a deep enough nesting overflows the stack.
const MAX_DATA_DEPTH = 32;

/**
 * A result's data through the game's schema: refused for a game without one, and unless both what
 * was given and what the schema returned are plain JSON objects. Errors name the spot inside
 * (`results.2.data.coins`) from the schema's first issue when it reports zod-like issues.
 */
function checkData(games: GameTable, gameId: string, value: unknown, field: string): JsonObject {
  const schema = Object.hasOwn(games, gameId) ? games[gameId]?.data : undefined;
  if (!schema) throw new ValidationError(field, `game ${JSON.stringify(gameId)} takes no data: register a data schema for it in the client's games option`);
  asJsonObject(value, field);
  let parsed: unknown;
  try {
    parsed = schema.parse(value);
  } catch (err) {
    throw schemaError(field, err);
  }
  return asJsonObject(parsed, field);
}

function schemaError(field: string, err: unknown): ValidationError {
  const issues = (err as { issues?: unknown } | null)?.issues;
  const first = Array.isArray(issues) ? (issues[0] as { path?: unknown; message?: unknown; code?: unknown; keys?: unknown } | undefined) : undefined;
  if (!first) return new ValidationError(field, err instanceof Error ? err.message : String(err));
  const path = Array.isArray(first.path) ? first.path.map((p: unknown) => (typeof p === 'symbol' ? (p.description ?? '?') : String(p))) : [];
  if (first.code === 'unrecognized_keys' && Array.isArray(first.keys))
    return new ValidationError([field, ...path, String(first.keys[0])].join('.'), 'unknown field');
  return new ValidationError([field, ...path].join('.'), typeof first.message === 'string' ? first.message : 'invalid');
}

/** A key-sorted copy of `value` when it is a plain JSON object; a ValidationError at the spot if not. */
function asJsonObject(value: unknown, field: string): JsonObject {
  if (!isPlainObject(value)) throw new ValidationError(field, 'must be a JSON object');
  return toJson(value, field, 0) as JsonObject;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function toJson(v: unknown, field: string, depth: number): JsonValue {
  if (depth > MAX_DATA_DEPTH) throw new ValidationError(field, `nests deeper than ${MAX_DATA_DEPTH} levels`);
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v;
    case 'number':
      if (!Number.isFinite(v)) throw new ValidationError(field, 'must be a finite number');
      return v;
    case 'object': {
      if (v === null) return null;
      if (Array.isArray(v)) return v.map((x, i) => toJson(x, `${field}.${i}`, depth + 1));
      if (!isPlainObject(v)) throw new ValidationError(field, 'must be JSON (a plain object, array, string, number, boolean or null)');
      const out: Record<string, JsonValue> = {};
      for (const k of Object.keys(v).sort()) {
        const x = v[k];
        // Undefined is dropped, as JSON drops it. defineProperty: a key "__proto__" stays a key.
        if (x !== undefined)
          Object.defineProperty(out, k, { value: toJson(x, `${field}.${k}`, depth + 1), enumerable: true, writable: true, configurable: true });
      }
      return out;
    }
    default:
      throw new ValidationError(field, `must be JSON, got a ${typeof v}`);
  }
}

/**
 * Order-independent digest of the whole match: result order is not part of the content, the
 * instant (to the millisecond) is, however the time zone was written. A result's data is part of
 * it (keys sorted); a result without data hashes as it did before data existed.
 */
export function contentHash(match: Omit<NormalizedMatch, 'contentHash'>): string {
  const canonical = JSON.stringify([
    1,
    match.matchId,
    match.gameId,
    match.endedAt.toISOString(),
    match.results.map((r) =>
      r.data === undefined ? [r.playerId.toString(), r.scoreDelta, r.outcome] : [r.playerId.toString(), r.scoreDelta, r.outcome, r.data],
    ),
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}

// ---- stored forms ------------------------------------------------------------------------------

/** One result as stored in an inbox row's `results` (JSON: ids as decimal strings). */
export interface StoredResult {
  playerId: string;
  scoreDelta: number;
  outcome: Outcome;
  data?: JsonObject;
}

const storedResults = z
  .array(
    z.strictObject({
      playerId: z.string().regex(/^[1-9][0-9]{0,18}$/),
      scoreDelta: z
        .number()
        .int()
        .min(-(2 ** 31))
        .max(2 ** 31 - 1),
      outcome: z.enum(OUTCOMES),
      data: z.custom<JsonObject>(isPlainObject, 'must be a JSON object').optional(),
    }),
  )
  .min(1);

export function toStored(results: readonly NormalizedResult[]): StoredResult[] {
  return results.map((r) => ({
    playerId: r.playerId.toString(),
    scoreDelta: r.scoreDelta,
    outcome: r.outcome,
    ...(r.data === undefined ? {} : { data: r.data }),
  }));
}

/** Parses an inbox row's results; a reason string when it is not applicable as it stands. */
export function parseStoredResults(value: unknown): { ok: true; results: StoredResult[] } | { ok: false; reason: string } {
  const parsed = storedResults.safeParse(value);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    return { ok: false, reason: `malformed inbox results at ${i?.path.join('.') || '(root)'}: ${i?.message ?? 'invalid'}` };
  }
  return { ok: true, results: parsed.data };
}

/** Most parts one queued job may name (SettlementQueues.enqueueMany splits a longer list). */
export const MAX_JOB_PARTS = 1000;

/**
 * The only data a queued job carries, ids: the inbox rows are the source of truth. One part
 * (`matchId`), the form every shardline wrote before batch jobs and still writes for a single part,
 * so an older worker can run it during a rolling upgrade; or several parts of one shard
 * (`matchIds`), with `deferredSince` (epoch ms) on a job that carries on parts deferred by an
 * earlier one, so the deferral's time limit counts from the first deferral.
 */
export type SettlementJobData = { matchId: string; shardId: string } | { shardId: string; matchIds: string[]; deferredSince?: number };

/** A job's data once checked, in one shape whichever was stored: distinct match ids, in order. */
export interface SettlementJob {
  shardId: string;
  matchIds: string[];
  /** Epoch ms: when an earlier job first deferred these parts (absent: the job's own start counts). */
  deferredSince?: number;
}

const jobShardId = z.string().min(1);
const partJobSchema = z.strictObject({ matchId: idString('matchId', 128), shardId: jobShardId });
const batchJobSchema = z.strictObject({
  shardId: jobShardId,
  matchIds: z.array(idString('matchId', 128)).min(1).max(MAX_JOB_PARTS),
  deferredSince: z.number().int().nonnegative().optional(),
});

export function parseJobData(value: unknown): SettlementJob | null {
  const part = partJobSchema.safeParse(value);
  if (part.success) return { shardId: part.data.shardId, matchIds: [part.data.matchId] };
  const batch = batchJobSchema.safeParse(value);
  if (!batch.success) return null;
  const { shardId, matchIds, deferredSince } = batch.data;
  return { shardId, matchIds: [...new Set(matchIds)], ...(deferredSince === undefined ? {} : { deferredSince }) };
}
