import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { validateShardMap, type ShardMap } from '../shardmap/index.js';
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from './embedded-postgres.js';

/** The demo's own cluster: 3 regions, 4 shards, one real PostgreSQL server per shard. */
const DEMO_LAYOUT = [
  { id: 'sz-1', region: 'shenzhen', buckets: '0-1023' },
  { id: 'sz-2', region: 'shenzhen', buckets: '1024-2047' },
  { id: 'sc-1', region: 'sichuan', buckets: '2048-3071' },
  { id: 'na-1', region: 'north-america', buckets: '3072-4095' },
] as const;

export interface DemoCluster {
  map: ShardMap;
  /** Where the map the demo runs on is written (so `shardline ... --map FILE` can inspect it). */
  mapFile: string;
  tempDir: string;
  servers: EmbeddedPostgresServer[];
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Run on the shards of this (already loaded and validated) map instead of starting servers. */
  existing?: { map: ShardMap; mapFile: string };
  log: (line: string) => void;
  /**
   * Told at once how to stop what has started so far, before startCluster returns, so a Ctrl-C
   * during start-up still stops every server already up and removes the temp folder.
   */
  onStarted?: (stop: () => Promise<void>) => void;
}

/** Starts one embedded server per demo shard (in parallel), or uses the shards of an existing map. */
export async function startCluster(options: ClusterOptions): Promise<DemoCluster> {
  const tempDir = await mkdtemp(path.join(tmpdir(), 'shardline-demo-'));
  const removeTemp = () => rm(tempDir, { recursive: true, force: true });
  if (options.existing) {
    options.onStarted?.(removeTemp);
    return { ...options.existing, tempDir, servers: [], stop: removeTemp };
  }
  // Every server is stoppable from the moment it exists, also one still starting.
  const stops: (() => Promise<void>)[] = [];
  let stopping: Promise<void> | undefined;
  const stopAll = () =>
    (stopping ??= (async () => {
      await Promise.all(stops.map((stop) => stop().catch(() => undefined)));
      await removeTemp();
    })());
  options.onStarted?.(stopAll);
  const servers: EmbeddedPostgresServer[] = [];
  try {
    const started = await Promise.allSettled(DEMO_LAYOUT.map((s) => startEmbeddedPostgres(tempDir, s.id, { onCreated: (stop) => stops.push(stop) })));
    for (const r of started) if (r.status === 'fulfilled') servers.push(r.value);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (err) {
    await stopAll();
    throw err;
  }
  const raw = {
    version: 1,
    name: 'demo',
    buckets: 4096,
    regions: [...new Set(DEMO_LAYOUT.map((s) => s.region))],
    shards: DEMO_LAYOUT.map((s, i) => ({ id: s.id, region: s.region, connection: servers[i]!.urlFor('shardline'), buckets: [s.buckets] })),
  };
  const mapFile = path.join(tempDir, 'demo-map.json');
  await writeFile(mapFile, JSON.stringify(raw, null, 2));
  for (const [i, s] of servers.entries()) options.log(`  started PostgreSQL for ${DEMO_LAYOUT[i]!.id} on 127.0.0.1:${s.port}`);
  return { map: validateShardMap(raw, { file: mapFile }), mapFile, tempDir, servers, stop: stopAll };
}
