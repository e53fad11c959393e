import type { Command } from 'commander';
import { Router, decodePlayerId, parsePlayerId } from '../../routing/index.js';
import { formatTable, loadMap } from '../context.js';

export function registerRoute(program: Command): void {
  program
    .command('route')
    .description('print the region and shard of each player id')
    .argument('<ids...>', 'player ids (decimal)')
    .option('--map <file>', 'shard map file')
    .option('--json', 'one JSON object per line')
    .action(async (ids: string[], opts: { map?: string; json?: boolean }) => {
      const router = new Router(await loadMap(opts.map));
      const rows = ids.map((raw) => {
        const id = parsePlayerId(raw);
        const shard = router.shardFor(id);
        const parts = decodePlayerId(id);
        return { id: raw, region: shard.region, shard: shard.id, bucket: parts.bucket, createdAt: parts.createdAt.toISOString() };
      });
      if (opts.json) for (const r of rows) console.log(JSON.stringify(r));
      else console.log(formatTable(['id', 'region', 'shard', 'bucket', 'created'], rows.map((r) => [r.id, r.region, r.shard, String(r.bucket), r.createdAt])));
    });
}
