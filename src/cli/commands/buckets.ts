import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ValidationError } from '../../errors/index.js';
import {
  abortMove,
  liveMapJson,
  listMoves,
  moveBuckets,
  moveHealth,
  purgeMove,
  resumeMove,
  verifyBuckets,
  type MoveProgress,
  type MoveReport,
  type MoveRunOptions,
  type MovePausePoint,
} from '../../reshard/index.js';
import { MoverShards } from '../../reshard/session.js';
import type { ShardMap } from '../../shardmap/index.js';
import { cliLogger } from '../cli-logger.js';
import { env, formatTable, loadMap, positiveInt, resolveMapPath } from '../context.js';

/** "1024-1535" or "7" → [lo, hi]. */
export function parseRangeArg(text: string): [number, number] {
  const m = /^\s*(\d{1,4})(?:\s*-\s*(\d{1,4}))?\s*$/.exec(text);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo > hi || hi > 4095) throw new ValidationError('range', `expected a bucket range such as 1024-1535 (0-4095), got ${JSON.stringify(text)}`);
  return [lo, hi];
}

/** "60s", "500ms", "2m", "0"; a bare number is seconds. */
export function parseDuration(name: string) {
  return (text: string): number => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(text);
    if (!m) throw new ValidationError(name, `expected a duration such as 60s, 500ms or 2m, got ${JSON.stringify(text)}`);
    const n = Number(m[1]);
    return Math.round(m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000);
  };
}

/** "16MB", "512kB", "1GB", "4096"; a bare number is bytes. */
export function parseBytes(name: string) {
  return (text: string): number => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(text);
    if (!m) throw new ValidationError(name, `expected a size such as 16MB or 512kB, got ${JSON.stringify(text)}`);
    const unit = (m[2] ?? 'b').toLowerCase();
    return Math.round(Number(m[1]) * (unit === 'gb' ? 2 ** 30 : unit === 'mb' ? 2 ** 20 : unit === 'kb' ? 1024 : 1));
  };
}

const fmtRange = (r: readonly [number, number]) => (r[0] === r[1] ? `${r[0]}` : `${r[0]}-${r[1]}`);

/** A block of live lines (one per table, one for the state), redrawn in place on a terminal. */
class MoveLines {
  private readonly lines = new Map<string, string>();
  private drawn = 0;
  constructor(private readonly out: NodeJS.WriteStream) {}
  set(key: string, text: string): void {
    this.lines.set(key, text);
    const cols = this.out.columns;
    const fit = (l: string) => (cols && l.length >= cols ? l.slice(0, cols - 1) : l);
    this.out.write((this.drawn > 0 ? `\x1b[${this.drawn}A` : '') + [...this.lines.values()].map((l) => `\r\x1b[2K${fit(l)}\n`).join(''));
    this.drawn = this.lines.size;
  }
}

/**
 * Progress as a person reads it: on a terminal a live line per table (rows copied in the current
 * batch and in all) and one for the state; elsewhere a plain line per step, for logs and scripts.
 */
function progressSink(json: boolean): (p: MoveProgress) => void {
  if (json) return () => undefined;
  const perTable = new Map<string, number>();
  if (process.stdout.isTTY === true) {
    const live = new MoveLines(process.stdout);
    return (p) => {
      if (p.table !== undefined) {
        perTable.set(p.table, (perTable.get(p.table) ?? 0) + (p.rows ?? 0));
        live.set(
          `t:${p.table}`,
          `copy ${p.table.padEnd(24)} ${String(perTable.get(p.table)).padStart(10)} rows${p.batch ? ` · batch ${fmtRange(p.batch)}` : ''}`,
        );
      }
      const lag = p.lagBytes === undefined || p.lagBytes === null ? '' : ` · lag ${(p.lagBytes / 2 ** 20).toFixed(1)} MB`;
      live.set(
        'state',
        `move ${p.moveId}: ${p.state}${p.batch ? ` ${fmtRange(p.batch)}` : ''} · ${p.rowsCopied} rows copied${lag}${p.message ? ` · ${p.message}` : ''}`,
      );
    };
  }
  return (p) => {
    if (p.table !== undefined) return;
    const lag = p.lagBytes === undefined || p.lagBytes === null ? '' : ` lag=${p.lagBytes}`;
    console.log(`move ${p.moveId}: ${p.state}${p.batch ? ` ${fmtRange(p.batch)}` : ''} rows=${p.rowsCopied}${lag}${p.message ? ` (${p.message})` : ''}`);
  };
}

/**
 * SHARDLINE_MOVE_PAUSE_AT=<state>[:<n>] (crash tests): at the n-th time (default 1st) the move
 * records that state, the command says so on stderr and waits there to be killed. Read here, at
 * the CLI edge; the library only offers the hook.
 */
function pauseHook(): MoveRunOptions['onState'] {
  const spec = env.SHARDLINE_MOVE_PAUSE_AT;
  if (!spec) return undefined;
  const [state, nth] = spec.split(':');
  let seen = 0;
  return async (s: MovePausePoint, id: string) => {
    if (s !== state || ++seen !== Number(nth ?? 1)) return;
    process.stderr.write(`paused at ${s} (move ${id})\n`);
    await new Promise(() => undefined);
  };
}

function printReport(r: MoveReport, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(r));
    return;
  }
  const freezes = [...r.freezes].sort((a, b) => a - b);
  const p50 = freezes.length ? freezes[Math.floor((freezes.length - 1) / 2)] : undefined;
  console.log(
    `move ${r.id}: ${fmtRange(r.range)} ${r.from} → ${r.to} (${r.mode}) ${r.state}` +
      (r.epoch === null ? '' : ` at epoch ${r.epoch}`) +
      ` · ${r.rowsCopied} rows copied` +
      (freezes.length ? ` · frozen p50 ${p50} ms, max ${freezes.at(-1)} ms over ${freezes.length} batch${freezes.length === 1 ? '' : 'es'}` : '') +
      (r.state === 'moved' ? ` · source copy kept: "shardline buckets purge ${r.id}" when clients have the new routing` : '') +
      (r.purged ? ' · source copy purged' : '') +
      (r.kept?.length
        ? ` · ${r.kept.map(fmtRange).join(',')} had committed before the abort and stay on ${r.to}: "shardline buckets purge ${r.id}" removes their source copy`
        : ''),
  );
}

async function writeMap(map: ShardMap, mapFlag: string | undefined, file: string): Promise<void> {
  const raw = JSON.parse(readFileSync(resolveMapPath(mapFlag), 'utf8')) as Record<string, unknown>;
  const live = await liveMapJson(map, raw);
  writeFileSync(file, `${JSON.stringify(live, null, 2)}\n`);
  console.error(`wrote the live map (epoch ${String(live.epoch)}) to ${file}`);
}

interface MoveFlags {
  map?: string;
  to?: string;
  mode?: string;
  batch?: number;
  maxLag?: number;
  maxFreeze?: number;
  cleanupAfter?: string;
  purge?: boolean;
  writeMap?: string;
  dryRun?: boolean;
  json?: boolean;
  resume?: string;
  abort?: string;
}

export function registerBuckets(program: Command): void {
  const buckets = program.command('buckets').description('bucket ownership and online bucket moves between shards (docs/resharding.md)');

  buckets
    .command('list')
    .description('per shard: the buckets it owns (and at which epoch), incoming, frozen and moved away; active moves')
    .option('--map <file>', 'shard map file')
    .option('--json', 'machine-readable output')
    .action(async (flags: { map?: string; json?: boolean }) => {
      const map = await loadMap(flags.map);
      const shards = new MoverShards(map);
      try {
        const records = await shards.records();
        const moves = await listMoves(map);
        const active = moves.filter((m) => !['done', 'aborted'].includes(m.state));
        if (flags.json) {
          console.log(JSON.stringify({ shards: map.shards.map((s) => ({ shard: s.id, region: s.region, ...records.get(s.id) })), moves: active }));
          return;
        }
        console.log(
          formatTable(
            ['shard', 'region', 'owned (epoch)', 'incoming', 'frozen', 'moved to'],
            map.shards.map((s) => {
              const r = records.get(s.id);
              return [
                s.id,
                s.region,
                r?.owned.map(([a, b, e]) => `${fmtRange([a, b])}@${e}`).join(',') || 'none',
                r?.incoming.map(([a, b, id]) => `${fmtRange([a, b])} (${id})`).join(',') || '-',
                r?.frozen.map(([a, b, id]) => `${fmtRange([a, b])} (${id})`).join(',') || '-',
                r?.movedTo.map(([a, b, to, e]) => `${fmtRange([a, b])}→${to}@${e}`).join(',') || '-',
              ];
            }),
          ),
        );
        for (const m of active) console.log(`move ${m.id}: ${fmtRange(m.range)} ${m.from} → ${m.to} (${m.mode}) ${m.state}`);
      } finally {
        await shards.close();
      }
    });

  buckets
    .command('move')
    .description('move a bucket range to another shard of its region, online; re-running a move resumes it')
    .argument('[range]', 'inclusive bucket range, e.g. 1024-1535')
    .option('--map <file>', 'shard map file')
    .option('--to <shard>', 'the shard that will own the range')
    .option('--mode <mode>', 'freeze (default: any PostgreSQL) or logical (logical replication; needs wal_level=logical)', 'freeze')
    .option('--batch <n>', 'freeze mode: buckets fenced and copied together (default 4)', positiveInt('--batch'))
    .option('--max-lag <size>', 'logical mode: refuse the cut-over while the slot lags more (default 16MB)', parseBytes('--max-lag'))
    .option(
      '--max-freeze <duration>',
      'undo a cut-over (a batch in freeze mode) frozen longer than this (default 5s; 0: no limit)',
      parseDuration('--max-freeze'),
    )
    .option('--cleanup-after <duration>', 'wait this long after the commit point, then purge the source copy (default 60s)', '60s')
    .option('--no-purge', 'keep the source copy (purge later with "shardline buckets purge <id>")')
    .option('--write-map <file>', 'write the live map (owners and epoch after the move) to this file, for the deploy repository')
    .option('--dry-run', 'print the plan and the pre-check results; change nothing')
    .option('--json', 'print the report (or plan) as one JSON line')
    .option('--resume <id>', 'continue a move from its recorded state')
    .option('--abort <id>', 'undo a move that has not reached its commit point')
    .action(async (rangeArg: string | undefined, flags: MoveFlags) => {
      const map = await loadMap(flags.map);
      const json = flags.json === true;
      // The forward sweep runs without Redis: the target's reconciler enqueues what it forwarded.
      const run: MoveRunOptions = { onProgress: progressSink(json), onState: pauseHook(), logger: cliLogger() };
      let report: MoveReport;
      if (flags.resume !== undefined || flags.abort !== undefined) {
        if (rangeArg !== undefined || flags.to !== undefined)
          throw new ValidationError('--resume', 'takes the move id alone: its range and target are recorded');
        report = flags.abort !== undefined ? await abortMove(map, flags.abort, run) : await resumeMove(map, flags.resume as string, run);
      } else {
        if (rangeArg === undefined) throw new ValidationError('range', 'give the bucket range to move, e.g. "shardline buckets move 1024-1535 --to sz-3"');
        if (flags.to === undefined) throw new ValidationError('--to', 'name the shard that will own the range');
        if (flags.mode !== 'freeze' && flags.mode !== 'logical')
          throw new ValidationError('--mode', `must be freeze or logical, got ${JSON.stringify(flags.mode)}`);
        const cleanup = flags.cleanupAfter === 'never' ? null : parseDuration('--cleanup-after')(flags.cleanupAfter ?? '60s');
        report = await moveBuckets({
          map,
          range: parseRangeArg(rangeArg),
          to: flags.to,
          mode: flags.mode,
          purge: flags.purge === false || cleanup === null ? 'never' : 'after-grace',
          graceMs: cleanup ?? 0,
          ...(flags.batch === undefined ? {} : { batchBuckets: flags.batch }),
          ...(flags.maxLag === undefined ? {} : { maxLagBytes: flags.maxLag }),
          ...(flags.maxFreeze === undefined ? {} : { maxFreezeMs: flags.maxFreeze }),
          dryRun: flags.dryRun === true,
          ...run,
        });
        if (flags.dryRun) {
          const p = report.plan;
          if (json) console.log(JSON.stringify(p));
          else if (p) {
            console.log(
              `plan: move ${fmtRange(p.range)} ${p.from} → ${p.to} (${p.mode}, ${p.batches} batch${p.batches === 1 ? '' : 'es'}, first commit at epoch ${p.epoch})`,
            );
            console.log(
              formatTable(
                ['table', 'rows'],
                Object.entries(p.rows).map(([t, n]) => [t, String(n)]),
              ),
            );
            console.log('pre-checks passed; nothing was changed');
          }
          return;
        }
      }
      printReport(report, json);
      if (flags.writeMap !== undefined && report.state !== 'aborted') await writeMap(map, flags.map, flags.writeMap);
    });

  buckets
    .command('moves')
    .description('every move recorded on the shards: state, rows copied, lag, freeze time, artifacts')
    .option('--map <file>', 'shard map file')
    .option('--json', 'a JSON array of { id, range, from, to, mode, state, rowsCopied, lagBytes, frozenMs, artifacts }')
    .action(async (flags: { map?: string; json?: boolean }) => {
      const map = await loadMap(flags.map);
      const moves = await listMoves(map);
      if (flags.json) {
        console.log(
          JSON.stringify(
            moves.map((m) => ({
              id: m.id,
              range: m.range,
              from: m.from,
              to: m.to,
              mode: m.mode,
              state: m.state,
              rowsCopied: m.rowsCopied,
              lagBytes: m.lagBytes,
              frozenMs: m.frozenMs,
              artifacts: m.artifacts,
              epoch: m.epoch,
              error: m.error,
              createdAt: m.createdAt,
            })),
          ),
        );
        return;
      }
      console.log(
        formatTable(
          ['id', 'range', 'from', 'to', 'mode', 'state', 'rows copied', 'lag', 'frozen', 'artifacts'],
          moves.map((m) => [
            m.id,
            fmtRange(m.range),
            m.from,
            m.to,
            m.mode,
            m.state,
            String(m.rowsCopied),
            m.lagBytes === null ? '-' : `${m.lagBytes} B`,
            `${m.frozenMs} ms`,
            [m.artifacts.publication, m.artifacts.slot, m.artifacts.subscription].filter(Boolean).length ? (m.artifacts.slot ?? '') : '-',
          ]),
        ),
      );
      for (const m of moves) if (m.error && !['done', 'aborted', 'moved'].includes(m.state)) console.error(`${m.id}: last error: ${m.error}`);
    });

  buckets
    .command('verify')
    .description('compare a range on its owner with every shard still holding a copy (counts and checksums per bucket and table); exits 1 on a difference')
    .argument('<range>', 'inclusive bucket range')
    .option('--map <file>', 'shard map file')
    .option('--json', 'machine-readable output')
    .action(async (rangeArg: string, flags: { map?: string; json?: boolean }) => {
      const map = await loadMap(flags.map);
      const r = await verifyBuckets(map, parseRangeArg(rangeArg));
      if (flags.json) console.log(JSON.stringify(r));
      else {
        for (const c of r.checks) {
          const what = c.against === null ? 'no other shard holds rows' : `against ${c.against}`;
          console.log(`${fmtRange(c.range)} on ${c.owner}: ${what}: ${c.mismatches.length === 0 ? 'equal' : `${c.mismatches.length} differences`}`);
          for (const m of c.mismatches.slice(0, 20))
            console.log(`  ${m.table} bucket ${m.bucket}: ${m.source.count} rows (sum ${m.source.sum}) vs ${m.target.count} rows (sum ${m.target.sum})`);
        }
      }
      if (!r.ok) process.exitCode = 1;
    });

  buckets
    .command('purge')
    .description("delete the source's copy of a move past its commit point (after clients have the new routing)")
    .argument('<id>', 'the move id')
    .option('--map <file>', 'shard map file')
    .option('--json', 'print the report as one JSON line')
    .action(async (id: string, flags: { map?: string; json?: boolean }) => {
      const map = await loadMap(flags.map);
      printReport(await purgeMove(map, id, { onProgress: progressSink(flags.json === true) }), flags.json === true);
    });
}

/**
 * For `shards check`: a move left frozen (no mover connected: writes to the range are refused until
 * it is resumed or aborted), a move recorded on one of its shards only, and `shardline_mv_%` slots, publications and subscriptions no active
 * move owns, with the WAL a slot holds back. Prints one line each on stderr; returns how many.
 */
export async function moveProblems(map: ShardMap): Promise<number> {
  const health = await moveHealth(map);
  let n = 0;
  for (const h of health) {
    for (const f of h.frozen) {
      n++;
      console.error(
        `${h.shardId}: buckets ${fmtRange(f.range)} left frozen by move ${f.moveId} (no mover running): writes to them are refused; "shardline buckets move --resume ${f.moveId}" or "--abort ${f.moveId}"`,
      );
    }
    for (const m of h.halfRecorded) {
      n++;
      console.error(
        `${h.shardId}: move ${m.moveId} is recorded here but not on ${m.missingOn} (its mover stopped while starting it); "shardline buckets move --resume ${m.moveId}" or "--abort ${m.moveId}"`,
      );
    }
    for (const o of h.orphans) {
      n++;
      const wal = o.retainedBytes === null ? '' : `, holding back ${(o.retainedBytes / 2 ** 20).toFixed(1)} MB of WAL`;
      console.error(`${h.shardId}: replication ${o.kind} ${o.name} belongs to no active move${wal}: drop it (docs/resharding.md, "Orphaned artifacts")`);
    }
  }
  return n;
}
