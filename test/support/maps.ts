import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Writes a shard map (e.g. TestShards.mapJson) as map.json in a new temp directory of its own and
 * returns the file's path, for the CLI and other subprocesses. The directory is the test's to put
 * other files beside the map (a match file, a secret).
 */
export function writeMapFile(map: unknown): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'shardline-map-'));
  const file = path.join(dir, 'map.json');
  writeFileSync(file, JSON.stringify(map, null, 2));
  return file;
}
