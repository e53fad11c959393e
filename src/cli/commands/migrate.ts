import { statSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { ShardSet } from '../../db/index.js';
import { ValidationError } from '../../errors/index.js';
import { migrateShards, schemaStatus, type MigrateAction, type MigrateProgress, type ShardMigrateResult } from '../../migrate/index.js';
import type { ShardMap, ShardSpec } from '../../shardmap/index.js';
import { collect, env, formatTable, loadMap, positiveInt } from '../context.js';
import { LiveProgress } from '../progress.js';

interface MigrateFlags {
  map?: string;
  shard?: string[];
  concurrency?: number;
  createDatabases?: boolean;
  appRole?: string;
  appMigrations?: string;
}

/** The app migrations folder of --app-migrations (or $SHARDLINE_APP_MIGRATIONS), absolute; refused when it is not a folder. */
export function appMigrationsDir(flag: string | undefined): string | undefined {
  if (flag === undefined || flag === '') return undefined;
  const dir = path.resolve(flag);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) throw new ValidationError('--app-migrations', `${JSON.stringify(flag)} is not a folder (of the app's knex migrations)`);
  return dir;
}

/** The --app-migrations option, defaulting to $SHARDLINE_APP_MIGRATIONS (read here, at the CLI edge). */
export function addAppMigrations(cmd: Command, what: string): Command {
  return cmd.option('--app-migrations <dir>', `${what} (default: $SHARDLINE_APP_MIGRATIONS)`, env.SHARDLINE_APP_MIGRATIONS);
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
  const app = appMigrationsDir(flags.appMigrations);
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
    mapEpoch: map.epoch ?? 0,
    concurrency: flags.concurrency ?? 4,
    createDatabases: flags.createDatabases ?? false,
    ...(flags.appRole ? { appRole: flags.appRole } : {}),
    ...(app === undefined ? {} : { appMigrations: app }),
    onShardStart: (id) => live?.set(id, { kind: 'running' }),
    onProgress: (p: MigrateProgress) => {
      const migration = p.set === 'app' ? `app ${p.migration}` : p.migration;
      if (live) live.set(p.shardId, { kind: 'step', step: p.step, of: p.of, migration });
      else console.log(`[${p.shardId}] ${p.set === 'app' ? 'app ' : ''}${p.step}/${p.of} ${p.migration}`);
    },
    onShardDone: (r) => live?.set(r.shardId, { kind: r.ok ? 'done' : 'failed' }),
  });
  const verb = action === 'latest' ? 'applied' : 'rolled back';
  const changes = (r: ShardMigrateResult) =>
    [
      r.createdDatabase ? 'database created' : '',
      r.changed.length ? `${verb} ${r.changed.join(', ')}` : '',
      r.appChanged?.length ? `${verb} app ${r.appChanged.join(', ')}` : '',
    ].filter((x) => x !== '');
  console.log(
    formatTable(
      ['shard', 'region', 'schema version', ...(app === undefined ? [] : ['app version']), 'result'],
      results.map((r) => [
        r.shardId,
        r.region,
        r.version ?? '(none)',
        ...(app === undefined ? [] : [r.appVersion ?? '(none)']),
        r.ok ? (changes(r).length ? changes(r).join('; ') : 'up to date') : 'FAILED (see below)',
      ]),
    ),
  );
  const failed = results.filter((r) => !r.ok);
  for (const r of failed) console.error(`${r.shardId}: ${r.error ?? 'unknown error'}`);
  if (failed.length) {
    console.error(
      `${failed.length} of ${results.length} shards failed: ${failed.map((r) => r.shardId).join(', ')}; rerun to continue from where each shard stands`,
    );
    if (failed.some((r) => r.errorCode === 'SELF_CLOSURE_VIOLATION')) {
      console.error(
        'a self-closure rule was broken (docs/app-tables.md): fix the migration, or the table by hand ("shardline schema check" lists the faults), then rerun',
      );
    }
    process.exitCode = 1;
  }
}

export function registerMigrate(program: Command): void {
  const migrate = program.command('migrate').description("apply shardline's schema, and the app's own migrations (--app-migrations), to every shard");
  addAppMigrations(
    addCommon(migrate.command('latest').description("apply every pending migration on each shard: shardline's, then the app's")),
    "the app's own migrations, applied after shardline's",
  )
    .option('--create-databases', 'create missing shard databases first (local development)')
    .option(
      '--app-role <name>',
      'role the library and worker run as, granted DML only (default: $SHARDLINE_APP_ROLE, then shardline_app)',
      env.SHARDLINE_APP_ROLE,
    )
    .action((flags: MigrateFlags) => runAction('latest', flags));
  addAppMigrations(
    addCommon(
      migrate
        .command('rollback')
        .description("undo the newest migration on each shard: with --app-migrations the app's, else shardline's (refused while app migrations are applied)"),
    ),
    "undo the app's newest migration instead of shardline's",
  )
    .option('--app-role <name>', 'the application role the migrations granted to (default: $SHARDLINE_APP_ROLE, then shardline_app)', env.SHARDLINE_APP_ROLE)
    .action((flags: MigrateFlags) => runAction('rollback', flags));
  addAppMigrations(
    addCommon(
      migrate
        .command('status')
        .description(
          "schema version (shardline's and the app's) and identity per shard; exits 1 on drift in either, an identity fault or an unreachable shard",
        ),
    ),
    "the app's migrations, to check each shard's app version against (without it the app version is shown, not checked)",
  ).action(async (flags: MigrateFlags) => {
    const app = appMigrationsDir(flags.appMigrations);
    const map = await loadMap(flags.map);
    const report = await schemaStatus(selectShards(map, flags.shard), {
      mapShards: map.shards,
      mapEpoch: map.epoch ?? 0,
      concurrency: flags.concurrency ?? 8,
      ...(app === undefined ? {} : { appMigrations: app }),
    });
    const appCell = (s: (typeof report.shards)[number]) =>
      !s.reachable
        ? '-'
        : !s.app.checked
          ? s.app.version === null
            ? '(none)'
            : `${s.app.version} (not checked)`
          : `${s.app.version ?? '(none)'}${s.app.pending.length ? ` (${s.app.pending.length} pending)` : ''}`;
    const drift = (s: (typeof report.shards)[number]) =>
      [
        s.version === report.expected ? '' : `DRIFT: expected ${report.expected ?? '(none)'}`,
        s.app.problem === undefined ? '' : `APP DRIFT: expected ${report.app.expected ?? '(none)'}`,
      ].filter((x) => x !== '');
    console.log(
      formatTable(
        ['shard', 'region', 'schema version', 'pending', 'app version', 'identity', 'result'],
        report.shards.map((s) => [
          s.shardId,
          s.region,
          s.version ?? '(none)',
          String(s.pending.length),
          appCell(s),
          s.ownershipFault !== undefined ? 'BUCKETS DIFFER (see below)' : s.identityProblem !== undefined ? 'FAULT (see below)' : s.reachable ? 'ok' : '-',
          !s.reachable ? 'UNREACHABLE (see below)' : s.identityProblem !== undefined ? 'REFUSED: identity' : drift(s).length ? drift(s).join('; ') : 'ok',
        ]),
      ),
    );
    for (const s of report.shards) if (!s.reachable) console.error(`${s.shardId}: ${s.error ?? 'unreachable'}`);
    for (const s of report.shards) if (s.identityProblem !== undefined) console.error(`${s.shardId}: identity: ${s.identityProblem}`);
    if (report.unreachable.length) console.error(`unreachable: ${report.unreachable.join(', ')}`);
    if (report.identityProblems.length) console.error(`identity faults: ${report.identityProblems.join(', ')}; the library and the worker refuse these shards`);
    if (report.drift) {
      const behind = report.shards.filter((s) => s.reachable && s.version !== report.expected).map((s) => s.shardId);
      console.error(`drift: ${behind.join(', ')} not at ${report.expected ?? '(none)'}`);
    }
    for (const s of report.shards) if (s.reachable && s.app.problem !== undefined) console.error(`${s.shardId}: app schema: ${s.app.problem}`);
    if (report.app.drift) {
      const off = report.shards.filter((s) => s.reachable && s.app.problem !== undefined).map((s) => s.shardId);
      console.error(`app drift: ${off.join(', ')} not at ${report.app.expected ?? '(none)'}`);
    }
    if (report.unreachable.length || report.identityProblems.length || report.drift || report.app.drift) process.exitCode = 1;
  });
}
