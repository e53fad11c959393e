import { UnknownRoomError, UnknownZoneError, ValidationError } from '../errors/index.js';
import { showValue } from '../errors/show-value.js';
import { parsePlayerId, type PlayerId, type Router } from '../routing/index.js';
import { clusterSpecOf, duplicateConnection, isClusterConnection, resolveConnection, type RedisClient, type RedisConnection } from '../redis/connection.js';
import { DEFAULT_KEY_PREFIX, validateKeyPrefix } from '../redis/prefix.js';
import { defineZoneScripts, type ZoneScripts } from './zone-scripts.js';
import {
  DEFAULT_CAPACITY,
  legacyDirectoryKey,
  roomZoneKey,
  scriptKeys,
  validateCapacity,
  validateLeaseMs,
  validatePositiveInt,
  validateRoomId,
  validateZone,
  zoneKeys,
} from './keys.js';
import { checkRoom, toMembers, toSeat, toSnapshot } from './replies.js';
import { joinRoomView, readPlayers, type DirectoryReadOptions, type PlayerDirectory, type RoomView } from './room-view.js';
import type { PlayerIdInput, RoomDefinition, RoomInfo, Seat, ZoneSnapshot } from './types.js';
import { ZoneSweeper, type SweeperOptions } from './zone-sweeper.js';
import { ZoneFeed } from './zone-feed.js';
import { checkWatchOptions, ZoneWatch, type WatchOptions } from './zone-watch.js';

export interface RoomServiceOptions {
  /** An ioredis client to share (left open by `close()`), or options for one the service owns. */
  readonly connection: RedisConnection;
  /**
   * The shard map's router. It gives each player a default zone, the region of their id
   * (`defaultZoneFor`), and makes the map's regions the only zones: `createRoom`/`defineRooms` of
   * any other zone is refused with UnknownZoneError. Without it, any valid zone name is a zone.
   */
  readonly router?: Router;
  /**
   * Key prefix, a plain name (no braces, no colons): every zone's keys are hash-tagged
   * `{<prefix>:zone:<zone>}`. Default: the router's map `"prefix"`, else "shardline".
   */
  readonly prefix?: string;
  /** Seat lease: a seat not renewed by `heartbeat` for this long is freed. Default 30 000 ms. */
  readonly leaseMs?: number;
  /** Capacity of rooms created without one. Default 400. */
  readonly defaultCapacity?: number;
  /** Approximate number of changes each zone's change log keeps for `watch` to resume from. Default 10 000. */
  readonly changeLogLength?: number;
  /** Account reads for `roomView`. */
  readonly directory?: PlayerDirectory;
  /**
   * Where `listRooms(zone, { readFrom: 'replica' })` reads: a client (or options) of a Redis
   * replica, or a Cluster built with `scaleReads: 'slave'`. Default: with a cluster connection, a
   * second Cluster of the service's own that reads from replicas (READONLY); with one Redis, the
   * primary (there is no replica to read from).
   */
  readonly replicaConnection?: RedisConnection;
}

/** Where a read may be served from; `'replica'` accepts a copy a few milliseconds behind. */
export interface ListRoomsOptions {
  readonly readFrom?: 'primary' | 'replica';
}

/** The zone keys and the fixed head of every script call, computed once per zone. */
interface ZoneCall {
  readonly zone: string;
  readonly head: readonly string[];
  readonly changes: string;
  readonly version: string;
}

/** Bounded reaping inside listRooms: a burst of expiries is finished by later calls or the sweeper. */
const LIST_REAP_LIMIT = 256;
const REAP_BATCH = 1000;

/**
 * Rooms and zones on Redis. Every state change is one Lua script on the zone's keys (scripts.ts),
 * so capacity, the one-room-per-zone rule, leases, the zone aggregate and the change log can
 * never disagree, whatever interleaving of clients, processes or machines.
 */
export class RoomService {
  readonly prefix: string;
  readonly leaseMs: number;
  readonly defaultCapacity: number;
  readonly router: Router | undefined;
  private readonly connection: RedisConnection;
  private readonly client: RedisClient;
  private readonly owned: boolean;
  private readonly scripts: ZoneScripts;
  private readonly logLength: string;
  private readonly directory: PlayerDirectory | undefined;
  private readonly legacyDirectoryKey: string;
  private readonly replicaConnection: RedisConnection | undefined;
  private replica: { client: RedisClient; owned: boolean; scripts: ZoneScripts } | undefined;
  /** room id -> zone; a room never changes zone, so entries never go stale. */
  private readonly roomZones = new Map<string, string>();
  private readonly zoneCalls = new Map<string, ZoneCall>();
  private readonly watches = new Set<ZoneWatch>();
  /** One change-log reader (and one connection) per watched zone, shared by its watches. */
  private readonly feeds = new Map<string, ZoneFeed>();
  private readonly sweepers = new Set<ZoneSweeper>();
  /** The sweeper each watched zone gets, shared by its watches. */
  private readonly watchSweepers = new Map<string, { sweeper: ZoneSweeper; watchers: number }>();
  private closed = false;

  constructor(options: RoomServiceOptions) {
    this.prefix = prefixOf(options);
    this.leaseMs = validateLeaseMs(options.leaseMs ?? 30_000);
    this.defaultCapacity = validateCapacity(options.defaultCapacity ?? DEFAULT_CAPACITY, 'defaultCapacity');
    this.logLength = String(validatePositiveInt(options.changeLogLength ?? 10_000, 'changeLogLength', 10_000_000));
    this.router = options.router;
    this.directory = options.directory;
    this.legacyDirectoryKey = legacyDirectoryKey(this.prefix);
    this.connection = options.connection;
    this.replicaConnection = options.replicaConnection;
    const { client, owned } = resolveConnection(options.connection);
    this.client = client;
    this.owned = owned;
    this.scripts = defineZoneScripts(client);
  }

  /** The zones of the router's map (one per region), or none without a router. */
  get zones(): readonly string[] {
    return this.router?.regions ?? [];
  }

  /** A player's default zone: the region the router gives for their id. */
  defaultZoneFor(playerId: PlayerIdInput): string {
    if (!this.router) throw new ValidationError('router', 'RoomService was built without a router');
    return this.router.regionOf(parsePlayerId(playerId));
  }

  /**
   * Creates a room in a zone, or sets its capacity. Room ids are unique across zones; lowering a
   * capacity below the room's current count is refused (no one is ever evicted by it). With a
   * router, a zone that is not a region of the map is refused (UnknownZoneError) before any write.
   */
  async createRoom(zone: string, roomId: string, options: { capacity?: number } = {}): Promise<RoomInfo> {
    this.validateDefinableZone(zone);
    validateRoomId(roomId);
    const capacity = validateCapacity(options.capacity ?? this.defaultCapacity);
    // Claim the id first: a crash before the zone step leaves a claimed id whose enters answer
    // UnknownRoomError, and a retry completes it. No seat state exists until the zone step.
    const owner = await this.claimRoom(roomId, zone);
    if (owner !== zone) throw new ValidationError('roomId', `room ${showValue(roomId)} already belongs to zone ${showValue(owner)}`);
    this.roomZones.set(roomId, zone);
    const r = checkRoom('define', await this.scripts.define(...this.call(zone).head, roomId, capacity));
    if (r[0] === 'BELOW_COUNT') {
      throw new ValidationError('capacity', `${capacity} is below the ${Number(r[1])} players now in room ${showValue(roomId)}`);
    }
    return { zone, roomId, count: Number(r[1]), capacity: Number(r[2]) };
  }

  /**
   * `createRoom` for many rooms of one zone. The whole batch is checked before any room of it is
   * written (ids, capacities, rooms of other zones, capacities below the players seated), so a
   * refused batch creates nothing. Only a concurrent change between the check and the writes can
   * still refuse one room of an accepted batch.
   */
  async defineRooms(zone: string, rooms: readonly RoomDefinition[]): Promise<RoomInfo[]> {
    this.validateDefinableZone(zone);
    const seen = new Set<string>();
    rooms.forEach((r, i) => {
      validateRoomId(r.roomId, `rooms.${i}.roomId`);
      if (seen.has(r.roomId)) throw new ValidationError(`rooms.${i}.roomId`, `room ${showValue(r.roomId)} is listed twice`);
      seen.add(r.roomId);
      validateCapacity(r.capacity ?? this.defaultCapacity, `rooms.${i}.capacity`);
    });
    if (rooms.length === 0) return [];
    const ids = rooms.map((r) => r.roomId);
    // One GET per room (each entry is its own slot: no multi-key command spans them).
    const [owners, counts] = await Promise.all([
      Promise.all(ids.map((id) => this.readDirectory(id))),
      this.client.hmget(zoneKeys(this.prefix, zone).count, ...ids),
    ]);
    rooms.forEach((r, i) => {
      const owner = owners[i];
      if (owner != null && owner !== zone) {
        throw new ValidationError(`rooms.${i}.roomId`, `room ${showValue(r.roomId)} already belongs to zone ${showValue(owner)}`);
      }
      const seated = Number(counts[i] ?? 0);
      const capacity = r.capacity ?? this.defaultCapacity;
      if (seated > capacity) throw new ValidationError(`rooms.${i}.capacity`, `${capacity} is below the ${seated} players now in room ${showValue(r.roomId)}`);
    });
    return Promise.all(rooms.map((r) => this.createRoom(zone, r.roomId, r.capacity === undefined ? {} : { capacity: r.capacity })));
  }

  /** The zone a room belongs to; UnknownRoomError if it was never created. */
  async zoneOf(roomId: string): Promise<string> {
    const known = this.roomZones.get(roomId);
    if (known !== undefined) return known;
    validateRoomId(roomId);
    const zone = await this.readDirectory(roomId, { copy: true });
    if (zone === null) throw new UnknownRoomError(roomId);
    this.roomZones.set(roomId, zone);
    return zone;
  }

  /**
   * The room's zone from its directory entry, else from the old directory hash (rooms an older
   * version created), which `copy` then writes to the room's own entry (SET NX: a claim made
   * meanwhile wins) so later lookups take one GET.
   */
  private async readDirectory(roomId: string, options: { copy?: boolean } = {}): Promise<string | null> {
    const key = roomZoneKey(this.prefix, roomId);
    const zone = await this.client.get(key);
    if (zone !== null) return zone;
    const legacy = await this.client.hget(this.legacyDirectoryKey, roomId);
    if (legacy === null || !options.copy) return legacy;
    if ((await this.client.set(key, legacy, 'NX')) === 'OK') return legacy;
    return (await this.client.get(key)) ?? legacy;
  }

  /** Claims the room id for the zone; returns the zone that holds it (another one: the id is taken). */
  private async claimRoom(roomId: string, zone: string): Promise<string> {
    const key = roomZoneKey(this.prefix, roomId);
    // An id the old directory gave a zone keeps that zone.
    const want = (await this.client.hget(this.legacyDirectoryKey, roomId)) ?? zone;
    if ((await this.client.set(key, want, 'NX')) === 'OK') return want;
    return (await this.client.get(key)) ?? want;
  }

  /**
   * Seats a player, capacity check and seat in one atomic step. Entering the room one already
   * holds renews the lease (idempotent); entering another room of the same zone moves the player
   * in the same step. Throws RoomFullError, UnknownRoomError. Safe to retry.
   */
  async enter(roomId: string, playerId: PlayerIdInput): Promise<Seat> {
    const id = parsePlayerId(playerId);
    const zone = this.roomZones.get(roomId) ?? (await this.zoneOf(roomId));
    const reply = await this.scripts.enter(...this.call(zone).head, roomId, id.toString(), this.leaseMs);
    return toSeat(zone, id, reply);
  }

  /**
   * Seats the player in the fullest room of the zone that still has a seat, in one atomic step
   * (O(log rooms)). A player already seated in the zone keeps their seat. Throws ZoneFullError when
   * every room is full, UnknownZoneError when no room was ever defined in the zone.
   */
  async autoEnter(zone: string, playerId: PlayerIdInput): Promise<Seat> {
    const id = parsePlayerId(playerId);
    const reply = await this.scripts.autoEnter(...this.call(zone).head, id.toString(), this.leaseMs);
    return toSeat(zone, id, reply);
  }

  /** Frees the player's seat; false when they were not seated there (already left, expired, moved). */
  async leave(roomId: string, playerId: PlayerIdInput): Promise<boolean> {
    const id = parsePlayerId(playerId);
    const zone = await this.zoneOf(roomId);
    const r = checkRoom('leave', await this.scripts.leave(...this.call(zone).head, roomId, id.toString()));
    return Number(r[1]) === 1;
  }

  /**
   * Renews the player's lease; returns the new expiry (ms since epoch, Redis clock), or null when
   * the player no longer holds a seat there (the lease lapsed or they left): enter again.
   */
  async heartbeat(roomId: string, playerId: PlayerIdInput): Promise<number | null> {
    const id = parsePlayerId(playerId);
    const zone = await this.zoneOf(roomId);
    const r = checkRoom('heartbeat', await this.scripts.heartbeat(...this.call(zone).head, roomId, id.toString(), this.leaseMs));
    return r[0] === 'OK' ? Number(r[1]) : null;
  }

  /** The players holding a live seat in the room, by id. */
  async members(roomId: string): Promise<PlayerId[]> {
    const zone = await this.zoneOf(roomId);
    return toMembers(await this.scripts.members(...this.call(zone).head, roomId));
  }

  /** The room the player holds a seat in within the zone, or null. */
  async roomOf(zone: string, playerId: PlayerIdInput): Promise<string | null> {
    const id = parsePlayerId(playerId);
    const room = await this.scripts.locate(...this.call(zone).head, id.toString());
    return typeof room === 'string' && room !== '' ? room : null;
  }

  /**
   * Every room of the zone with count and capacity, at one version; read from the aggregate, not
   * the rooms. With `readFrom: 'replica'` the read goes to a Redis replica (see the
   * `replicaConnection` option): a snapshot as of the replica's replication point, a little behind
   * the primary, whose seats lapsed since the last reap are still counted (the primary's sweeper
   * and every step on the zone free them; the replica follows). Without a replica it reads the primary.
   */
  async listRooms(zone: string, options: ListRoomsOptions = {}): Promise<ZoneSnapshot> {
    const head = this.call(zone).head;
    if (options.readFrom === 'replica') {
      const replica = this.replicaReads();
      if (replica) return toSnapshot(zone, await replica.scripts.listReplica(...head));
    } else if (options.readFrom !== undefined && options.readFrom !== 'primary') {
      throw new ValidationError('readFrom', `${showValue(options.readFrom)} is not 'primary' or 'replica'`);
    }
    return toSnapshot(zone, await this.scripts.list(...head, LIST_REAP_LIMIT));
  }

  /** The replica-reading client, built on first use; undefined when there is no replica to read. */
  private replicaReads(): { client: RedisClient; scripts: ZoneScripts } | undefined {
    if (this.replica) return this.replica;
    let resolved: { client: RedisClient; owned: boolean } | undefined;
    if (this.replicaConnection !== undefined) resolved = resolveConnection(this.replicaConnection);
    else if (isClusterConnection(this.connection))
      // The slot map is refreshed now and then, so a replica that joins (or finishes its first sync)
      // after this client read the map is used too; ioredis alone reads it only at start and on MOVED.
      resolved = {
        client: duplicateConnection(this.connection, `${this.prefix}:replica-reads`, {
          scaleReads: 'slave',
          slotsRefreshInterval: clusterSpecOf(this.connection).options.slotsRefreshInterval ?? 5000,
        }),
        owned: true,
      };
    if (!resolved) return undefined;
    this.replica = { ...resolved, scripts: defineZoneScripts(resolved.client) };
    return this.replica;
  }

  /** `refresh` is `listRooms`: the snapshot a client replaces its copy with. */
  refresh(zone: string): Promise<ZoneSnapshot> {
    return this.listRooms(zone);
  }

  /**
   * The zone's changes as an async iterator (see ZoneWatch). Every watch of a zone in this service
   * shares one change-log reader on one dedicated connection (ZoneFeed), opened by the first watch
   * and closed with the last; each watch keeps its own position.
   */
  watch(zone: string, options: WatchOptions = {}): ZoneWatch {
    this.assertOpen();
    const call = this.call(zone);
    const { blockMs } = checkWatchOptions(options);
    const feed = this.feedOf(call, blockMs);
    const unwatch = options.sweepMs === false ? () => undefined : this.sweepWhileWatched(zone, options.sweepMs ?? 1000);
    const w: ZoneWatch = new ZoneWatch(
      {
        zone,
        feed,
        reader: this.client,
        changesKey: call.changes,
        snapshot: () => this.listRooms(zone),
        currentVersion: async () => Number((await this.client.get(call.version)) ?? 0),
        onClose: () => {
          this.watches.delete(w);
          feed.leave();
          unwatch();
        },
      },
      options,
    );
    this.watches.add(w);
    return w;
  }

  /** The zone's feed, started by its first watch; a feed that closed (its last watch left) is replaced. */
  private feedOf(call: ZoneCall, blockMs: number): ZoneFeed {
    let feed = this.feeds.get(call.zone);
    if (!feed || feed.closed) {
      const zone = call.zone;
      const created: ZoneFeed = new ZoneFeed({
        zone,
        changesKey: call.changes,
        client: () => duplicateConnection(this.connection, `${this.prefix}:watch:${zone}`),
        blockMs,
        onClose: () => {
          if (this.feeds.get(zone) === created) this.feeds.delete(zone);
        },
      });
      feed = created;
      this.feeds.set(zone, feed);
    }
    feed.join();
    return feed;
  }

  /** Starts (or joins) the zone's watch sweeper; the returned function leaves it, the last one stops it. */
  private sweepWhileWatched(zone: string, intervalMs: number): () => void {
    let entry = this.watchSweepers.get(zone);
    if (!entry) {
      entry = { sweeper: this.startSweeper([zone], { intervalMs }), watchers: 0 };
      this.watchSweepers.set(zone, entry);
    }
    entry.watchers++;
    const joined = entry;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      if (--joined.watchers > 0) return;
      if (this.watchSweepers.get(zone) === joined) this.watchSweepers.delete(zone);
      void joined.sweeper.stop();
    };
  }

  /** Frees every expired seat of the zone (in bounded batches); returns how many. */
  async reap(zone: string, options: { limit?: number } = {}): Promise<number> {
    const limit = validatePositiveInt(options.limit ?? Number.MAX_SAFE_INTEGER, 'limit');
    let total = 0;
    while (total < limit) {
      const batch = Math.min(REAP_BATCH, limit - total);
      const n = Number(await this.scripts.reap(...this.call(zone).head, batch));
      total += n;
      if (n < batch) break;
    }
    return total;
  }

  /**
   * Reaps the zones periodically, so counts of idle zones follow expired leases too. Any number
   * of sweepers may run in any number of processes: each reap is atomic.
   */
  startSweeper(zones: readonly string[], options: SweeperOptions = {}): ZoneSweeper {
    this.assertOpen();
    zones.forEach((z, i) => validateZone(z, `zones.${i}`));
    const s: ZoneSweeper = new ZoneSweeper(
      (zone) => this.reap(zone),
      zones,
      options,
      () => this.sweepers.delete(s),
    );
    this.sweepers.add(s);
    return s;
  }

  /**
   * The room's seated players with their nickname and score in `gameId`, read with one batch
   * scatter-gather (one query per shard touched). With `partial` (the default) a shard that is down
   * lists its players under `unavailable` instead of failing the view.
   */
  async roomView(roomId: string, options: { gameId: string; partial?: boolean } & DirectoryReadOptions): Promise<RoomView> {
    if (!this.directory) throw new ValidationError('directory', 'RoomService was built without a player directory');
    const zone = await this.zoneOf(roomId);
    const seated = await this.members(roomId);
    const read = {
      ...(options.readFrom === undefined ? {} : { readFrom: options.readFrom }),
      ...(options.maxLagMs === undefined ? {} : { maxLagMs: options.maxLagMs }),
    };
    const answer = await readPlayers(this.directory, seated, { gameId: options.gameId, partial: options.partial ?? true, ...read });
    return joinRoomView({ zone, roomId, gameId: options.gameId }, seated, answer);
  }

  /** Stops sweepers, closes watches, and closes the Redis client if the service created it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.sweepers].map((s) => s.stop()));
    for (const w of [...this.watches]) w.close();
    for (const feed of [...this.feeds.values()]) feed.close();
    if (this.replica?.owned) await this.replica.client.quit().catch(() => this.replica?.client.disconnect());
    if (this.owned) await this.client.quit().catch(() => this.client.disconnect());
  }

  private call(zone: string): ZoneCall {
    this.assertOpen();
    let c = this.zoneCalls.get(zone);
    if (!c) {
      validateZone(zone);
      const k = zoneKeys(this.prefix, zone);
      c = { zone, head: [...scriptKeys(k), k.members, this.logLength], changes: k.changes, version: k.version };
      this.zoneCalls.set(zone, c);
    }
    return c;
  }

  /** A valid zone name, and with a router one of the map's regions (the zones it gives players). */
  private validateDefinableZone(zone: string): void {
    validateZone(zone);
    if (this.router && !this.router.regions.includes(zone)) throw new UnknownZoneError(zone, this.router.regions);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('RoomService is closed');
  }
}

/** The option wins; else the map's `"prefix"`, so rooms and settlement of one deployment share it. */
function prefixOf(options: RoomServiceOptions): string {
  if (options.prefix !== undefined) return validateKeyPrefix(options.prefix);
  const fromMap = options.router?.map.prefix;
  return fromMap === undefined ? DEFAULT_KEY_PREFIX : validateKeyPrefix(fromMap, 'router.map.prefix');
}
