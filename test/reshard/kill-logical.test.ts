import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { writeMapFile } from '../support/maps.js';
import { waitFor } from '../support/wait.js';
import { seedBuckets } from './move-support.js';
import { createLogicalShards } from './move-support-logical.js';

interface Rec {
  owned: [number, number, number][];
  incoming: unknown[];
  frozen: unknown[];
}

const COUNTS = `SELECT (SELECT count(*) FROM players WHERE ((player_id >> 10) & 4095) BETWEEN $1 AND $2)::int AS players,
                       (SELECT count(*) FROM player_stats WHERE ((player_id >> 10) & 4095) BETWEEN $1 AND $2)::int AS stats,
                       (SELECT count(*) FROM settlement_ledger WHERE ((player_id >> 10) & 4095) BETWEEN $1 AND $2)::int AS ledger,
                       (SELECT count(*) FROM identities WHERE bucket BETWEEN $1 AND $2)::int AS identities,
                       (SELECT count(*) FROM settlement_inbox_claims
                         WHERE (((get_byte(sha256(convert_to(match_id, 'UTF8')), 2) & 15) << 8) | get_byte(sha256(convert_to(match_id, 'UTF8')), 3)) BETWEEN $1 AND $2)::int AS claims`;

const owns = (r: Rec, lo: number, hi: number) => r.owned.some(([a, b]) => a <= lo && hi <= b);

/**
 * The logical-mode mover CLI SIGKILLed at every state boundary, then resumed or, separately,
 * aborted: both converge (one owner, the source's rows exactly), and no replication slot (the
 * move's or an initial-sync one), publication or subscription is left on either server.
 */
describe('a killed logical-mode mover converges on --resume and on --abort, leaving no replication artifact', { timeout: 240_000 }, () => {
  let s: Awaited<ReturnType<typeof createLogicalShards>>;
  let mapFile: string;
  const STATES = ['planned', 'copying', 'synced', 'fenced', 'copied', 'verified', 'cleaned', 'switched', 'copying:2', 'moved'] as const;
  const cases = STATES.flatMap((state) => (['resume', 'abort'] as const).map((how) => ({ state, how })));
  const rangeOf = (i: number): [number, number] => [2000 + i * 4, 2000 + i * 4 + 3];

  beforeAll(async () => {
    s = await createLogicalShards();
    await seedBuckets(s, 2000, 2000 + cases.length * 4 - 1, 10);
    mapFile = writeMapFile(s.mapJson);
  }, 180_000);
  afterAll(async () => {
    await s?.cleanup();
  });

  it.each(cases.map((c, i) => ({ ...c, i })))('killed at $state, then --$how', async ({ state, how, i }) => {
    const [lo, hi] = rangeOf(i);
    const before = (await s.query(0, COUNTS, [lo, hi]))[0];
    const cli = startCli(['buckets', 'move', `${lo}-${hi}`, '--to', 'sz-2', '--mode', 'logical', '--cleanup-after', '0s', '--map', mapFile], {
      env: { SHARDLINE_MOVE_PAUSE_AT: state },
    });
    const id = await waitFor(
      `pause at ${state}`,
      async () => /paused at \S+ \(move ([a-z0-9]+)\)/.exec(cli.stderr())?.[1] ?? (cli.child.exitCode !== null ? 'exited' : null),
      90_000,
    );
    expect(id, cli.output()).not.toBe('exited');
    cli.child.kill('SIGKILL');
    await cli.done;

    const committed = ['switched', 'copying:2', 'moved'].includes(state);
    const second = await runCli(['buckets', 'move', `--${how}`, id, '--map', mapFile], { timeoutMs: 120_000 });
    if (how === 'abort' && committed) {
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(/error \[MOVE_REFUSED\]/);
      const resumed = await runCli(['buckets', 'move', '--resume', id, '--map', mapFile], { timeoutMs: 120_000 });
      expect(resumed.code, resumed.stderr).toBe(0);
    } else {
      expect(second.code, second.stderr).toBe(0);
    }
    const moved = how === 'resume' || committed;

    const [src] = await s.query<{ value: Rec }>(0, `SELECT value FROM shardline_meta WHERE key = 'ownership'`);
    const [dst] = await s.query<{ value: Rec }>(1, `SELECT value FROM shardline_meta WHERE key = 'ownership'`);
    expect(src!.value.frozen).toEqual([]);
    expect(dst!.value.incoming).toEqual([]);
    expect(owns(dst!.value, lo, hi)).toBe(moved);
    expect(owns(src!.value, lo, hi)).toBe(!moved);
    const zero = { players: 0, stats: 0, ledger: 0, identities: 0, claims: 0 };
    expect((await s.query(1, COUNTS, [lo, hi]))[0]).toEqual(moved ? before : zero);
    expect((await s.query(0, COUNTS, [lo, hi]))[0]).toEqual(moved ? zero : before);
    expect(await s.query(0, `SELECT slot_name FROM pg_replication_slots`)).toEqual([]);
    expect(await s.query(0, `SELECT pubname FROM pg_publication`)).toEqual([]);
    expect(await s.query(1, `SELECT subname FROM pg_subscription`)).toEqual([]);
    const check = await runCli(['shards', 'check', '--map', mapFile]);
    expect(check.stderr).not.toMatch(/left frozen|belongs to no active move/);
  });
});
