import { sql } from 'kysely';
import type { ShardSet } from '../db/index.js';
import type { RoomService } from '../rooms/index.js';

export interface ShardTotals {
  ledgerRows: number;
  ledgerDelta: bigint;
  statsScore: bigint;
  gamesPlayed: number;
}

/** Sums each shard's ledger and stats (scatter-gather: one query per shard, never a join across). */
export async function shardTotals(shards: ShardSet, gameId: string): Promise<ShardTotals> {
  const per = await Promise.all(
    shards.shards.map((s) =>
      shards.withShard(s.id, async (db) => {
        const r = await sql<{ rows: bigint; delta: bigint | null; score: bigint | null; games: bigint | null }>`
          SELECT (SELECT count(*) FROM settlement_ledger WHERE game_id = ${gameId}) AS rows,
                 (SELECT sum(score_delta)::bigint FROM settlement_ledger WHERE game_id = ${gameId}) AS delta,
                 (SELECT sum(score)::bigint FROM player_stats WHERE game_id = ${gameId}) AS score,
                 (SELECT sum(games_played)::bigint FROM player_stats WHERE game_id = ${gameId}) AS games`.execute(db);
        return r.rows[0]!;
      }),
    ),
  );
  return per.reduce<ShardTotals>(
    (t, r) => ({
      ledgerRows: t.ledgerRows + Number(r.rows),
      ledgerDelta: t.ledgerDelta + (r.delta ?? 0n),
      statsScore: t.statsScore + (r.score ?? 0n),
      gamesPlayed: t.gamesPlayed + Number(r.games ?? 0n),
    }),
    { ledgerRows: 0, ledgerDelta: 0n, statsScore: 0n, gamesPlayed: 0 },
  );
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export async function consistencyChecks(
  shards: ShardSet,
  rooms: RoomService,
  zones: readonly string[],
  gameId: string,
  submitted: { results: number; delta: bigint },
): Promise<Check[]> {
  const t = await shardTotals(shards, gameId);
  const checks: Check[] = [
    {
      name: 'every submitted result applied once',
      ok: t.ledgerRows === submitted.results,
      detail: `${t.ledgerRows} ledger rows for ${submitted.results} results submitted`,
    },
    {
      name: 'sum of applied deltas = sum submitted',
      ok: t.ledgerDelta === submitted.delta,
      detail: `${t.ledgerDelta} on the shards, ${submitted.delta} submitted`,
    },
    {
      name: 'stats agree with the ledger',
      ok: t.statsScore === t.ledgerDelta && t.gamesPlayed === t.ledgerRows,
      detail: `score sum ${t.statsScore}, games played ${t.gamesPlayed}`,
    },
  ];
  let over = 0;
  let roomsSeen = 0;
  for (const zone of zones) {
    const snap = await rooms.listRooms(zone);
    for (const r of snap.rooms) {
      roomsSeen++;
      const members = await rooms.members(r.roomId);
      if (r.count > r.capacity || members.length > r.capacity || members.length !== r.count) over++;
    }
  }
  checks.push({ name: 'no room above capacity, counts = members', ok: over === 0, detail: `${roomsSeen} rooms checked, ${over} wrong` });
  return checks;
}
