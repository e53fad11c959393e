import { Command, CommanderError } from 'commander';
import { ShardlineError } from '../errors/index.js';
import { installOutputMasking, maskSecrets } from './context.js';
import { registerDemo } from './commands/demo.js';
import { registerMap } from './commands/map.js';
import { registerMigrate } from './commands/migrate.js';
import { registerRoute } from './commands/route.js';
import { registerShards } from './commands/shards.js';
import { registerSettle } from './commands/settle.js';
import { registerSettlements } from './commands/settlements.js';
import { registerWorker } from './commands/worker.js';

export function buildProgram(): Command {
  const program = new Command('shardline')
    .description('sharded Postgres data layer for game backends')
    .showHelpAfterError()
    .exitOverride();
  registerMap(program);
  registerDemo(program);
  registerRoute(program);
  registerMigrate(program);
  registerShards(program);
  registerWorker(program);
  registerSettle(program);
  registerSettlements(program);
  return program;
}

async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    // The message only, never the stack or the cause chain (driver objects may hold the URL).
    if (err instanceof ShardlineError) {
      console.error(maskSecrets(`error [${err.code}]: ${err.message}`));
      return 1;
    }
    console.error(maskSecrets(`error: ${err instanceof Error ? err.message : String(err)}`));
    return 1;
  }
}

installOutputMasking();
process.exitCode = await main(process.argv);
