/**
 * A separate OS process that registers players by one identity, for the concurrency test: it
 * stands for another game server racing for the same login. Not a test file itself.
 *
 *   node --import tsx test/accounts/identity-worker.ts '<json: { mapJson, identity, region, requestIds, leaseMs }>'
 *
 * Prints `ready`, waits for a line on stdin so every process starts at the same moment, registers
 * once per request id (all at once), prints one JSON line of outcomes and exits.
 */
import { Accounts, IdentityTakenError, ShardSet, validateShardMap, type Identity } from '../../src/index.js';

interface Config {
  mapJson: unknown;
  identity: Identity;
  region: string;
  requestIds: string[];
  leaseMs: number;
}

const config = JSON.parse(process.argv[2] ?? '') as Config;
// Few connections per shard (the PostgreSQL of the test machine is shared by every suite: 4 processes
// with 10 each on 4 shards would exhaust max_connections), a generous connection timeout for a loaded
// 2-core machine, and every shard checked before `ready` (as a game server warms up before it
// serves), so the race is the protocol's, not the first connection's.
const shards = new ShardSet(validateShardMap(config.mapJson), { poolMax: 3, connectionTimeoutMs: 30_000 });
const accounts = new Accounts(shards, { identityLeaseMs: config.leaseMs });
await Promise.all(shards.shards.map((s) => shards.db(s.id)));
process.stdin.once('data', () => {
  void storm();
});
process.stdout.write('ready\n');

async function storm(): Promise<void> {
  const outcomes = await Promise.all(
    config.requestIds.map(async (requestId, i) => {
      try {
        const p = await accounts.createPlayer({ region: config.region, nickname: `racer ${process.pid} ${i}`, identity: config.identity, requestId });
        return { requestId, player: String(p.id) };
      } catch (err) {
        if (err instanceof IdentityTakenError) return { requestId, taken: true };
        return { requestId, error: `${(err as Error).name}: ${(err as Error).message}`.slice(0, 300) };
      }
    }),
  );
  process.stdout.write(JSON.stringify(outcomes) + '\n');
  await shards.close();
  process.stdin.destroy();
}
