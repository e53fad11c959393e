import { sql, type Kysely } from 'kysely';
import type { PlayerStatus, ShardDatabase } from '../db/index.js';
import type { PlayerId } from '../routing/index.js';
import type { Player, PlayerStats } from './types.js';

export const PLAYER_COLUMNS = ['p.player_id', 'p.region', 'p.nickname', 'p.status', 'p.created_at', 'p.updated_at'] as const;

interface PlayerRow {
  player_id: PlayerId;
  region: string;
  nickname: string;
  status: PlayerStatus;
  created_at: Date;
  updated_at: Date;
}

interface StatsColumns {
  score: bigint | null;
  wins: number | null;
  losses: number | null;
  draws: number | null;
  games_played: number | null;
  last_match_id: string | null;
  stats_updated_at: Date | null;
}

export function toPlayer(row: PlayerRow): Player {
  return {
    id: row.player_id,
    region: row.region,
    nickname: row.nickname,
    status: row.status,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** A LEFT JOIN that found no stats row reads as a player who never played: all zeros. */
export function toStats(gameId: string, row: StatsColumns): PlayerStats {
  return {
    gameId,
    score: row.score ?? 0n,
    wins: row.wins ?? 0,
    losses: row.losses ?? 0,
    draws: row.draws ?? 0,
    gamesPlayed: row.games_played ?? 0,
    lastMatchId: row.last_match_id,
    updatedAt: row.stats_updated_at,
  };
}

/**
 * One statement for any number of players of one shard: `player_id = ANY($1)` keeps it a single
 * parameter and a single plan whatever the batch size. With a game, its stats come from the same
 * statement through a LEFT JOIN (the stats row lives on the player's shard).
 */
export async function selectPlayers(db: Kysely<ShardDatabase>, ids: readonly PlayerId[], gameId?: string): Promise<Player[]> {
  const anyId = sql<PlayerId>`any(${ids}::int8[])`;
  if (gameId === undefined) {
    const rows = await db.selectFrom('players as p').select(PLAYER_COLUMNS).where('p.player_id', '=', anyId).execute();
    return rows.map(toPlayer);
  }
  const rows = await db
    .selectFrom('players as p')
    .leftJoin('player_stats as s', (join) => join.onRef('s.player_id', '=', 'p.player_id').on('s.game_id', '=', gameId))
    .select(PLAYER_COLUMNS)
    .select(['s.score', 's.wins', 's.losses', 's.draws', 's.games_played', 's.last_match_id', 's.updated_at as stats_updated_at'])
    .where('p.player_id', '=', anyId)
    .execute();
  return rows.map((row) => ({ ...toPlayer(row), stats: toStats(gameId, row) }));
}
