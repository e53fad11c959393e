export { RoomService } from './room-service.js';
export type { ListRoomsOptions, RoomServiceOptions } from './room-service.js';
// The connection forms every Redis-taking class accepts: one Redis, a Cluster, or options for either.
export type { RedisClient, RedisClusterConnection, RedisConnection } from '../redis/connection.js';
export { ZoneWatch } from './zone-watch.js';
export type { WatchOptions } from './zone-watch.js';
export { ZoneSweeper } from './zone-sweeper.js';
export type { SweeperOptions } from './zone-sweeper.js';
export { Table, buildMatchResult, endGame } from './table.js';
export type { EndGameInput, SettlementSubmitter, TableOptions, TablePlayerResult, TableSettlement } from './table.js';
export { joinRoomView } from './room-view.js';
export type { DirectoryReadOptions, PlayerDirectory, RoomView, RoomViewMember } from './room-view.js';
// The Lua scripts and the Redis key layout are internals (tests and benches import them from
// their own modules): they may change between versions.
export { DEFAULT_CAPACITY as DEFAULT_ROOM_CAPACITY, MAX_CAPACITY as MAX_ROOM_CAPACITY } from './keys.js';
export type { RoomChange, RoomCount, RoomDefinition, RoomInfo, Seat, ZoneEvent, ZoneSnapshot } from './types.js';
