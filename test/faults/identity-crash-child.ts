/**
 * A registering (linking, unlinking) process that SIGKILLs itself right after one step of the
 * identity protocol, for test/faults/identity-crash.test.ts. Not a test file itself.
 *
 *   node --import tsx test/faults/identity-crash-child.ts '<json: CrashConfig>'
 */
import { Accounts, ShardSet, validateShardMap, type Identity } from '../../src/index.js';
import type { IdentityStep } from '../../src/accounts/identities.js';

export interface CrashConfig {
  mapJson: unknown;
  op: 'create' | 'link' | 'unlink';
  identity: Identity;
  region: string;
  requestId: string;
  playerId?: string;
  killAfter: IdentityStep;
  leaseMs: number;
  /** Stall this long after the step instead of dying: a process paused (GC, SIGSTOP, a slow network) that wakes up late. */
  stallMs?: number;
}

const config = JSON.parse(process.argv[2] ?? '') as CrashConfig;
const shards = new ShardSet(validateShardMap(config.mapJson), { poolMax: 2 });
const accounts = new Accounts(shards, {
  identityLeaseMs: config.leaseMs,
  __identityStepHook: (step) => {
    if (step !== config.killAfter) return;
    if (config.stallMs !== undefined) {
      process.stdout.write(JSON.stringify({ evt: 'step', step }) + '\n');
      return new Promise<void>((r) => setTimeout(r, config.stallMs));
    }
    process.stdout.write(JSON.stringify({ evt: 'step', step }) + '\n', () => process.kill(process.pid, 'SIGKILL'));
    return new Promise<void>(() => undefined); // never go on: the kill is on its way
  },
});

try {
  switch (config.op) {
    case 'create':
      await accounts.createPlayer({ region: config.region, nickname: 'crashed', identity: config.identity, requestId: config.requestId });
      break;
    case 'link':
      await accounts.linkIdentity(config.playerId!, config.identity);
      break;
    case 'unlink':
      await accounts.unlinkIdentity(config.playerId!, config.identity);
      break;
  }
  process.stdout.write(JSON.stringify({ evt: 'finished' }) + '\n');
} catch (err) {
  process.stdout.write(JSON.stringify({ evt: 'finished', code: (err as { code?: string }).code ?? String(err) }) + '\n');
}
await shards.close();
