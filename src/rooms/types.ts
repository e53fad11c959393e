import type { PlayerId } from '../routing/index.js';

/** A player id, or its decimal string as it arrives in JSON; validated with `parsePlayerId`. */
export type PlayerIdInput = PlayerId | string;

/** One room in a zone listing. */
export interface RoomCount {
  readonly roomId: string;
  readonly count: number;
  readonly capacity: number;
}

/** Every room of a zone at one version: the state after all changes up to `version`, and none after. */
export interface ZoneSnapshot {
  readonly type: 'snapshot';
  readonly zone: string;
  readonly version: number;
  /** Sorted by room id. */
  readonly rooms: readonly RoomCount[];
}

/** One room's new count; versions of a zone increase by exactly 1 per change. */
export interface RoomChange {
  readonly type: 'change';
  readonly zone: string;
  readonly roomId: string;
  readonly count: number;
  readonly capacity: number;
  readonly version: number;
}

/** What `watch` yields: a snapshot first (and again whenever the consumer fell behind), then changes. */
export type ZoneEvent = ZoneSnapshot | RoomChange;

/** A seat held after `enter` or `autoEnter`. */
export interface Seat {
  readonly zone: string;
  readonly roomId: string;
  readonly playerId: PlayerId;
  /** The room's count right after this step. */
  readonly count: number;
  readonly capacity: number;
  /** When the lease lapses unless renewed by `heartbeat` (ms since epoch, Redis clock). */
  readonly leaseExpiresAt: number;
  /** True when the player already held this seat: the call only renewed the lease. */
  readonly alreadySeated: boolean;
  /** The room of the same zone the player left in the same atomic step, if any. */
  readonly movedFrom: string | null;
}

export interface RoomDefinition {
  readonly roomId: string;
  /** Default: the service's `defaultCapacity` (400). */
  readonly capacity?: number;
}

export interface RoomInfo extends RoomCount {
  readonly zone: string;
}
