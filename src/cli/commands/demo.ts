import type { Command } from 'commander';
import { Cleanup, runDemo } from '../../demo/run-demo.js';
import { loadMap, positiveInt, redisUrlFromEnv } from '../context.js';

interface DemoFlags {
  players: number;
  matches: number;
  keep?: boolean;
  map?: string;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run shardline end to end on real servers it starts itself (embedded PostgreSQL per shard, Redis)')
    .option('--players <n>', 'players to simulate', positiveInt('--players'), 3000)
    .option('--matches <n>', 'matches to play and settle', positiveInt('--matches'), 2000)
    .option('--keep', 'leave the servers running and print their URLs (until Ctrl-C)')
    .option('--map <file>', 'use the shards of this map instead of starting servers')
    .action(async (flags: DemoFlags) => {
      const tty = process.stdout.isTTY === true;
      let lastStatus = 0;
      const cleanup = new Cleanup();
      // Ctrl-C reaches every process of the group, so the signal arrives twice (directly and relayed
      // by npm/tsx): a repeat must not fall through to the default handler and kill the cleanup.
      let stopping = false;
      const onSignal = (sig: NodeJS.Signals) => {
        if (stopping) return;
        stopping = true;
        process.stderr.write(`\n${sig}: stopping everything the demo started ...\n`);
        void cleanup.run().finally(() => process.exit(130));
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const result = await runDemo(
        {
          players: flags.players,
          matches: flags.matches,
          keep: flags.keep === true,
          ...(flags.map ? { existing: { map: await loadMap(flags.map), mapFile: flags.map } } : {}),
          redisUrl: redisUrlFromEnv(),
          out: (line) => console.log(line),
          status: (line) => {
            if (tty) process.stdout.write(`\r\x1b[2K${line}`);
            else if (line && Date.now() - lastStatus > 2000) {
              lastStatus = Date.now();
              console.log(line);
            }
          },
        },
        cleanup,
      );
      if (flags.keep) await new Promise<never>(() => undefined); // until Ctrl-C runs the cleanup
      await result.cleanup();
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      if (!result.ok) process.exitCode = 1;
    });
}
