import { spawn, spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { RUN_PREFIX, uniqueName, urlFor } from '../support/env.js';
import { SHARDLINE_BIN, type CliResult } from '../support/cli.js';
import { writeMapFile } from '../support/maps.js';
import { dropDatabases } from '../support/shards.js';

// util-linux `script` gives the CLI a real pseudo-terminal without a native pty dependency.
const hasScript = spawnSync('which', ['script']).status === 0;

const shellQuote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`;

/** Runs the real bin under a pseudo-terminal; stdout is everything the terminal received. */
function runCliInTty(args: readonly string[]): Promise<CliResult> {
  const command = [process.execPath, SHARDLINE_BIN, ...args].map(shellQuote).join(' ');
  return new Promise((resolve, reject) => {
    // -e: exit with the command's code; /dev/null: keep no typescript file.
    const child = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** What a reader sees line by line, minus the escape sequences that placed it. */
const plain = (text: string) =>
  text
    .replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
    .replaceAll('\r', '')
    .split('\n');

const dbs = [uniqueName(RUN_PREFIX + 'tty'), uniqueName(RUN_PREFIX + 'tty')];
afterAll(() => dropDatabases(dbs));

describe.skipIf(!hasScript)(`migrate on a terminal${hasScript ? '' : ' (skipped: util-linux `script` is not on PATH)'}`, () => {
  it('shows one line per shard redrawn in place, leaves the final lines, then the table', async () => {
    const mapFile = writeMapFile({
      version: 1,
      buckets: 4096,
      regions: ['shenzhen', 'sichuan'],
      shards: [
        { id: 'sz-1', region: 'shenzhen', connection: urlFor(dbs[0]!), buckets: ['0-2047'] },
        { id: 'sc-1', region: 'sichuan', connection: urlFor(dbs[1]!), buckets: ['2048-4095'] },
      ],
    });
    const r = await runCliInTty(['migrate', 'latest', '--map', mapFile, '--create-databases', '--concurrency', '2']);
    expect(r.code, r.stdout + r.stderr).toBe(0);

    expect(r.stdout).toContain('\x1b[2A'); // up over both shard lines: redrawn, not appended
    expect(r.stdout).not.toMatch(/\[sz-1\] \d+\/\d+/); // the plain-line format is for pipes only
    const lines = plain(r.stdout);
    const header = lines.findIndex((l) => /^shard\s+region\s+schema version\s+result/.test(l));
    expect(header, r.stdout).toBeGreaterThanOrEqual(2);
    expect(lines.slice(header - 2, header)).toEqual(['sz-1  done', 'sc-1  done']);
    expect(r.stdout).toMatch(/sz-1\s+shenzhen\s+\d{4}_\w+\s+database created; applied 0001_\w+/);
    expect(r.stdout).toMatch(/sc-1\s+sichuan\s+\d{4}_\w+\s+database created; applied 0001_\w+/);
  });
});
