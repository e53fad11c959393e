import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { waitFor } from '../support/wait.js';

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
    expect(r.stdout).toMatch(/ok {3}every player logs in by username as the player registered: 300 of 300 found/);
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
    const demo = startCli(['demo', '--players', '3000', '--matches', '2000'], { timeoutMs: 85_000 });
    // Interrupt once the servers are up and players are being created: the worst moment to leak.
    const simulating = await waitFor('the demo to simulate', async () => /simulating/.test(demo.output()), 60_000).catch(() => false);
    expect(simulating, demo.output()).toBe(true);
    // A terminal's Ctrl-C reaches every process of the group; npm or tsx relay it once more.
    demo.child.kill('SIGINT');
    demo.child.kill('SIGINT');
    expect((await demo.done).code).toBe(130);
    expect(demo.output()).toMatch(/SIGINT: stopping everything the demo started/);
    expect(leftBehind(before)).toEqual([]);
  }, 90_000);
});
