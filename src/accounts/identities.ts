import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { IdentityNotLinkedError, IdentityTakenError, LastIdentityError, PlayerNotFoundError, ShardUnavailableError } from '../errors/index.js';
import type { PlayerStatus, ShardSet } from '../db/index.js';
import type { IdentityRequestState, IdentityState } from '../db/schema.js';
import { ownerOfBucket } from '../routing/key-bucket.js';
import type { PlayerId } from '../routing/index.js';
import type { IdentityKey } from './identity-key.js';
import {
  beginUnlink,
  createLinkedPlayer,
  deleteDirectory,
  fenceRequest,
  linkToPlayer,
  moveDirectory,
  readDirectory,
  readHolder,
  requestState,
  reserve,
  unlinkFromPlayer,
  unsettledRows,
  type DirectoryRow,
} from './identity-store.js';
import { selectPlayers } from './player-rows.js';
import { onShard } from './shard-calls.js';
import type { IdentityResolution, Player } from './types.js';

/**
 * Where a registering (linking, unlinking) process stands: the test hook of the crash tests is
 * called after each one. One list, so the protocol and the tests name the same steps.
 */
export const IDENTITY_STEPS = ['minted', 'reserved', 'created', 'linked', 'confirmed', 'unlinking', 'removed', 'released'] as const;
export type IdentityStep = (typeof IDENTITY_STEPS)[number];
export type IdentityStepHook = (step: IdentityStep) => void | Promise<void>;

/** What settling a directory row that is not `confirmed` came to. */
type Settled = 'confirmed' | 'released' | 'undecided';

// Bounds the protocol's loops: each turn follows another process's committed step, so running out
// means something keeps undoing the work (it never happens in a working deployment).
const MAX_TURNS = 50;

export interface RegisterInput {
  key: IdentityKey;
  requestId: string;
  region: string;
  nickname: string;
  status: PlayerStatus;
}

/**
 * The identity protocol (docs/identities.md). The directory row on the identity's shard says who
 * holds the identity; the player's shard records each request's outcome, and is the truth the
 * directory is settled from: a row that is not `confirmed` is settled by reading the outcome of
 * its request on its player's shard, and after the lease by recording `aborted` there first when
 * it has none, so a late step of a stalled process can never take effect.
 */
export class IdentityProtocol {
  constructor(
    private readonly shards: ShardSet,
    private readonly leaseMs: number,
    private readonly hook: IdentityStepHook | undefined,
  ) {}

  private async step(step: IdentityStep): Promise<void> {
    if (this.hook) await this.hook(step);
  }

  private identityShard(key: IdentityKey): string {
    return ownerOfBucket(this.shards.map, key.bucket).id;
  }

  // Each step is one statement or transaction on one shard: refused by a shard that lost the bucket
  // (its fence), it was rolled back, so it runs again on the owner once routing is read again.
  private onIdentityShard<T>(key: IdentityKey, fn: Parameters<typeof onShard<T>>[3]): Promise<T> {
    return this.shards.retryOnMove(async () => {
      await this.shards.routerReady();
      return onShard(this.shards, this.identityShard(key), [], fn);
    });
  }

  private onPlayerShard<T>(playerId: PlayerId, fn: Parameters<typeof onShard<T>>[3]): Promise<T> {
    return this.shards.retryOnMove(async () => onShard(this.shards, (await this.shards.routerReady()).shardFor(playerId).id, [playerId], fn));
  }

  /** Reserves, or reads the row that holds the identity (reading again past a concurrent insert). */
  private async reserveOrRead(key: IdentityKey, playerId: PlayerId, requestId: string): Promise<{ inserted: boolean; row: DirectoryRow }> {
    for (let turn = 0; turn < MAX_TURNS; turn++) {
      const r = await this.onIdentityShard(key, (db) => reserve(db, key, playerId, requestId));
      if (r.row) return { inserted: r.inserted, row: r.row };
      // A concurrent reservation committed after our snapshot (or was released at once): look again.
    }
    throw new Error('identity reservation kept racing');
  }

  /** The directory row: the hot path reads the holder alone, and only a row being settled again with its age. */
  private async lookupRow(key: IdentityKey): Promise<DirectoryRow | null> {
    await this.shards.routerReady();
    const shardId = this.identityShard(key);
    // withShard has checked the shard (identity, schema) before the statement goes on its pool.
    const holder = await onShard(this.shards, shardId, [], () => readHolder(this.shards.pool(shardId), key));
    if (holder === null || holder.state === 'confirmed') return holder && { ...holder, ageMs: 0 };
    return this.onIdentityShard(key, (db) => readDirectory(db, key));
  }

  /** The player id the identity leads to now, settling a row that is not confirmed. */
  async lookup(key: IdentityKey): Promise<PlayerId | null> {
    const row = await this.lookupRow(key);
    if (!row) return null;
    switch (row.state) {
      case 'confirmed':
        return row.playerId;
      case 'pending':
        // Not the player's until its shard says the request linked it.
        return (await this.settle(key, row, row.ageMs >= this.leaseMs)) === 'confirmed' ? row.playerId : null;
      case 'unlinking':
        // Still the player's until its shard says the unlink removed it.
        return (await this.settle(key, row, row.ageMs >= this.leaseMs)) === 'released' ? null : row.playerId;
    }
  }

  /**
   * Settles a `pending` or `unlinking` row from its request's outcome on the player's shard. With
   * `fence`, a request with no outcome is given up first (`aborted`), so the answer is final.
   */
  private async settle(key: IdentityKey, row: DirectoryRow, fence: boolean): Promise<Settled> {
    const from = row.state;
    if (from === 'confirmed') return 'confirmed';
    const state = await this.onPlayerShard(row.playerId, (db) =>
      fence ? fenceRequest(db, row.playerId, row.requestId, key) : requestState(db, row.playerId, row.requestId),
    );
    if (state === null) return 'undecided';
    const at = { playerId: row.playerId, requestId: row.requestId };
    if (holdsAfter(from, state)) {
      await this.onIdentityShard(key, (db) => moveDirectory(db, key, at, from, 'confirmed'));
      return 'confirmed';
    }
    await this.onIdentityShard(key, (db) => deleteDirectory(db, key, at, from));
    return 'released';
  }

  /**
   * Waits for another request's row to be settled: polls its outcome until it has one, and once
   * the lease (measured from the row's age on the identity shard) has run out, gives it up.
   */
  private async awaitOther(key: IdentityKey, row: DirectoryRow): Promise<Exclude<Settled, 'undecided'>> {
    const deadline = Date.now() + Math.max(0, this.leaseMs - row.ageMs);
    for (let wait = 2; ; wait = Math.min(wait * 2, 100)) {
      const settled = await this.settle(key, row, Date.now() >= deadline);
      if (settled !== 'undecided') return settled;
      await new Promise((r) => setTimeout(r, Math.min(wait, Math.max(1, deadline - Date.now()))));
    }
  }

  /** createPlayer with an identity: reserve, create, confirm (docs/identities.md). */
  async register(input: RegisterInput): Promise<Player> {
    const { key, requestId } = input;
    let minted: PlayerId | undefined;
    for (let turn = 0; turn < MAX_TURNS; turn++) {
      if (minted === undefined) {
        minted = await this.mint(input.region);
        await this.step('minted');
      }
      const { inserted, row } = await this.reserveOrRead(key, minted, requestId);
      if (inserted) await this.step('reserved');
      if (row.requestId !== requestId) {
        // Another request holds it: taken once settled as confirmed; free again once released.
        if (row.state === 'confirmed' || (await this.awaitOther(key, row)) === 'confirmed') throw new IdentityTakenError(key.provider);
        continue;
      }
      if (row.state === 'confirmed') return this.readPlayer(row.playerId); // a retry of a request that completed
      if (row.state === 'unlinking') throw new IdentityTakenError(key.provider); // unreachable: an unlink has its own request id
      // Our reservation (this call's or an earlier attempt's): go forward with the player id it holds.
      const player = await this.createOrRead(row.playerId, input);
      if (player === null) {
        // A resolver gave our request up: clear the reservation and start over with a new id.
        await this.onIdentityShard(key, (db) => deleteDirectory(db, key, row, 'pending'));
        if (row.playerId === minted) minted = undefined;
        continue;
      }
      await this.step('created');
      await this.onIdentityShard(key, (db) => moveDirectory(db, key, row, 'pending', 'confirmed'));
      await this.step('confirmed');
      return player;
    }
    throw new Error('identity registration did not settle');
  }

  /** A new id from a shard of the region (ids are minted by the shard owning their bucket). */
  private async mint(region: string): Promise<PlayerId> {
    const { bucket, shard } = (await this.shards.routerReady()).pickBucket(region);
    const r = await onShard(this.shards, shard.id, [], (db) => sql<{ id: PlayerId }>`SELECT shardline_player_id(${bucket}) AS id`.execute(db));
    const id = r.rows[0]?.id;
    if (id === undefined) throw new Error('shardline_player_id returned no id');
    return id;
  }

  /** Creates the player for our request, or reads what an earlier attempt did: null when the request was given up. */
  private async createOrRead(playerId: PlayerId, input: RegisterInput): Promise<Player | null> {
    // The region is the one of the shard the id was minted on (a retry may name another region).
    const region = this.shards.router.shardFor(playerId).region;
    const created = await this.onPlayerShard(playerId, (db) =>
      createLinkedPlayer(db, { playerId, requestId: input.requestId, key: input.key, region, nickname: input.nickname, status: input.status }),
    );
    if (created) return created;
    const state = await this.onPlayerShard(playerId, (db) => requestState(db, playerId, input.requestId));
    switch (state) {
      case 'linked':
      case 'unlinked':
        return this.readPlayer(playerId);
      case 'aborted':
        return null;
      case 'removed':
      case null:
        throw new Error(`identity request ${input.requestId} of player ${playerId} is in an impossible state: ${state}`);
    }
  }

  private async readPlayer(playerId: PlayerId): Promise<Player> {
    const [p] = await this.onPlayerShard(playerId, (db) => selectPlayers(db, [playerId]));
    if (!p) throw new PlayerNotFoundError([String(playerId)]);
    return p;
  }

  /** linkIdentity: reserve for the player, link on its shard, confirm. Linking what the player holds is a no-op. */
  async link(playerId: PlayerId, key: IdentityKey): Promise<void> {
    for (let turn = 0; turn < MAX_TURNS; turn++) {
      const { inserted, row } = await this.reserveOrRead(key, playerId, randomUUID());
      if (!inserted) {
        if (row.playerId !== playerId) {
          if (row.state === 'confirmed' || (await this.awaitOther(key, row)) === 'confirmed') throw new IdentityTakenError(key.provider);
          continue;
        }
        if (row.state === 'confirmed') return;
        if (row.state === 'unlinking') {
          await this.awaitOther(key, row);
          continue;
        }
        // An earlier link of this identity to this player stopped half-way: finish it as its own request.
      }
      if (inserted) await this.step('reserved');
      const linked = await this.onPlayerShard(playerId, (db) => linkToPlayer(db, playerId, row.requestId, key));
      const mine = linked.inserted;
      const state = linked.state ?? (await this.onPlayerShard(playerId, (db) => requestState(db, playerId, row.requestId)));
      switch (state) {
        case 'linked':
        case 'unlinked':
          await this.step('linked');
          await this.onIdentityShard(key, (db) => moveDirectory(db, key, row, 'pending', 'confirmed'));
          await this.step('confirmed');
          return;
        case 'aborted':
          await this.onIdentityShard(key, (db) => deleteDirectory(db, key, row, 'pending'));
          if (mine) throw new PlayerNotFoundError([String(playerId)]);
          continue; // given up by a resolver: try again
        case 'removed':
        case null:
          throw new Error(`identity request ${row.requestId} of player ${playerId} is in an impossible state: ${state}`);
      }
    }
    throw new Error('identity link did not settle');
  }

  /** unlinkIdentity: mark the directory row unlinking, unlink on the player's shard, delete the row. */
  async unlink(playerId: PlayerId, key: IdentityKey): Promise<void> {
    for (let turn = 0; turn < MAX_TURNS; turn++) {
      const requestId = randomUUID();
      if (!(await this.onIdentityShard(key, (db) => beginUnlink(db, key, playerId, requestId)))) {
        const row = await this.onIdentityShard(key, (db) => readDirectory(db, key));
        if (!row || row.playerId !== playerId) throw new IdentityNotLinkedError(String(playerId), key.provider);
        if (row.state === 'confirmed') continue; // it changed under us: begin again
        // A link or unlink of this player's identity is half-way: settle it first.
        await this.awaitOther(key, row);
        continue;
      }
      await this.step('unlinking');
      const at = { playerId, requestId };
      const verdict = await this.onPlayerShard(playerId, (db) => unlinkFromPlayer(db, playerId, requestId, key));
      switch (verdict) {
        case 'removed':
          await this.step('removed');
          await this.onIdentityShard(key, (db) => deleteDirectory(db, key, at, 'unlinking'));
          await this.step('released');
          return;
        case 'last':
        case 'not-linked':
        case 'no-player':
        case 'fenced':
          await this.onIdentityShard(key, (db) => moveDirectory(db, key, at, 'unlinking', 'confirmed'));
          if (verdict === 'last') throw new LastIdentityError(String(playerId), key.provider);
          if (verdict === 'not-linked') throw new IdentityNotLinkedError(String(playerId), key.provider);
          if (verdict === 'no-player') throw new PlayerNotFoundError([String(playerId)]);
          continue;
      }
    }
    throw new Error('identity unlink did not settle');
  }

  /**
   * The sweeper: settles every row whose lease ran out, on every shard (at most `limit` per shard
   * per call). A shard that cannot be reached is listed, and its rows wait for the next call.
   */
  async resolvePending(olderThanMs: number, limit: number): Promise<IdentityResolution> {
    const out: IdentityResolution = { confirmed: 0, released: 0, unavailableShards: [] };
    const down = new Set<string>();
    await Promise.all(
      this.shards.shards.map(async (shard) => {
        let rows: Awaited<ReturnType<typeof unsettledRows>>;
        try {
          rows = await onShard(this.shards, shard.id, [], (db) => unsettledRows(db, olderThanMs, limit));
        } catch (err) {
          if (!(err instanceof ShardUnavailableError)) throw err;
          down.add(shard.id);
          return;
        }
        for (const row of rows) {
          try {
            const settled = await this.settle(row, row, true);
            if (settled === 'confirmed') out.confirmed++;
            else if (settled === 'released') out.released++;
          } catch (err) {
            if (!(err instanceof ShardUnavailableError)) throw err;
            down.add(err.shardId);
          }
        }
      }),
    );
    out.unavailableShards = this.shards.shards.map((s) => s.id).filter((id) => down.has(id));
    return out;
  }
}

/**
 * Whether the player holds the identity once a row in `row` state is settled by its request's
 * outcome: a reservation holds when its request linked the player, an unlink leaves it held unless
 * its request removed it. (A pending request later unlinked, or an unlink request that linked,
 * cannot happen: the answer follows what the player's shard lists.)
 */
function holdsAfter(row: Exclude<IdentityState, 'confirmed'>, outcome: IdentityRequestState): boolean {
  switch (row) {
    case 'pending':
      return outcome === 'linked';
    case 'unlinking':
      return outcome !== 'removed' && outcome !== 'unlinked';
  }
}
