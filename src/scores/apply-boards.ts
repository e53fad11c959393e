import { sql, type Kysely } from 'kysely';
import type { ShardDatabase } from '../db/schema.js';
import { calendarPeriodOf, WEEKDAYS, type BoardOperator, type BoardPeriod } from './periods.js';

/** A part being applied, as the apply transaction holds it (structurally: src/settlement/apply.ts GoodPart). */
export interface BoardPart {
  readonly row: { readonly match_id: string; readonly game_id: string; readonly ended_at: Date };
  readonly results: readonly { readonly playerId: string; readonly scoreDelta: number }[];
}

/** A ledger row this transaction inserted (a result applied now, not before). */
export interface InsertedLedgerRow {
  readonly match_id: string;
  readonly player_id: string;
}

/** The boards of a batch's games and their seasons, as BOARDS_OF_LOCKED reads them. */
export interface BoardsAndSeasons {
  compacted: boolean;
  boards: { board_id: string; game_id: string; operator: BoardOperator; period: BoardPeriod; week_start: number }[] | null;
  seasons: { board_id: string; season_id: string; opened_at: string; closed_at: string | null }[] | null;
}

interface Fold {
  playerId: string;
  boardId: string;
  period: string;
  score: bigint;
  lastEndedAt: Date;
  lastMatchId: string;
}

interface Late {
  playerId: string;
  boardId: string;
  matchId: string;
  period: string;
  scoreDelta: number;
  endedAt: Date;
}

const byDecimalId = (a: string, b: string) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
const later = (a: { endedAt: Date; matchId: string }, b: { endedAt: Date; matchId: string }) =>
  a.endedAt.getTime() > b.endedAt.getTime() || (a.endedAt.getTime() === b.endedAt.getTime() && a.matchId > b.matchId);

/**
 * The defined boards of the pending parts' games and the seasons their results may fall in, as an
 * expression over `m`, the inbox rows the apply transaction locked (lockParts' first statement, so
 * reading them costs no round trip of its own). It also folds the pending count deltas of the shard
 * into its counts, unless another transaction is doing so (the deltas of this transaction are the
 * next one's to fold). The season rows are read FOR SHARE, so closeSeason waits for this
 * transaction and nothing enters a season after its close has returned.
 */
export const BOARDS_OF_LOCKED = sql<BoardsAndSeasons>`(
  SELECT json_build_object(
    'compacted', shardline_compact_board_counts(),
    'boards', (SELECT json_agg(b ORDER BY b.board_id) FROM (
      SELECT board_id, game_id, operator, period, week_start FROM leaderboard_boards
      WHERE game_id IN (SELECT game_id FROM m WHERE status = 'pending')) b),
    'seasons', (SELECT json_agg(s ORDER BY s.board_id, s.season_id) FROM (
      SELECT board_id, season_id, opened_at, closed_at FROM leaderboard_seasons
      WHERE board_id IN (SELECT board_id FROM leaderboard_boards
                         WHERE game_id IN (SELECT game_id FROM m WHERE status = 'pending') AND period = 'season')
        AND opened_at <= (SELECT max(ended_at) FROM m WHERE status = 'pending')
        AND (closed_at IS NULL OR closed_at > (SELECT min(ended_at) FROM m WHERE status = 'pending'))
      ORDER BY board_id, season_id FOR SHARE) s)))`;

/**
 * Moves every defined board of the applied matches' games, inside the apply transaction, for the
 * ledger rows this transaction inserted only: so a board moves exactly when the ledger and stats do,
 * once (the plain game id's board follows player_stats by trigger, migration 0012). `defs`: what
 * BOARDS_OF_LOCKED read at the start of the transaction.
 *
 * A result counts in the period its `endedAt` falls in (UTC). A season board counts it in the
 * season whose [openedAt, closedAt) holds `endedAt`, if that season is still open; a result of a
 * season closed before it arrived counts on no board and is recorded in leaderboard_late_results;
 * a result outside every season counts on none. Calendar periods never close: a late result counts
 * in its own (past) period.
 *
 * One round trip when the games have boards, none when they have none.
 */
export async function applyToBoards(
  trx: Kysely<ShardDatabase>,
  defs: BoardsAndSeasons | null,
  parts: readonly BoardPart[],
  inserted: readonly InsertedLedgerRow[],
): Promise<void> {
  const boards = defs?.boards ?? null;
  const seasons = defs?.seasons ?? null;
  if (inserted.length === 0 || !boards || boards.length === 0) return;
  const fresh = new Set(inserted.map((r) => `${r.match_id}\u0000${r.player_id}`));

  const folds = new Map<string, Fold>();
  const late: Late[] = [];
  for (const p of parts) {
    const gameBoards = boards.filter((b) => b.game_id === p.row.game_id);
    if (gameBoards.length === 0) continue;
    const endedAt = p.row.ended_at;
    for (const b of gameBoards) {
      let period: string;
      let closed = false;
      if (b.period === 'season') {
        const s = (seasons ?? []).find(
          (x) =>
            x.board_id === b.board_id && Date.parse(x.opened_at) <= endedAt.getTime() && (x.closed_at === null || endedAt.getTime() < Date.parse(x.closed_at)),
        );
        if (!s) continue;
        period = s.season_id;
        closed = s.closed_at !== null;
      } else {
        period = calendarPeriodOf(b.period, endedAt, WEEKDAYS[b.week_start - 1]);
      }
      for (const r of p.results) {
        if (!fresh.has(`${p.row.match_id}\u0000${r.playerId}`)) continue;
        if (closed) {
          late.push({ playerId: r.playerId, boardId: b.board_id, matchId: p.row.match_id, period, scoreDelta: r.scoreDelta, endedAt });
          continue;
        }
        const key = `${r.playerId}\u0000${b.board_id}\u0000${period}`;
        const score = BigInt(r.scoreDelta);
        const at = { endedAt, matchId: p.row.match_id };
        const f = folds.get(key);
        if (!f) {
          folds.set(key, { playerId: r.playerId, boardId: b.board_id, period, score, lastEndedAt: endedAt, lastMatchId: p.row.match_id });
          continue;
        }
        const isLater = later(at, { endedAt: f.lastEndedAt, matchId: f.lastMatchId });
        if (b.operator === 'sum') f.score += score;
        else if (b.operator === 'best') f.score = score > f.score ? score : f.score;
        else if (isLater) f.score = score;
        if (isLater) {
          f.lastEndedAt = endedAt;
          f.lastMatchId = p.row.match_id;
        }
      }
    }
  }
  if (folds.size === 0 && late.length === 0) return;

  // Sorted like the stats rows, so concurrent batches lock board rows in one order.
  const rows = [...folds.values()].sort(
    (a, b) => byDecimalId(a.playerId, b.playerId) || (a.boardId < b.boardId ? -1 : a.boardId > b.boardId ? 1 : a.period < b.period ? -1 : 1),
  );
  await sql`
    WITH late AS (
      INSERT INTO leaderboard_late_results (player_id, board_id, match_id, period, score_delta, ended_at, reason)
      SELECT t.player_id, t.board_id, t.match_id, t.period, t.score_delta, t.ended_at, 'season-closed'
      FROM unnest(${late.map((l) => l.playerId)}::bigint[], ${late.map((l) => l.boardId)}::text[], ${late.map((l) => l.matchId)}::text[],
        ${late.map((l) => l.period)}::text[], ${late.map((l) => l.scoreDelta)}::int[], ${late.map((l) => l.endedAt)}::timestamptz[])
        AS t(player_id, board_id, match_id, period, score_delta, ended_at)
      ON CONFLICT DO NOTHING)
    INSERT INTO leaderboard_scores AS x (player_id, board_id, period, score, active, last_ended_at, last_match_id, updated_at)
    SELECT t.player_id, t.board_id, t.period, t.score, p.status = 'active', t.ended_at, t.match_id, now()
    FROM unnest(${rows.map((r) => r.playerId)}::bigint[], ${rows.map((r) => r.boardId)}::text[], ${rows.map((r) => r.period)}::text[],
      ${rows.map((r) => r.score.toString())}::bigint[], ${rows.map((r) => r.lastEndedAt)}::timestamptz[], ${rows.map((r) => r.lastMatchId)}::text[])
      WITH ORDINALITY AS t(player_id, board_id, period, score, ended_at, match_id, ord)
    JOIN players p ON p.player_id = t.player_id
    ORDER BY t.ord
    ON CONFLICT (player_id, board_id, period) DO UPDATE SET
      score = CASE (SELECT b.operator FROM leaderboard_boards b WHERE b.board_id = x.board_id)
        WHEN 'sum' THEN x.score + EXCLUDED.score
        WHEN 'best' THEN greatest(x.score, EXCLUDED.score)
        ELSE CASE WHEN (EXCLUDED.last_ended_at, EXCLUDED.last_match_id) > (x.last_ended_at, x.last_match_id) THEN EXCLUDED.score ELSE x.score END
      END,
      last_match_id = CASE WHEN (EXCLUDED.last_ended_at, EXCLUDED.last_match_id) > (x.last_ended_at, x.last_match_id)
        THEN EXCLUDED.last_match_id ELSE x.last_match_id END,
      last_ended_at = greatest(x.last_ended_at, EXCLUDED.last_ended_at),
      updated_at = EXCLUDED.updated_at`.execute(trx);
}
