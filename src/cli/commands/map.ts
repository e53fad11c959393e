import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { liveMapJson } from '../../reshard/index.js';
import { formatTable, loadMap, resolveMapPath } from '../context.js';

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
  map
    .command('write')
    .argument('<file>', 'where to write the current map (may be the map file itself)')
    .description("write the map as the shards' ownership records stand now (owners and epoch), for the deploy repository")
    .option('--map <file>', 'shard map file (default: $SHARDLINE_MAP, then shardmap/local.json)')
    .action(async (file: string, opts: { map?: string }) => {
      const m = await loadMap(opts.map);
      const raw = JSON.parse(readFileSync(resolveMapPath(opts.map), 'utf8')) as Record<string, unknown>;
      const live = await liveMapJson(m, raw);
      writeFileSync(file, `${JSON.stringify(live, null, 2)}\n`);
      console.log(`wrote the current map (epoch ${String(live.epoch)}) to ${file}`);
    });
}
