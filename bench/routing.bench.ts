import { pathToFileURL } from 'node:url';
import { Router, loadShardMap, type PlayerId } from '../src/index.js';
import type { BenchResult } from './types.js';
import { printResults } from './report.js';

const KEYS = 100_000;
const ROUNDS = 30;

/** Lookups per second of `fn` over `keys`, best of several rounds (least disturbed by other load). */
function opsPerSecond<K>(keys: readonly K[], fn: (k: K) => unknown): number {
  let best = 0;
  let sink = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < keys.length; i++) if (fn(keys[i] as K)) sink++;
    const ns = Number(process.hrtime.bigint() - t0);
    best = Math.max(best, (keys.length * 1e9) / ns);
  }
  if (sink < 0) console.log(sink); // keeps the loop from being optimised away
  return best;
}

export async function run(): Promise<BenchResult[]> {
  const router = new Router(await loadShardMap(new URL('../shardmap/local.json', import.meta.url).pathname));
  const ids: PlayerId[] = Array.from({ length: KEYS }, (_, i) => router.newPlayerId(router.regions[i % router.regions.length]!));
  // The baseline: the cheapest lookup a hand-rolled router could do, a Map from id to shard.
  const table = new Map<PlayerId, string>(ids.map((id) => [id, router.shardFor(id).id]));
  opsPerSecond(ids, (id) => router.shardFor(id)); // warm-up for both
  opsPerSecond(ids, (id) => table.get(id));
  const baseline = opsPerSecond(ids, (id) => table.get(id));
  const value = opsPerSecond(ids, (id) => router.shardFor(id));
  return [
    {
      name: 'routing: shardFor',
      unit: 'lookups/s',
      value,
      baselineName: `Map.get over ${KEYS} keys`,
      baseline,
      ratio: value / baseline,
      target: '>= 0.5',
    },
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) printResults(await run());
