import type { PlayerId } from '../routing/index.js';

/**
 * The narrow read the room view needs from accounts: a batch scatter-gather that runs one query
 * per shard touched. `Accounts#getPlayers` satisfies it; rooms depend on this shape, never on the
 * accounts implementation (the dependency points one way: game services -> account data).
 */
export interface PlayerDirectory {
  getPlayers(
    ids: readonly PlayerId[],
    opts: { gameId?: string; partial?: boolean } & DirectoryReadOptions,
  ): Promise<{
    players: { id: PlayerId; nickname: string; stats?: { score: bigint } }[];
    missing: PlayerId[];
    unavailable: { shardId: string; playerIds: PlayerId[] }[];
  }>;
}

/**
 * Where the directory's reads go (`Accounts#getPlayers` takes them): a shard's replica may answer
 * while its lag is within `maxLagMs` (docs/shard-map.md). Absent, the ShardSet's defaults apply.
 */
export interface DirectoryReadOptions {
  readFrom?: 'primary' | 'replica';
  maxLagMs?: number;
}

export interface RoomViewMember {
  readonly playerId: PlayerId;
  readonly nickname: string;
  /** The player's score in the view's game; 0n when they have not played it yet. */
  readonly score: bigint;
}

export interface RoomView {
  readonly zone: string;
  readonly roomId: string;
  readonly gameId: string;
  /** Seated players found in their shards, in seat-list order (by player id). */
  readonly members: readonly RoomViewMember[];
  /** Seated ids with no account row (e.g. deleted since they sat down). */
  readonly missing: readonly PlayerId[];
  /** Seated ids whose shard did not answer; the rest of the view is still served. */
  readonly unavailable: readonly { shardId: string; playerIds: readonly PlayerId[] }[];
}

type DirectoryAnswer = Awaited<ReturnType<PlayerDirectory['getPlayers']>>;

/** Ids per directory call: a default room (400) is one call; bigger rooms stay under batch limits. */
const ROOM_VIEW_BATCH = 500;

/**
 * Reads the seated players through the directory: one call per ROOM_VIEW_BATCH ids (one call for
 * any room of default size), calls in parallel, answers merged.
 */
export async function readPlayers(
  directory: PlayerDirectory,
  ids: readonly PlayerId[],
  opts: { gameId: string; partial: boolean } & DirectoryReadOptions,
): Promise<DirectoryAnswer> {
  const parts: Promise<DirectoryAnswer>[] = [];
  for (let i = 0; i < ids.length; i += ROOM_VIEW_BATCH) parts.push(directory.getPlayers(ids.slice(i, i + ROOM_VIEW_BATCH), opts));
  const answers = await Promise.all(parts);
  const unavailable = new Map<string, PlayerId[]>();
  for (const a of answers) {
    for (const u of a.unavailable) unavailable.set(u.shardId, [...(unavailable.get(u.shardId) ?? []), ...u.playerIds]);
  }
  return {
    players: answers.flatMap((a) => a.players),
    missing: answers.flatMap((a) => a.missing),
    unavailable: [...unavailable].map(([shardId, playerIds]) => ({ shardId, playerIds })),
  };
}

/** Joins the seat list with the directory's answer, keeping seat order. Pure. */
export function joinRoomView(head: { zone: string; roomId: string; gameId: string }, seated: readonly PlayerId[], answer: DirectoryAnswer): RoomView {
  const byId = new Map(answer.players.map((p) => [p.id, p]));
  const members: RoomViewMember[] = [];
  for (const id of seated) {
    const p = byId.get(id);
    if (p) members.push({ playerId: id, nickname: p.nickname, score: p.stats?.score ?? 0n });
  }
  const unavailable = answer.unavailable.map((u) => ({ shardId: u.shardId, playerIds: u.playerIds }));
  return { ...head, members, missing: answer.missing, unavailable };
}
