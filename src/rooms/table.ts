import type { Outcome } from '../db/schema.js';
import { ValidationError } from '../errors/index.js';
import { formatPlayerId, parsePlayerId, type PlayerId } from '../routing/index.js';
import type { PlayerIdInput } from './types.js';

export interface TablePlayerResult {
  readonly playerId: PlayerIdInput;
  readonly scoreDelta: number;
  readonly outcome: Outcome;
}

/** The settlement input, in the shape `SettlementClient#submitSettlement` takes. */
export interface TableSettlement {
  matchId: string;
  gameId: string;
  endedAt: Date | string;
  results: { playerId: PlayerId | string; scoreDelta: number; outcome: Outcome }[];
}

/** What a table needs from settlement; `SettlementClient` satisfies it. */
export interface SettlementSubmitter<R = unknown> {
  submitSettlement(input: TableSettlement): Promise<R>;
}

export interface TableOptions<R> {
  readonly tableId: string;
  readonly gameId: string;
  readonly settlement: SettlementSubmitter<R>;
}

export interface EndGameInput {
  /**
   * Stable id of this match: a retry after a crash must reuse it, which is what makes settlement
   * exactly once in effect.
   */
  readonly matchId: string;
  readonly results: readonly TablePlayerResult[];
  /** Default: now. */
  readonly endedAt?: Date | string;
}

/** The ledger's score_delta is a Postgres integer. */
const INT4_MAX = 2_147_483_647;
const OUTCOMES: ReadonlySet<string> = new Set(['win', 'loss', 'draw']);

/**
 * A game table: who sits at it, and its game end handed to settlement. Thin on purpose: the game
 * logic decides the results; the table checks they describe exactly the players seated and submits.
 */
export class Table<R = unknown> {
  readonly tableId: string;
  readonly gameId: string;
  private readonly settlement: SettlementSubmitter<R>;
  private readonly seated = new Set<PlayerId>();

  constructor(options: TableOptions<R>) {
    if (!options.tableId) throw new ValidationError('tableId', 'required');
    if (!options.gameId) throw new ValidationError('gameId', 'required');
    this.tableId = options.tableId;
    this.gameId = options.gameId;
    this.settlement = options.settlement;
  }

  get players(): readonly PlayerId[] {
    return [...this.seated];
  }

  sit(playerId: PlayerIdInput): void {
    this.seated.add(parsePlayerId(playerId));
  }

  stand(playerId: PlayerIdInput): void {
    this.seated.delete(parsePlayerId(playerId));
  }

  /** Builds the match result for the players at the table and submits it to settlement. */
  async end(input: EndGameInput): Promise<R> {
    const match = buildMatchResult(this.gameId, input);
    const named = new Set(match.results.map((r) => r.playerId));
    for (const id of this.seated) {
      if (!named.has(formatPlayerId(id))) throw new ValidationError('results', `no result for seated player ${id}`);
    }
    for (const [i, r] of match.results.entries()) {
      if (!this.seated.has(parsePlayerId(r.playerId))) {
        throw new ValidationError(`results.${i}.playerId`, `player ${r.playerId} is not seated at table ${this.tableId}`);
      }
    }
    return this.settlement.submitSettlement(match);
  }
}

/** Validates a game end and shapes it as settlement input (player ids as decimal strings). Pure. */
export function buildMatchResult(gameId: string, input: EndGameInput): TableSettlement {
  if (typeof input.matchId !== 'string' || input.matchId.length === 0 || input.matchId.length > 200) {
    throw new ValidationError('matchId', 'a non-empty string of at most 200 characters');
  }
  if (input.results.length === 0) throw new ValidationError('results', 'at least one player result');
  const seen = new Set<string>();
  const results = input.results.map((r, i) => {
    const playerId = formatPlayerId(parsePlayerId(r.playerId));
    if (seen.has(playerId)) throw new ValidationError(`results.${i}.playerId`, `player ${playerId} appears twice`);
    seen.add(playerId);
    if (!Number.isInteger(r.scoreDelta) || Math.abs(r.scoreDelta) > INT4_MAX) {
      throw new ValidationError(`results.${i}.scoreDelta`, `an integer between -${INT4_MAX} and ${INT4_MAX}`);
    }
    if (!OUTCOMES.has(r.outcome)) throw new ValidationError(`results.${i}.outcome`, 'win, loss or draw');
    return { playerId, scoreDelta: r.scoreDelta, outcome: r.outcome };
  });
  return { matchId: input.matchId, gameId, endedAt: input.endedAt ?? new Date(), results };
}

/** A game end without a Table object: validates and submits in one call. */
export function endGame<R>(settlement: SettlementSubmitter<R>, gameId: string, input: EndGameInput): Promise<R> {
  return settlement.submitSettlement(buildMatchResult(gameId, input));
}
