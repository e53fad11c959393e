// `npm run bench`: every benchmark of the project, each beside a baseline measured in the same run.
// Prints a table and writes bench/results.json (or JSON to stdout with --json) to compare commits.
import { readdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import type { BenchFn, BenchResult } from './types.js';
import { meetsTarget, printResults } from './report.js';

const dir = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const json = args.includes('--json');
const only = args.filter((a) => !a.startsWith('--'));

const files = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  .sort();

const log = (msg: string) => (json ? process.stderr.write(`${msg}\n`) : console.log(msg));
const results: BenchResult[] = [];
const failures: string[] = [];
for (const f of files) {
  log(`running ${f} ...`);
  try {
    const mod = (await import(pathToFileURL(path.join(dir, f)).href)) as { run: BenchFn };
    results.push(...(await mod.run()));
  } catch (err) {
    failures.push(`${f}: ${(err as Error).message}`);
    log(`  failed: ${(err as Error).message}`);
  }
}

let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
} catch {
  /* not a checkout */
}
const report = { commit, date: new Date().toISOString(), cpus: (await import('node:os')).cpus().length, results, failures };
if (json) {
  console.log(JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2));
} else {
  console.log('');
  printResults(results);
  const out = path.join(dir, 'results.json');
  writeFileSync(out, JSON.stringify(report, null, 2));
  const missed = results.filter((r) => meetsTarget(r) === false).map((r) => r.name);
  console.log(
    `\n${results.length} results, ${missed.length} below target${missed.length ? ` (${missed.join('; ')})` : ''}; written to ${path.relative(process.cwd(), out)}`,
  );
  for (const f of failures) console.log(`FAILED ${f}`);
}
process.exitCode = failures.length ? 1 : 0;
