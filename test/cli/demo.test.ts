import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';

// The README's first command, small: real embedded PostgreSQL servers, the machine's Redis.
const demoDirs = () => new Set(readdirSync(tmpdir()).filter((d) => d.startsWith('shardline-demo-')));
const leftBehind = (before: Set<string>) => [...demoDirs()].filter((d) => !before.has(d));

describe('shardline demo (subprocess)', () => {
  it('runs to its report with every check ok, exits 0 and removes what it started', async () => {
    const before = demoDirs();
    const r = await runCli(['demo', '--players', '300', '--matches', '60'], { timeoutMs: 110_000 });
    expect(r.stderr).not.toMatch(/^error/m);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/top 10 of shenzhen: 1\. /);
    expect(r.stdout).toMatch(/ok {3}every submitted result applied once: 180 ledger rows for 180 results submitted/);
    expect(r.stdout).not.toMatch(/^FAIL/m);
    expect(r.stdout).toMatch(/demo passed/);
    expect(leftBehind(before)).toEqual([]);
  }, 120_000);

  it('exits 1 when the run cannot complete, and still removes its servers', async () => {
    const before = demoDirs();
    const r = await runCli(['demo', '--players', '2', '--matches', '1'], { timeoutMs: 60_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no room has 3 players/);
    expect(leftBehind(before)).toEqual([]);
  }, 70_000);

  it('on SIGINT stops everything it started and exits 130, also when the signal comes twice', async () => {
    const before = demoDirs();
    const child = spawn(process.execPath, ['src/cli/bin.js', 'demo', '--players', '3000', '--matches', '2000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    // Interrupt once the servers are up and players are being created: the worst moment to leak.
    const deadline = Date.now() + 60_000;
    while (!/simulating/.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(out).toMatch(/simulating/);
    // A terminal's Ctrl-C reaches every process of the group; npm or tsx relay it once more.
    child.kill('SIGINT');
    child.kill('SIGINT');
    expect(await code).toBe(130);
    expect(out).toMatch(/SIGINT: stopping everything the demo started/);
    expect(leftBehind(before)).toEqual([]);
  }, 90_000);
});
