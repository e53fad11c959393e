import type { Command } from 'commander';
import { schemaCheck } from '../../migrate/index.js';
import { collect, formatTable, loadMap, positiveInt } from '../context.js';
import { selectShards } from './migrate.js';

interface SchemaFlags {
  map?: string;
  shard?: string[];
  concurrency: number;
}

export function registerSchema(program: Command): void {
  const schema = program.command('schema').description("the app's tables on the shards");
  schema
    .command('check')
    .description('check every table of the app on every shard against the self-closure rules (docs/app-tables.md); exits 1 on a fault or an unreachable shard')
    .option('--map <file>', 'shard map file (default: $SHARDLINE_MAP, then shardmap/local.json)')
    .option('--shard <id>', 'only this shard (repeatable, or comma-separated)', collect)
    .option('--concurrency <n>', 'shards read at once', positiveInt('--concurrency'), 8)
    .action(async (flags: SchemaFlags) => {
      const map = await loadMap(flags.map);
      const report = await schemaCheck(selectShards(map, flags.shard), { concurrency: flags.concurrency });
      console.log(
        formatTable(
          ['shard', 'region', 'result'],
          report.shards.map((s) => [
            s.shardId,
            s.region,
            !s.reachable ? 'UNREACHABLE (see below)' : s.faults.length ? `${s.faults.length} FAULT(S) (see below)` : 'ok',
          ]),
        ),
      );
      const faults = report.shards.flatMap((s) => s.faults.map((f) => ({ shardId: s.shardId, ...f })));
      if (faults.length) {
        console.log('');
        console.log(
          formatTable(
            ['shard', 'table', 'column / constraint', 'rule', 'problem'],
            faults.map((f) => [f.shardId, f.table, f.column ?? f.constraint ?? '-', f.rule, f.message]),
          ),
        );
      }
      for (const s of report.shards) if (!s.reachable) console.error(`${s.shardId}: ${s.error ?? 'unreachable'}`);
      if (report.faulty.length)
        console.error(`self-closure faults on ${report.faulty.join(', ')}: see docs/app-tables.md for the rules and what to use instead`);
      if (report.faulty.length || report.unreachable.length) process.exitCode = 1;
    });
}
