import type { Outcome } from '../db/schema.js';
import { TableFullError, ValidationError } from '../errors/index.js';
import { formatPlayerId, parsePlayerId, type PlayerId, type Router } from '../routing/index.js';
import { DEFAULT_LIMITS, type SettlementLimits } from '../settlement/types.js';
import { normalizeMatch } from '../settlement/validate.js';
import { validatePositiveInt } from './keys.js';
import type { PlayerIdInput } from './types.js';

/** Dou dizhu's three, the game shardline's walk-through builds; other games pass `seats`. */
const DEFAULT_TABLE_SEATS = 3;
const MAX_TABLE_SEATS = 1000;

export interface TablePlayerResult {
  readonly playerId: PlayerIdInput;
  readonly scoreDelta: number;
  readonly outcome: Outcome;
}

/** The settlement input, in the shape `SettlementClient#submitSettlement` takes. */
export interface TableSettlement {
  matchId: string;
  gameId: string;
  /** The instant the match content is hashed with: a retry must send the same one. */
  endedAt: Date;
  results: { playerId: PlayerId | string; scoreDelta: number; outcome: Outcome }[];
}

/** What a table needs from settlement; `SettlementClient` satisfies it. */
export interface SettlementSubmitter<R = unknown> {
  submitSettlement(input: TableSettlement): Promise<R>;
  /**
   * The receiving settlement's limits, which a game end is checked against before it is submitted
   * (`SettlementClient` has its own). Default: DEFAULT_SETTLEMENT_LIMITS.
   */
  readonly limits?: Readonly<SettlementLimits>;
  /** With the shard map's router (`SettlementClient` has it), player ids must also route to a shard. */
  readonly shards?: { readonly router: Router };
}

export interface TableOptions<R> {
  readonly tableId: string;
  readonly gameId: string;
  readonly settlement: SettlementSubmitter<R>;
  /** How many players the table seats; a `sit()` beyond it throws TableFullError. Default 3 (1..1000). */
  readonly seats?: number;
}

export interface EndGameInput {
  /**
   * Stable id of this match: a retry after a crash must reuse it, which is what makes settlement
   * exactly once in effect. At most 128 printable ASCII characters, no spaces (settlement's rule).
   */
  readonly matchId: string;
  readonly results: readonly TablePlayerResult[];
  /**
   * When the game ended. It is part of the match content, so a retry must carry the same instant,
   * or settlement refuses it as other content under the same matchId (SettlementConflictError).
   * Default: the instant this Table object first ended this matchId, kept until it ends another;
   * a retry through the same object (after a timeout or an error from settlement) reuses it and is
   * answered as a duplicate.
   * A Table object does not survive a restart: a game server that may retry after one must pass
   * endedAt, kept with the matchId. `endGame` and `buildMatchResult` keep no state and require it.
   */
  readonly endedAt?: Date | string;
}

/**
 * A game table: who sits at it, and its game end handed to settlement. Thin on purpose: the game
 * logic decides the results; the table checks they describe exactly the players seated and submits.
 */
export class Table<R = unknown> {
  readonly tableId: string;
  readonly gameId: string;
  readonly seats: number;
  private readonly settlement: SettlementSubmitter<R>;
  private readonly seated = new Set<PlayerId>();
  /** The last game end handed to settlement: bounded to one, as a table plays one game at a time. */
  private lastEnd: { matchId: string; endedAt: Date } | undefined;

  constructor(options: TableOptions<R>) {
    if (!options.tableId) throw new ValidationError('tableId', 'required');
    if (!options.gameId) throw new ValidationError('gameId', 'required');
    this.tableId = options.tableId;
    this.gameId = options.gameId;
    this.seats = validatePositiveInt(options.seats ?? DEFAULT_TABLE_SEATS, 'seats', MAX_TABLE_SEATS);
    this.settlement = options.settlement;
  }

  get players(): readonly PlayerId[] {
    return [...this.seated];
  }

  /** Seats a player; sitting again is a no-op. Throws TableFullError when every seat is taken by others. */
  sit(playerId: PlayerIdInput): void {
    const id = parsePlayerId(playerId);
    if (this.seated.has(id)) return;
    if (this.seated.size >= this.seats) throw new TableFullError(this.tableId, this.seats);
    this.seated.add(id);
  }

  stand(playerId: PlayerIdInput): void {
    this.seated.delete(parsePlayerId(playerId));
  }

  /**
   * Checks the results name exactly the players seated, with settlement's own rules and limits,
   * and submits them. Ending the same matchId again without endedAt resubmits the same instant, so
   * settlement answers with the current status (`duplicate: true`) instead of a conflict.
   */
  async end(input: EndGameInput): Promise<R> {
    const remembered = this.lastEnd?.matchId === input.matchId ? this.lastEnd.endedAt : undefined;
    const match = buildMatchResult(this.gameId, { ...input, endedAt: input.endedAt ?? remembered ?? new Date() }, this.settlement);
    const named = new Set(match.results.map((r) => r.playerId));
    for (const id of this.seated) {
      if (!named.has(formatPlayerId(id))) throw new ValidationError('results', `no result for seated player ${id}`);
    }
    for (const [i, r] of match.results.entries()) {
      if (!this.seated.has(parsePlayerId(r.playerId))) {
        throw new ValidationError(`results.${i}.playerId`, `player ${r.playerId} is not seated at table ${this.tableId}`);
      }
    }
    // Before submitting: an attempt that throws midway is exactly the one to be retried.
    this.lastEnd = { matchId: match.matchId, endedAt: match.endedAt };
    return this.settlement.submitSettlement(match);
  }
}

/**
 * Validates a game end with settlement's own rules (`normalizeMatch`, against `rules.limits`, and
 * routing when `rules.shards` is given) and shapes it as settlement input: player ids as decimal
 * strings, results in the caller's order, endedAt as a Date. Touches nothing outside this process.
 */
export function buildMatchResult(
  gameId: string,
  input: EndGameInput & { readonly endedAt: Date | string },
  rules: Pick<SettlementSubmitter, 'limits' | 'shards'> = {},
): TableSettlement {
  const results: unknown = Array.isArray(input.results) ? input.results.map(pickResult) : input.results;
  const match = normalizeMatch(
    { matchId: input.matchId, gameId, endedAt: input.endedAt, results },
    rules.shards?.router ?? null,
    rules.limits ?? DEFAULT_LIMITS,
  );
  return {
    matchId: match.matchId,
    gameId: match.gameId,
    endedAt: match.endedAt,
    results: [...match.results]
      .sort((a, b) => a.index - b.index)
      .map((r) => ({ playerId: formatPlayerId(r.playerId), scoreDelta: r.scoreDelta, outcome: r.outcome })),
  };
}

/** A table's result type may be a wider object; settlement refuses unknown fields, so take ours. */
function pickResult(r: unknown): unknown {
  if (typeof r !== 'object' || r === null) return r;
  const { playerId, scoreDelta, outcome } = r as Partial<TablePlayerResult>;
  return { playerId, scoreDelta, outcome };
}

/** A game end without a Table object: validates and submits in one call. No state, so endedAt is required. */
export function endGame<R>(settlement: SettlementSubmitter<R>, gameId: string, input: EndGameInput & { readonly endedAt: Date | string }): Promise<R> {
  return settlement.submitSettlement(buildMatchResult(gameId, input, settlement));
}
