/**
 * The states of a bucket move, in the order a move passes them: the one list (the migration stores
 * the names, the CLI shows them, every switch over them is exhaustive). A freeze-mode move passes
 * fenced → copied → verified → switched once per batch, returning to `copying` in between.
 *
 * What the rows say is the mover's memory, but the ownership records on the shards are the truth
 * about a batch: resume reads both (reconcile in mover.ts), so a kill between a step and its note
 * repeats nothing that is not idempotent.
 */
export const MOVE_STATES = [
  /** The move row and its artifact names are written on both shards; nothing created yet. */
  'planned',
  /** Rows are being copied: the subscription's initial sync (logical), batches in turn (freeze). */
  'copying',
  /** Logical: every table of the subscription is ready and the lag is within --max-lag. */
  'synced',
  /** The batch (freeze) or range (logical) is frozen on the source: writes to it are refused as moving. */
  'fenced',
  /** The frozen rows are on the target (freeze: copied; logical: the slot passed the fence LSN). */
  'copied',
  /** Counts and checksums equal per bucket and table on both sides. */
  'verified',
  /** Logical: subscription, slot and publication dropped (before the commit point, so no purge can replicate). */
  'cleaned',
  /** The commit point of a batch or range: the target owns it at a new epoch. */
  'switched',
  /** Every bucket of the range is owned by the target and recorded as moved on the source; the purge is pending. */
  'moved',
  /** The source's copy is being deleted, by range in bounded batches. */
  'purging',
  /** Moved and purged. */
  'done',
  /** An abort is under way: artifacts are dropped, the source un-frozen, the target's partial copy deleted. */
  'aborting',
  /** Aborted: what was not committed is as before the move. */
  'aborted',
] as const;

export type MoveState = (typeof MOVE_STATES)[number];

export function isMoveState(value: unknown): value is MoveState {
  return typeof value === 'string' && (MOVE_STATES as readonly string[]).includes(value);
}

/** Where a move stands, for pre-checks and `shards check`. */
export type MovePhase = 'active' | 'committed' | 'finished';

export function phaseOf(state: MoveState): MovePhase {
  switch (state) {
    case 'planned':
    case 'copying':
    case 'synced':
    case 'fenced':
    case 'copied':
    case 'verified':
    case 'cleaned':
    case 'switched':
    case 'aborting':
      return 'active';
    case 'moved':
    case 'purging':
      return 'committed';
    case 'done':
    case 'aborted':
      return 'finished';
  }
}

/** True when the source may hold a frozen range of this move (writes to it refused until the move goes on). */
export function mayHoldFreeze(state: MoveState): boolean {
  switch (state) {
    case 'fenced':
    case 'copied':
    case 'verified':
    case 'cleaned':
    case 'switched':
    case 'aborting':
      return true;
    case 'planned':
    case 'copying':
    case 'synced':
    case 'moved':
    case 'purging':
    case 'done':
    case 'aborted':
      return false;
  }
}

/** What `abort` means in a state: undo, nothing left to undo, or refused (past the commit point). */
export function abortKind(state: MoveState): 'undo' | 'nothing' | 'refused' {
  switch (state) {
    case 'planned':
    case 'copying':
    case 'synced':
    case 'fenced':
    case 'copied':
    case 'verified':
    case 'cleaned':
    case 'switched':
    case 'aborting':
      return 'undo';
    case 'aborted':
      return 'nothing';
    case 'moved':
    case 'purging':
    case 'done':
      return 'refused';
  }
}
