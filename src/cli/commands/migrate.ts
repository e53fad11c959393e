import type { Command } from 'commander';
import { ShardSet } from '../../db/index.js';
import { migrateShards, schemaStatus, type MigrateAction, type MigrateProgress } from '../../migrate/index.js';
import type { ShardMap, ShardSpec } from '../../shardmap/index.js';
import { collect, env, formatTable, loadMap, positiveInt } from '../context.js';
import { LiveProgress } from '../progress.js';

interface MigrateFlags {
  map?: string;
  shard?: string[];
  concurrency?: number;
  createDatabases?: boolean;
  appRole?: string;
}

export function selectShards(map: ShardMap, ids: readonly string[] | undefined): readonly ShardSpec[] {
  if (!ids || ids.length === 0) return map.shards;
  const router = new ShardSet(map).router; // validates names; opens no connection
  return ids.map((id) => router.shard(id));
}

function addCommon(cmd: Command): Command {
  return cmd
    .option('--map <file>', 'shard map file (default: $SHARDLINE_MAP, then shardmap/local.json)')
    .option('--shard <id>', 'only this shard (repeatable, or comma-separated)', collect)
    .option('--concurrency <n>', 'shards migrated at once', positiveInt('--concurrency'), 4);
}

async function runAction(action: MigrateAction, flags: MigrateFlags): Promise<void> {
  const map = await loadMap(flags.map);
  const shards = selectShards(map, flags.shard);
  const live =
    process.stdout.isTTY === true
      ? new LiveProgress(
          shards.map((s) => s.id),
          process.stdout,
        )
      : undefined;
  // Every shard of the map is read first, even with --shard: a map edit is judged as a whole.
  const results = await migrateShards(shards, action, {
    mapShards: map.shards,
    concurrency: flags.concurrency ?? 4,
    createDatabases: flags.createDatabases ?? false,
    ...(flags.appRole ? { appRole: flags.appRole } : {}),
    onShardStart: (id) => live?.set(id, { kind: 'running' }),
    onProgress: (p: MigrateProgress) =>
      live
        ? live.set(p.shardId, { kind: 'step', step: p.step, of: p.of, migration: p.migration })
        : console.log(`[${p.shardId}] ${p.step}/${p.of} ${p.migration}`),
    onShardDone: (r) => live?.set(r.shardId, { kind: r.ok ? 'done' : 'failed' }),
  });
  console.log(
    formatTable(
      ['shard', 'region', 'schema version', 'result'],
      results.map((r) => [
        r.shardId,
        r.region,
        r.version ?? '(none)',
        r.ok
          ? `${r.createdDatabase ? 'database created; ' : ''}${r.changed.length ? `${action === 'latest' ? 'applied' : 'rolled back'} ${r.changed.join(', ')}` : 'up to date'}`
          : 'FAILED (see below)',
      ]),
    ),
  );
  const failed = results.filter((r) => !r.ok);
  for (const r of failed) console.error(`${r.shardId}: ${r.error ?? 'unknown error'}`);
  if (failed.length) {
    console.error(
      `${failed.length} of ${results.length} shards failed: ${failed.map((r) => r.shardId).join(', ')}; rerun to continue from where each shard stands`,
    );
    process.exitCode = 1;
  }
}

export function registerMigrate(program: Command): void {
  const migrate = program.command('migrate').description('apply the schema in migrations/ to every shard');
  addCommon(migrate.command('latest').description('apply every pending migration on each shard'))
    .option('--create-databases', 'create missing shard databases first (local development)')
    .option(
      '--app-role <name>',
      'role the library and worker run as, granted DML only (default: $SHARDLINE_APP_ROLE, then shardline_app)',
      env.SHARDLINE_APP_ROLE,
    )
    .action((flags: MigrateFlags) => runAction('latest', flags));
  addCommon(migrate.command('rollback').description('undo the newest migration on each shard'))
    .option('--app-role <name>', 'the application role the migrations granted to (default: $SHARDLINE_APP_ROLE, then shardline_app)', env.SHARDLINE_APP_ROLE)
    .action((flags: MigrateFlags) => runAction('rollback', flags));
  addCommon(migrate.command('status').description('schema version and identity per shard; exits 1 on drift, an identity fault or an unreachable shard')).action(
    async (flags: MigrateFlags) => {
      const map = await loadMap(flags.map);
      const report = await schemaStatus(selectShards(map, flags.shard), { mapShards: map.shards, concurrency: flags.concurrency ?? 8 });
      console.log(
        formatTable(
          ['shard', 'region', 'schema version', 'pending', 'identity', 'result'],
          report.shards.map((s) => [
            s.shardId,
            s.region,
            s.version ?? '(none)',
            String(s.pending.length),
            s.ownershipFault !== undefined ? 'BUCKETS DIFFER (see below)' : s.identityProblem !== undefined ? 'FAULT (see below)' : s.reachable ? 'ok' : '-',
            !s.reachable
              ? 'UNREACHABLE (see below)'
              : s.identityProblem !== undefined
                ? 'REFUSED: identity'
                : s.version === report.expected
                  ? 'ok'
                  : `DRIFT: expected ${report.expected ?? '(none)'}`,
          ]),
        ),
      );
      for (const s of report.shards) if (!s.reachable) console.error(`${s.shardId}: ${s.error ?? 'unreachable'}`);
      for (const s of report.shards) if (s.identityProblem !== undefined) console.error(`${s.shardId}: identity: ${s.identityProblem}`);
      if (report.unreachable.length) console.error(`unreachable: ${report.unreachable.join(', ')}`);
      if (report.identityProblems.length)
        console.error(`identity faults: ${report.identityProblems.join(', ')}; the library and the worker refuse these shards`);
      if (report.drift) {
        const behind = report.shards.filter((s) => s.reachable && s.version !== report.expected).map((s) => s.shardId);
        console.error(`drift: ${behind.join(', ')} not at ${report.expected ?? '(none)'}`);
      }
      if (report.unreachable.length || report.identityProblems.length || report.drift) process.exitCode = 1;
    },
  );
}
