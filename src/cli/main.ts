import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ShardlineError } from '../errors/index.js';
import { installOutputMasking, maskSecrets } from './context.js';
import { registerBuckets } from './commands/buckets.js';
import { registerDemo } from './commands/demo.js';
import { registerMap } from './commands/map.js';
import { registerMigrate } from './commands/migrate.js';
import { registerRoute } from './commands/route.js';
import { registerSchema } from './commands/schema.js';
import { registerShards } from './commands/shards.js';
import { registerSettle } from './commands/settle.js';
import { registerSettlements } from './commands/settlements.js';
import { registerBoards } from './commands/boards.js';
import { registerWorker } from './commands/worker.js';

/**
 * The version in the package's own package.json: two levels up in a clone (src/cli), three in a
 * build (dist/src/cli). Looked up by walking up, so it is right in both.
 */
function packageVersion(): string {
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'shardline' && pkg.version) return pkg.version;
    } catch {
      // not this level
    }
  }
  return 'unknown';
}

export function buildProgram(): Command {
  const program = new Command('shardline')
    .description('sharded Postgres data layer for game backends')
    .version(packageVersion(), '-V, --version', 'print the shardline version')
    .showHelpAfterError()
    .exitOverride();
  registerMap(program);
  registerDemo(program);
  registerRoute(program);
  registerMigrate(program);
  registerSchema(program);
  registerShards(program);
  registerBuckets(program);
  registerWorker(program);
  registerSettle(program);
  registerSettlements(program);
  registerBoards(program);
  return program;
}

/**
 * The one way the CLI reports a failure: `error [CODE]: message` (the message carries any hint),
 * never the stack or the cause chain (driver objects may hold the URL), masked like all output.
 */
function reportError(err: unknown): void {
  if (err instanceof ShardlineError) console.error(maskSecrets(`error [${err.code}]: ${err.message}`));
  else console.error(maskSecrets(`error: ${err instanceof Error ? err.message : String(err)}`));
}

async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    reportError(err);
    return 1;
  }
}

installOutputMasking();
// A failure outside the command's own promise (a driver's stray rejection or 'error' event) gets
// the same one line and exit 1, instead of Node's default dump with a stack.
process.on('uncaughtException', (err) => {
  reportError(err);
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  reportError(err);
  process.exit(1);
});
process.exitCode = await main(process.argv);
