import { sql, type Kysely } from 'kysely';
import { BoardConflictError, SeasonStateError, UnknownBoardError, ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import type { ShardDatabase, ShardSet } from '../db/index.js';
import { validateGameId } from '../accounts/validation.js';
import { NAME, WEEKDAYS, validateOperator, validatePeriodKind, validateWeekday, type BoardOperator, type BoardPeriod, type Weekday } from './periods.js';

/** A board as defined: the same on every shard. */
export interface BoardDefinition {
  /** `<game>:<name>`. */
  boardId: string;
  gameId: string;
  name: string;
  operator: BoardOperator;
  period: BoardPeriod;
  /** First day of a week (weekly boards; 'monday' elsewhere). */
  weekStart: Weekday;
}

export interface DefineBoardInput {
  /** `<game>:<name>`: the game id, a colon, a name of letters, digits, `_`, `.`, `-` (at most 64). */
  boardId: string;
  operator: BoardOperator;
  period: BoardPeriod;
  /** Weekly boards only (default 'monday'). */
  weekStart?: Weekday;
}

export interface SeasonInfo {
  seasonId: string;
  openedAt: Date;
  /** Null while open. */
  closedAt: Date | null;
}

export interface BoardListing extends BoardDefinition {
  /** Season boards: every season, oldest first. Empty for other boards. */
  seasons: SeasonInfo[];
}

interface BoardRow {
  board_id: string;
  game_id: string;
  name: string;
  operator: BoardOperator;
  period: BoardPeriod;
  week_start: number;
}

interface SeasonRow {
  board_id: string;
  season_id: string;
  opened_at: Date;
  closed_at: Date | null;
}

/** `<game>:<name>` split at its last colon (a game id may hold colons, a board name may not). */
export function parseBoardId(value: unknown, field = 'boardId'): { boardId: string; gameId: string; name: string } {
  if (typeof value !== 'string') throw new ValidationError(field, `must be a board id '<game>:<name>', got ${showValue(value)}`);
  const at = value.lastIndexOf(':');
  if (at <= 0) throw new ValidationError(field, `must be a board id '<game>:<name>', got ${showValue(value)}`);
  const gameId = validateGameId(value.slice(0, at), field);
  const name = value.slice(at + 1);
  if (!NAME.test(name)) throw new ValidationError(field, `board name ${showValue(name)} must be 1 to 64 letters, digits, '_', '.', '-'`);
  return { boardId: value, gameId, name };
}

export function validateSeasonId(value: unknown, field = 'seasonId'): string {
  if (typeof value !== 'string' || !NAME.test(value))
    throw new ValidationError(field, `must be 1 to 64 letters, digits, '_', '.', '-', got ${showValue(value)}`);
  return value;
}

export function definitionOf(row: BoardRow): BoardDefinition {
  return {
    boardId: row.board_id,
    gameId: row.game_id,
    name: row.name,
    operator: row.operator,
    period: row.period,
    weekStart: WEEKDAYS[row.week_start - 1] ?? 'monday',
  };
}

const seasonOf = (r: SeasonRow): SeasonInfo => ({ seasonId: r.season_id, openedAt: r.opened_at, closedAt: r.closed_at });

/**
 * Board definitions and seasons: rows written to every shard, so the worker applying a match and
 * every reader find the same boards locally. The first shard of the map decides (a conflicting
 * definition, a second open season, the time a season opened or closed); the others then get the
 * very same row. Every call is idempotent: after a shard was down, calling it again completes it.
 */
export class BoardRegistry {
  constructor(private readonly shards: ShardSet) {}

  async define(input: DefineBoardInput): Promise<BoardDefinition> {
    if (typeof input !== 'object' || input === null) throw new ValidationError('input', `must be an object, got ${showValue(input)}`);
    for (const key of Object.keys(input)) {
      if (!['boardId', 'operator', 'period', 'weekStart'].includes(key))
        throw new ValidationError(key, 'is not a board field (boardId, operator, period, weekStart)');
    }
    const { boardId, gameId, name } = parseBoardId(input.boardId);
    const operator = validateOperator(input.operator);
    const period = validatePeriodKind(input.period);
    const weekStart = input.weekStart === undefined ? 'monday' : validateWeekday(input.weekStart);
    if (period !== 'weekly' && weekStart !== 'monday') throw new ValidationError('weekStart', 'applies to weekly boards only');
    const wanted: BoardDefinition = { boardId, gameId, name, operator, period, weekStart };
    const write = async (shardId: string) => {
      const row = await this.shards.withShard(shardId, (db) => insertBoard(db, wanted));
      const stored = definitionOf(row);
      if (stored.operator !== operator || stored.period !== period || stored.weekStart !== weekStart) {
        throw new BoardConflictError(boardId, shardId, stored, wanted);
      }
    };
    const [first, ...rest] = this.shards.shards.map((s) => s.id);
    if (first === undefined) throw new ValidationError('shards', 'the map has no shards');
    await write(first);
    await settleAllOrThrow(rest.map(write));
    return wanted;
  }

  /** Every board (of one game), from the first shard of the map. */
  async list(gameId?: string): Promise<BoardListing[]> {
    const game = gameId === undefined ? null : validateGameId(gameId);
    return this.onFirst(async (db) => {
      const boards = await sql<BoardRow>`
        SELECT board_id, game_id, name, operator, period, week_start FROM leaderboard_boards
        WHERE ${game === null ? sql`true` : sql`game_id = ${game}`} ORDER BY board_id`.execute(db);
      const seasons = await sql<SeasonRow>`
        SELECT board_id, season_id, opened_at, closed_at FROM leaderboard_seasons
        WHERE board_id = ANY(${boards.rows.map((b) => b.board_id)}::text[]) ORDER BY board_id, opened_at, season_id`.execute(db);
      return boards.rows.map((b) => ({ ...definitionOf(b), seasons: seasons.rows.filter((s) => s.board_id === b.board_id).map(seasonOf) }));
    });
  }

  /** One board's definition, or null when it has none (first shard of the map). */
  async get(boardId: string): Promise<BoardDefinition | null> {
    return this.onFirst(async (db) => {
      const r = await sql<BoardRow>`
        SELECT board_id, game_id, name, operator, period, week_start FROM leaderboard_boards WHERE board_id = ${boardId}`.execute(db);
      return r.rows[0] ? definitionOf(r.rows[0]) : null;
    });
  }

  /** The season a season board reads by default: the open one, else the last opened; null before the first. */
  async currentSeason(boardId: string): Promise<SeasonInfo | null> {
    return this.onFirst(async (db) => {
      const r = await sql<SeasonRow>`
        SELECT board_id, season_id, opened_at, closed_at FROM leaderboard_seasons WHERE board_id = ${boardId}
        ORDER BY closed_at IS NULL DESC, opened_at DESC, season_id DESC LIMIT 1`.execute(db);
      return r.rows[0] ? seasonOf(r.rows[0]) : null;
    });
  }

  /**
   * Opens a season at `at` (default now): results that ended from then on count in it until it
   * closes. Only one season of a board is open at a time; reopening a closed season is refused
   * (it would change past results). Opening the open season again returns it unchanged.
   */
  async openSeason(boardId: string, seasonId: string, at: Date = new Date()): Promise<SeasonInfo> {
    const board = await this.seasonBoard(boardId);
    const season = validateSeasonId(seasonId);
    if (!(at instanceof Date) || !Number.isFinite(at.getTime())) throw new ValidationError('at', `must be a valid Date, got ${showValue(at)}`);
    const [first, ...rest] = this.shards.shards.map((s) => s.id);
    const decided = await this.shards.withShard(first!, async (db) => {
      const r = await sql<SeasonRow & { other: string | null }>`
        WITH ins AS (
          INSERT INTO leaderboard_seasons (board_id, season_id, opened_at)
          SELECT ${board.boardId}, ${season}, ${at}
          WHERE NOT EXISTS (SELECT 1 FROM leaderboard_seasons WHERE board_id = ${board.boardId} AND (season_id = ${season} OR closed_at IS NULL))
          RETURNING board_id, season_id, opened_at, closed_at)
        SELECT board_id, season_id, opened_at, closed_at, NULL AS other FROM ins
        UNION ALL
        SELECT board_id, season_id, opened_at, closed_at, NULL FROM leaderboard_seasons WHERE board_id = ${board.boardId} AND season_id = ${season}
        UNION ALL
        SELECT NULL, NULL, NULL, NULL, season_id FROM leaderboard_seasons
        WHERE board_id = ${board.boardId} AND closed_at IS NULL AND season_id <> ${season}`.execute(db);
      return r.rows;
    });
    const mine = decided.find((r) => r.season_id === season);
    const other = decided.find((r) => r.other !== null)?.other;
    if (!mine) throw new SeasonStateError(board.boardId, season, 'other-season-open', `season ${showValue(other)} is open; close it first`);
    if (mine.closed_at !== null)
      throw new SeasonStateError(board.boardId, season, 'closed', `closed at ${mine.closed_at.toISOString()}; a closed season never reopens`);
    const opened = mine.opened_at;
    await settleAllOrThrow(
      rest.map((shardId) =>
        this.shards.withShard(shardId, async (db) => {
          await sql`INSERT INTO leaderboard_seasons (board_id, season_id, opened_at) VALUES (${board.boardId}, ${season}, ${opened})
                    ON CONFLICT (board_id, season_id) DO NOTHING`.execute(db);
        }),
      ),
    );
    return seasonOf(mine);
  }

  /**
   * Closes a season at `at` (default now): from then on its scores never change. A result that
   * ended inside it but arrives after the close counts on no board and is recorded in
   * leaderboard_late_results. Closing it again returns it unchanged (the first close time stays).
   */
  async closeSeason(boardId: string, seasonId: string, at: Date = new Date()): Promise<SeasonInfo> {
    const board = await this.seasonBoard(boardId);
    const season = validateSeasonId(seasonId);
    if (!(at instanceof Date) || !Number.isFinite(at.getTime())) throw new ValidationError('at', `must be a valid Date, got ${showValue(at)}`);
    const [first, ...rest] = this.shards.shards.map((s) => s.id);
    const row = await this.shards.withShard(first!, async (db) => {
      const r = await sql<SeasonRow>`
        UPDATE leaderboard_seasons SET closed_at = coalesce(closed_at, greatest(opened_at, ${at}::timestamptz))
        WHERE board_id = ${board.boardId} AND season_id = ${season}
        RETURNING board_id, season_id, opened_at, closed_at`.execute(db);
      return r.rows[0];
    });
    if (!row) throw new SeasonStateError(board.boardId, season, 'not-found', 'was never opened');
    await settleAllOrThrow(
      rest.map((shardId) =>
        this.shards.withShard(shardId, async (db) => {
          // The UPDATE waits for apply transactions holding the season row FOR SHARE: once this
          // returns, no shard counts another result in the season.
          await sql`INSERT INTO leaderboard_seasons (board_id, season_id, opened_at, closed_at)
                    VALUES (${board.boardId}, ${season}, ${row.opened_at}, ${row.closed_at})
                    ON CONFLICT (board_id, season_id) DO UPDATE SET closed_at = EXCLUDED.closed_at
                    WHERE leaderboard_seasons.closed_at IS NULL`.execute(db);
        }),
      ),
    );
    return seasonOf(row);
  }

  private async seasonBoard(boardId: string): Promise<BoardDefinition> {
    const { boardId: id } = parseBoardId(boardId);
    const board = await this.get(id);
    if (!board) throw new UnknownBoardError(id);
    if (board.period !== 'season') throw new UnknownBoardError(id, `is a ${board.period} board, not a season board`);
    return board;
  }

  private onFirst<T>(fn: (db: Kysely<ShardDatabase>) => Promise<T>): Promise<T> {
    const first = this.shards.shards[0];
    if (!first) throw new ValidationError('shards', 'the map has no shards');
    return this.shards.withShard(first.id, fn);
  }
}

async function insertBoard(db: Kysely<ShardDatabase>, d: BoardDefinition): Promise<BoardRow> {
  for (;;) {
    const row = await insertBoardOnce(db, d);
    // Empty only when a concurrent define committed the row after this statement's snapshot: read again.
    if (row) return row;
  }
}

async function insertBoardOnce(db: Kysely<ShardDatabase>, d: BoardDefinition): Promise<BoardRow | undefined> {
  const r = await sql<BoardRow>`
    WITH ins AS (
      INSERT INTO leaderboard_boards (board_id, game_id, name, operator, period, week_start)
      VALUES (${d.boardId}, ${d.gameId}, ${d.name}, ${d.operator}, ${d.period}, ${WEEKDAYS.indexOf(d.weekStart) + 1})
      ON CONFLICT (board_id) DO NOTHING
      RETURNING board_id, game_id, name, operator, period, week_start)
    SELECT * FROM ins
    UNION ALL
    SELECT board_id, game_id, name, operator, period, week_start FROM leaderboard_boards WHERE board_id = ${d.boardId}`.execute(db);
  return r.rows[0];
}

/** Waits for every write, then throws the first failure: no write is left running behind an error. */
async function settleAllOrThrow(writes: readonly Promise<unknown>[]): Promise<void> {
  const settled = await Promise.allSettled(writes);
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
}
