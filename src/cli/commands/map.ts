import type { Command } from 'commander';
import { formatTable, loadMap } from '../context.js';

export function registerMap(program: Command): void {
  const map = program.command('map').description('inspect the shard map');
  map
    .command('check')
    .description('validate the shard map and print its regions, shards and bucket counts')
    .option('--map <file>', 'shard map file (default: $SHARDLINE_MAP, then shardmap/local.json)')
    .action(async (opts: { map?: string }) => {
      const m = await loadMap(opts.map);
      console.log(`shard map ${m.file}: valid (${m.regions.length} regions, ${m.shards.length} shards, 4096 buckets)`);
      console.log(
        formatTable(
          ['region', 'shard', 'buckets', 'ranges', 'connection'],
          m.shards.map((s) => [
            s.region,
            s.id,
            String(s.bucketCount),
            s.buckets.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',') || '(none yet)',
            s.connectionRef,
          ]),
        ),
      );
    });
}
