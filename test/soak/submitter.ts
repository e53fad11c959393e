// One game-server process of the soak: submits matches and moves players through rooms until its
// time is up. Every accepted match is appended to a JSONL file (the test checks each was applied
// exactly once); every error is counted by kind, and anything not expected is kept as a sample.
// Usage: node --import tsx test/soak/submitter.ts '<SubmitterConfig as JSON>'
import { appendFileSync, writeSync } from 'node:fs';
import { pino } from 'pino';
import { ShardSet } from '../../src/db/index.js';
import { RoomFullError, SettlementConflictError, ZoneFullError } from '../../src/errors/index.js';
import { RoomService } from '../../src/rooms/index.js';
import { SettlementClient, redisOptionsFromUrl, type SettlementInput } from '../../src/settlement/index.js';
import { loadShardMap } from '../../src/shardmap/index.js';
import { prng } from '../faults/support/settlement.js';

export interface SubmitterConfig {
  id: number;
  mapFile: string;
  redisUrl: string;
  prefix: string;
  roomsPrefix: string;
  gameId: string;
  players: string[];
  /** zone -> its room ids */
  zones: Record<string, string[]>;
  durationMs: number;
  seed: number;
  outFile: string;
  /** Concurrent loops in this process. */
  loops: number;
}

export interface SubmitterSummary {
  evt: 'summary';
  id: number;
  accepted: number;
  duplicatesResubmitted: number;
  conflictsRefused: number;
  roomEnters: number;
  roomLeaves: number;
  roomFull: number;
  /** Errors that are not part of the plan, by name, with a few messages. */
  unexpected: Record<string, number>;
  samples: string[];
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as SubmitterConfig;
const rand = prng(cfg.seed);
const shards = new ShardSet(await loadShardMap(cfg.mapFile), { poolMax: 4, applicationName: `soak-submitter-${cfg.id}` });
const redis = redisOptionsFromUrl(cfg.redisUrl);
const client = new SettlementClient({ shards, connection: redis, prefix: cfg.prefix, logger: pino({ level: 'silent' }), jobs: { backoffMs: 200 } });
const rooms = new RoomService({ connection: redis, prefix: cfg.roomsPrefix, router: shards.router, leaseMs: 120_000 });

const summary: SubmitterSummary = {
  evt: 'summary',
  id: cfg.id,
  accepted: 0,
  duplicatesResubmitted: 0,
  conflictsRefused: 0,
  roomEnters: 0,
  roomLeaves: 0,
  roomFull: 0,
  unexpected: {},
  samples: [],
};
const accepted: SettlementInput[] = [];
let n = 0;

function unexpected(err: unknown): void {
  const name = err instanceof Error ? err.name : typeof err;
  summary.unexpected[name] = (summary.unexpected[name] ?? 0) + 1;
  if (summary.samples.length < 10) summary.samples.push(err instanceof Error ? err.message : String(err));
}

const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)] as T;

function newMatch(): SettlementInput {
  const size = 2 + Math.floor(rand() * 5);
  const chosen = new Set<string>();
  while (chosen.size < size) chosen.add(pick(cfg.players));
  const outcomes = ['win', 'loss', 'draw'] as const;
  return {
    matchId: `soak-${cfg.id}-${n++}`,
    gameId: cfg.gameId,
    endedAt: new Date(Date.now() - Math.floor(rand() * 60_000)),
    results: [...chosen].map((playerId) => ({ playerId, scoreDelta: Math.floor(rand() * 61) - 30, outcome: pick(outcomes) })),
  };
}

async function roomStep(playerId: string): Promise<void> {
  const zone = rooms.defaultZoneFor(playerId);
  const room = pick(cfg.zones[zone] ?? []);
  try {
    if (rand() < 0.35) {
      if (await rooms.leave(room, playerId)) summary.roomLeaves++;
    } else {
      await rooms.enter(room, playerId);
      summary.roomEnters++;
    }
  } catch (err) {
    if (err instanceof RoomFullError || err instanceof ZoneFullError) summary.roomFull++;
    else unexpected(err);
  }
}

async function step(): Promise<void> {
  const r = rand();
  if (r < 0.08 && accepted.length > 0) {
    // A game server retrying after a timeout: same content, any result order.
    const m = pick(accepted);
    const again = await client.submitSettlement({ ...m, results: [...m.results].reverse() });
    if (again.duplicate !== true) throw new Error(`resubmission of ${m.matchId} was not reported as a duplicate`);
    summary.duplicatesResubmitted++;
    return;
  }
  if (r < 0.12 && accepted.length > 0) {
    // A buggy game server reusing a match id with other content: must be refused.
    const m = pick(accepted);
    const other = { ...m, results: m.results.map((x, i) => (i === 0 ? { ...x, scoreDelta: x.scoreDelta + 1 } : x)) };
    try {
      await client.submitSettlement(other);
    } catch (err) {
      if (err instanceof SettlementConflictError) {
        summary.conflictsRefused++;
        return;
      }
      throw err;
    }
    throw new Error(`conflicting content for ${m.matchId} was accepted`);
  }
  const m = newMatch();
  for (const res of m.results) if (rand() < 0.3) await roomStep(res.playerId.toString());
  await client.submitSettlement(m);
  accepted.push(m);
  summary.accepted++;
  appendFileSync(cfg.outFile, `${JSON.stringify({ ...m, endedAt: (m.endedAt as Date).toISOString() })}\n`);
}

const deadline = Date.now() + cfg.durationMs;
await Promise.all(
  Array.from({ length: cfg.loops }, async () => {
    while (Date.now() < deadline) {
      try {
        await step();
      } catch (err) {
        unexpected(err);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }),
);
await client.close();
await rooms.close();
await shards.close();
writeSync(1, `${JSON.stringify(summary)}\n`);
process.exit(0);
