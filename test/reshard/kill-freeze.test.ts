import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { writeMapFile } from '../support/maps.js';
import { waitFor } from '../support/wait.js';
import { createMoveShards, seedBuckets, type MoveShards } from './move-support.js';

interface Rec {
  owned: [number, number, number][];
  incoming: unknown[];
  frozen: unknown[];
  movedTo: [number, number, string, number][];
}

const PER_BUCKET = `SELECT b, (SELECT count(*) FROM players WHERE ((player_id >> 10) & 4095) = b)::int AS players,
                          (SELECT count(*) FROM player_stats WHERE ((player_id >> 10) & 4095) = b)::int AS stats,
                          (SELECT count(*) FROM settlement_ledger WHERE ((player_id >> 10) & 4095) = b)::int AS ledger,
                          (SELECT count(*) FROM identities WHERE bucket = b)::int AS identities
                     FROM generate_series($1::int, $2::int) b ORDER BY b`;

const owns = (r: Rec, b: number) => r.owned.some(([lo, hi]) => lo <= b && b <= hi);

/**
 * The mover CLI SIGKILLed at every state boundary of a freeze-mode move (two batches) and between
 * the move row's writes on its two shards, then the move resumed or, separately, aborted: both
 * converge to one owner per bucket with exactly the rows the source had, nothing frozen or
 * incoming left, both move rows at the same end, and `shards check` clean.
 */
describe('a killed freeze-mode mover converges on --resume and on --abort', { timeout: 240_000 }, () => {
  let s: MoveShards;
  let mapFile: string;
  const expected = new Map<number, unknown>();
  // Each case moves its own 8 buckets, in batches of 4.
  // 'planned-on-target': between the move row's two first writes (the target's written, not the source's).
  const STATES = ['planned-on-target', 'planned', 'fenced', 'copied', 'verified', 'switched', 'copying', 'moved', 'purging'] as const;
  const cases = STATES.flatMap((state) => (['resume', 'abort'] as const).map((how) => ({ state, how })));
  const rangeOf = (i: number): [number, number] => [1000 + i * 8, 1000 + i * 8 + 7];

  beforeAll(async () => {
    s = await createMoveShards();
    await seedBuckets(s, 1000, 1000 + cases.length * 8 - 1, 2);
    mapFile = writeMapFile(s.mapJson);
    for (const row of await s.query<{ b: number }>(0, PER_BUCKET, [1000, 1000 + cases.length * 8 - 1])) {
      const { b, ...counts } = row as { b: number } & Record<string, number>;
      expected.set(b, counts);
    }
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  it.each(cases.map((c, i) => ({ ...c, i })))('killed at $state, then --$how', async ({ state, how, i }) => {
    const [lo, hi] = rangeOf(i);
    const cli = startCli(['buckets', 'move', `${lo}-${hi}`, '--to', 'sz-2', '--batch', '4', '--cleanup-after', '0s', '--map', mapFile], {
      env: { SHARDLINE_MOVE_PAUSE_AT: state },
    });
    const id = await waitFor(
      `pause at ${state}`,
      async () => /paused at \S+ \(move ([a-z0-9]+)\)/.exec(cli.stderr())?.[1] ?? (cli.child.exitCode !== null ? 'exited' : null),
      60_000,
    );
    expect(id, cli.output()).not.toBe('exited');
    cli.child.kill('SIGKILL');
    await cli.done;
    if (state === 'planned-on-target') {
      expect(await s.query(0, `SELECT id FROM shardline_moves WHERE id = $1`, [id])).toEqual([]);
      const half = await runCli(['shards', 'check', '--map', mapFile]);
      expect(half.code).toBe(1);
      expect(half.stderr).toContain(`sz-2: move ${id} is recorded here but not on sz-1`);
    }

    const second = await runCli(['buckets', 'move', `--${how}`, id, '--map', mapFile]);
    const committedWhole = ['moved', 'purging'].includes(state);
    if (how === 'abort' && committedWhole) {
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(/error \[MOVE_REFUSED\]: .*past its commit point/);
      const resumed = await runCli(['buckets', 'move', '--resume', id, '--map', mapFile]);
      expect(resumed.code, resumed.stderr).toBe(0);
    } else {
      expect(second.code, second.stderr).toBe(0);
    }

    const [src] = await s.query<{ value: Rec }>(0, `SELECT value FROM shardline_meta WHERE key = 'ownership'`);
    const [dst] = await s.query<{ value: Rec }>(1, `SELECT value FROM shardline_meta WHERE key = 'ownership'`);
    expect(src!.value.frozen).toEqual([]);
    expect(dst!.value.incoming).toEqual([]);
    const srcRows = await s.query<{ b: number }>(0, PER_BUCKET, [lo, hi]);
    const dstRows = await s.query<{ b: number }>(1, PER_BUCKET, [lo, hi]);
    const moved: number[] = [];
    for (let b = lo; b <= hi; b++) {
      const onTarget = owns(dst!.value, b);
      expect(onTarget !== owns(src!.value, b), `bucket ${b} has one owner`).toBe(true);
      const { b: _b1, ...t } = dstRows[b - lo] as Record<string, number>;
      const { b: _b2, ...o } = srcRows[b - lo] as Record<string, number>;
      if (onTarget) {
        moved.push(b);
        expect(t, `bucket ${b} on the target`).toEqual(expected.get(b));
        // Moved and purged (resume runs to the end with --cleanup-after 0s); an abort leaves the
        // committed batch's source copy for "buckets purge" (checked below).
        if (how === 'resume' || committedWhole) expect(o).toEqual({ players: 0, stats: 0, ledger: 0, identities: 0 });
        else expect(o).toEqual(expected.get(b));
      } else {
        expect(o, `bucket ${b} on the source`).toEqual(expected.get(b));
        expect(t).toEqual({ players: 0, stats: 0, ledger: 0, identities: 0 });
      }
    }
    if (how === 'resume' || committedWhole) expect(moved).toHaveLength(8);
    // An abort undoes what did not commit: the first batch commits at `switched`.
    else if (['switched', 'copying'].includes(state)) {
      expect(moved).toEqual([lo, lo + 1, lo + 2, lo + 3]);
      expect(second.stdout).toMatch(/aborted/);
      const purged = await runCli(['buckets', 'purge', id, '--map', mapFile]);
      expect(purged.code, purged.stderr).toBe(0);
      const left = await s.query<{ n: number }>(0, `SELECT count(*)::int AS n FROM players WHERE ((player_id >> 10) & 4095) BETWEEN $1 AND $2`, [lo, lo + 3]);
      expect(left).toEqual([{ n: 0 }]);
    } else expect(moved).toEqual([]);

    const moves = JSON.parse((await runCli(['buckets', 'moves', '--json', '--map', mapFile])).stdout) as { id: string; state: string }[];
    const end = how === 'resume' || committedWhole ? 'done' : 'aborted';
    expect(moves.find((m) => m.id === id)?.state).toBe(end);
    // Both shards' rows say so (the source's written by the resume or abort when the kill left none).
    for (const i of [0, 1] as const) expect(await s.query(i, `SELECT state FROM shardline_moves WHERE id = $1`, [id])).toEqual([{ state: end }]);
    const check = await runCli(['shards', 'check', '--map', mapFile]);
    expect(check.stderr).not.toMatch(/left frozen|belongs to no active move|recorded here but not/);
  });
});
