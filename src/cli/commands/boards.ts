import type { Command } from 'commander';
import { ShardSet } from '../../db/index.js';
import { ValidationError } from '../../errors/index.js';
import { Leaderboards } from '../../scores/index.js';
import { BOARD_OPERATORS, BOARD_PERIODS, WEEKDAYS, validateOperator, validatePeriodKind, validateWeekday } from '../../scores/periods.js';
import { env, formatTable, loadMap } from '../context.js';

interface MapFlags {
  map?: string;
}

/** Leaderboards on the map's shards, closed after `fn`; a map that misplaces buckets is refused first. */
async function withBoards<T>(flags: MapFlags, fn: (boards: Leaderboards) => Promise<T>): Promise<T> {
  const map = await loadMap(flags.map);
  const appMigrations = env.SHARDLINE_APP_MIGRATIONS || undefined;
  const shards = new ShardSet(map, { applicationName: 'shardline-cli', ...(appMigrations ? { appMigrations } : {}) });
  try {
    await shards.verifyAll();
    return await fn(new Leaderboards(shards));
  } finally {
    await shards.close();
  }
}

const mapOption = (cmd: Command) => cmd.option('--map <file>', 'shard map file (default: $SHARDLINE_MAP, then shardmap/local.json)');

function at(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const d = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}T.*(Z|[+-]\d{2}:?\d{2})$/.test(value) || Number.isNaN(d.getTime())) {
    throw new ValidationError('--at', 'must be an ISO 8601 timestamp with a time zone, e.g. 2026-12-01T00:00:00Z');
  }
  return d;
}

export function registerBoards(program: Command): void {
  const boards = program.command('boards').description('leaderboard boards: define, list, open and close seasons (docs/leaderboards.md)');

  mapOption(
    boards
      .command('define <boardId>')
      .description('define a board <game>:<name> on every shard (the same definition again is a no-op; a different one is refused)')
      .requiredOption('--operator <op>', `how scores fold: ${BOARD_OPERATORS.join(', ')}`)
      .requiredOption('--period <period>', `when it starts afresh: ${BOARD_PERIODS.join(', ')}`)
      .option('--week-start <day>', `first day of a week, weekly boards (${WEEKDAYS.join(', ')}; default monday)`),
  ).action(async (boardId: string, flags: MapFlags & { operator: string; period: string; weekStart?: string }) => {
    const operator = validateOperator(flags.operator, '--operator');
    const period = validatePeriodKind(flags.period, '--period');
    const weekStart = flags.weekStart === undefined ? undefined : validateWeekday(flags.weekStart, '--week-start');
    const def = await withBoards(flags, (b) => b.defineBoard({ boardId, operator, period, ...(weekStart ? { weekStart } : {}) }));
    console.log(JSON.stringify(def, null, 2));
  });

  mapOption(
    boards
      .command('list')
      .description('every defined board, with its seasons')
      .option('--game <gameId>', 'only the boards of this game')
      .option('--json', 'print JSON instead of a table'),
  ).action(async (flags: MapFlags & { game?: string; json?: boolean }) => {
    const list = await withBoards(flags, (b) => b.listBoards(flags.game === undefined ? {} : { gameId: flags.game }));
    if (flags.json) {
      console.log(JSON.stringify(list, null, 2));
      return;
    }
    console.log(
      formatTable(
        ['board', 'operator', 'period', 'week start', 'seasons'],
        list.map((b) => [
          b.boardId,
          b.operator,
          b.period,
          b.period === 'weekly' ? b.weekStart : '-',
          b.period === 'season' ? b.seasons.map((s) => `${s.seasonId}${s.closedAt === null ? ' (open)' : ''}`).join(', ') || '(none yet)' : '-',
        ]),
      ),
    );
  });

  const season = boards.command('season').description('open or close a season of a season board, on every shard');
  for (const verb of ['open', 'close'] as const) {
    mapOption(
      season
        .command(`${verb} <boardId> <seasonId>`)
        .description(
          verb === 'open'
            ? 'open a season: results that end from then on count in it (one open season per board)'
            : 'close a season: its scores are final; results of it that arrive later count on no board (recorded)',
        )
        .option('--at <timestamp>', 'when (ISO 8601 with a time zone; default now)'),
    ).action(async (boardId: string, seasonId: string, flags: MapFlags & { at?: string }) => {
      const when = at(flags.at);
      const options = when === undefined ? {} : { at: when };
      const info = await withBoards(flags, (b) => (verb === 'open' ? b.openSeason(boardId, seasonId, options) : b.closeSeason(boardId, seasonId, options)));
      console.log(JSON.stringify({ boardId, ...info }, null, 2));
    });
  }
}
