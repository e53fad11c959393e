import type { Command } from 'commander';
import { schemaStatus } from '../../migrate/index.js';
import { moveProblems } from './buckets.js';
import { collect, formatTable, loadMap } from '../context.js';
import { selectShards } from './migrate.js';
import { describeLag, replicaReport } from '../../db/replicas.js';

export function registerShards(program: Command): void {
  const shards = program.command('shards').description('inspect the shards of the map');
  shards
    .command('check')
    .description('reachability, identity and schema version per shard, and reachability, identity and lag per replica; exits 1 on any problem')
    .option('--map <file>', 'shard map file')
    .option('--shard <id>', 'only this shard (repeatable)', collect)
    .action(async (flags: { map?: string; shard?: string[] }) => {
      const map = await loadMap(flags.map);
      const report = await schemaStatus(selectShards(map, flags.shard), { mapShards: map.shards, mapEpoch: map.epoch ?? 0 });
      console.log(
        formatTable(
          ['shard', 'region', 'target', 'reachable', 'identity', 'schema version'],
          report.shards.map((s) => [
            s.shardId,
            s.region,
            s.target,
            s.reachable ? 'yes' : 'NO (see below)',
            !s.reachable
              ? '-'
              : s.identity === null
                ? 'MISSING (not migrated)'
                : s.identity.shardId !== s.shardId
                  ? `WRONG: database is "${s.identity.shardId}"`
                  : s.ownershipFault !== undefined
                    ? 'BUCKETS DIFFER (see below)'
                    : s.identityProblem !== undefined
                      ? 'FAULT (see below)'
                      : 'ok',
            s.reachable ? `${s.version ?? '(none)'}${s.version === report.expected ? '' : ` (expected ${report.expected ?? '(none)'})`}` : '-',
          ]),
        ),
      );
      for (const s of report.shards) if (!s.reachable) console.error(`${s.shardId}: ${s.error ?? 'unreachable'}`);
      for (const s of report.shards) if (s.identityProblem !== undefined) console.error(`${s.shardId}: identity: ${s.identityProblem}`);
      if (report.ownershipFaults.length)
        console.error(`bucket ownership faults: ${report.ownershipFaults.join(', ')}; the library, the worker and the settle commands refuse these shards`);
      if (report.unreachable.length || report.identityProblems.length || report.drift) process.exitCode = 1;
      if ((await moveProblems(map)) > 0) process.exitCode = 1;
      // Replicas (map "replicas"): reachable, stamped as their shard, a standby, and their lag. Reads
      // fall back to the primary when one is not usable, so this is where an operator sees it.
      const replicas = await replicaReport(selectShards(map, flags.shard));
      if (replicas.length > 0) {
        console.log(
          `\n${formatTable(
            ['shard', 'replica', 'target', 'reachable', 'identity', 'lag'],
            replicas.map((r) => [
              r.shardId,
              String(r.replica),
              r.target,
              r.reachable ? 'yes' : 'NO (see below)',
              !r.reachable ? '-' : r.identity === r.shardId ? 'ok' : `WRONG: ${r.identity === null ? 'no stamp' : `database is "${r.identity}"`}`,
              describeLag(r),
            ]),
          )}`,
        );
        for (const r of replicas) if (r.problem !== undefined) console.error(`${r.shardId} replica ${r.replica}: ${r.problem}`);
        if (replicas.some((r) => r.problem !== undefined)) process.exitCode = 1;
      }
    });
}
