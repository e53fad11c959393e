import type { Command } from 'commander';
import { ShardlineError } from '../../errors/index.js';
import { Router, decodePlayerId, parsePlayerId } from '../../routing/index.js';
import { formatTable, loadMap } from '../context.js';

interface RouteRow {
  id: string;
  region: string;
  shard: string;
  bucket: number;
  createdAt: string;
}

export function registerRoute(program: Command): void {
  program
    .command('route')
    .description('print the region and shard of each player id')
    .argument('<ids...>', 'player ids (decimal)')
    .option('--map <file>', 'shard map file (default: $SHARDLINE_MAP, then ./shardmap/local.json)')
    .option('--json', 'one JSON object per line')
    .action(async (ids: string[], opts: { map?: string; json?: boolean }) => {
      const router = new Router(await loadMap(opts.map));
      const rows: RouteRow[] = [];
      // Every bad id is reported, not just the first: a pasted list is fixed in one go.
      const bad: string[] = [];
      for (const raw of ids) {
        try {
          const id = parsePlayerId(raw);
          const shard = router.shardFor(id);
          const parts = decodePlayerId(id);
          rows.push({ id: raw, region: shard.region, shard: shard.id, bucket: parts.bucket, createdAt: parts.createdAt.toISOString() });
        } catch (err) {
          if (!(err instanceof ShardlineError)) throw err;
          bad.push(`error [${err.code}]: ${err.message}`);
        }
      }
      if (opts.json) for (const r of rows) console.log(JSON.stringify(r));
      else if (rows.length > 0)
        console.log(
          formatTable(
            ['id', 'region', 'shard', 'bucket', 'created'],
            rows.map((r) => [r.id, r.region, r.shard, String(r.bucket), r.createdAt]),
          ),
        );
      for (const line of bad) console.error(line);
      if (bad.length > 0) process.exitCode = 1;
    });
}
