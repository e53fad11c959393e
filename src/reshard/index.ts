export { abortMove, artifactName, listMoves, moveBuckets, purgeMove, resumeMove, verifyBuckets } from './mover.js';
export type { MoveMode, MoveOptions, MovePausePoint, MovePlan, MoveProgress, MoveReport, MoveRunOptions, MoveSummary, VerifyReport } from './mover.js';
export { MOVE_STATES, abortKind, isMoveState, mayHoldFreeze, phaseOf } from './states.js';
export type { MovePhase, MoveState } from './states.js';
export { moveHealth } from './health.js';
export type { MoveHealth } from './health.js';
export { liveMapJson } from './live-map.js';
