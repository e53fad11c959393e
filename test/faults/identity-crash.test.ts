import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Accounts, IdentityTakenError, type Identity, type PlayerId } from '../../src/index.js';
import type { IdentityStep } from '../../src/accounts/identities.js';
import { errorOf } from '../support/errors.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';
import type { CrashConfig } from './identity-crash-child.js';
import { killStarted, spawnScript } from './support/processes.js';

const LEASE_MS = 400;
const CREATE_STEPS: readonly IdentityStep[] = ['minted', 'reserved', 'created', 'confirmed'];

/**
 * A registering process SIGKILLed after each step of the identity protocol, on real servers: then
 * a retry of the same request, a different request, a lookup and the sweeper must all find one
 * consistent answer, with the directory and the players' lists agreeing.
 */
describe.each(LAYOUTS)('identity protocol under SIGKILL (%s)', (layout) => {
  let t: TestShards;
  let accounts: Accounts;

  beforeAll(async () => {
    t = await createTestShards(layout);
    accounts = new Accounts(t.shardSet, { identityLeaseMs: LEASE_MS });
  });
  afterAll(async () => {
    await killStarted();
    await t?.cleanup();
  });

  async function crashAfter(
    step: IdentityStep,
    config: Omit<CrashConfig, 'mapJson' | 'killAfter' | 'leaseMs' | 'region' | 'requestId'> & { requestId?: string },
  ): Promise<void> {
    const full: CrashConfig = {
      mapJson: t.mapJson,
      killAfter: step,
      leaseMs: LEASE_MS,
      region: t.shardSet.router.regions.at(-1)!,
      requestId: config.requestId ?? randomUUID(),
      ...config,
    };
    const proc = spawnScript('test/faults/identity-crash-child.ts', [JSON.stringify(full)], 60_000);
    const ended = await proc.done;
    expect(ended.signal, proc.output()).toBe('SIGKILL');
    expect(proc.events().map((e) => e.step)).toEqual([step]);
  }

  /** Every shard's directory rows and linked list rows for the identity (stored form). */
  async function rowsOf(i: Identity) {
    const directory: { state: string; player_id: PlayerId }[] = [];
    const linked: PlayerId[] = [];
    for (const s of t.shardSet.shards) {
      const db = t.shardSet.rawDb(s.id);
      directory.push(
        ...(await db.selectFrom('identities').select(['state', 'player_id']).where('provider', '=', i.provider).where('subject', '=', i.subject).execute()),
      );
      linked.push(
        ...(
          await db
            .selectFrom('player_identities')
            .select('player_id')
            .where('provider', '=', i.provider)
            .where('subject', '=', i.subject)
            .where('state', '=', 'linked')
            .execute()
        ).map((r) => r.player_id),
      );
    }
    return { directory, linked };
  }

  /** The identity leads to `expected` (or nobody), the directory is settled, and the lists agree with it. */
  async function expectConsistent(i: Identity, expected: PlayerId | null): Promise<void> {
    expect(await accounts.playerIdByIdentity(i)).toBe(expected);
    await accounts.resolvePendingIdentities({ olderThanMs: 0 });
    const { directory, linked } = await rowsOf(i);
    if (expected === null) {
      expect(directory).toEqual([]);
      expect(linked).toEqual([]);
    } else {
      expect(directory).toEqual([{ state: 'confirmed', player_id: expected }]);
      expect(linked).toEqual([expected]);
      expect((await accounts.listIdentities(expected)).map(({ provider, subject }) => ({ provider, subject }))).toContainEqual(i);
    }
  }

  async function playerCount(): Promise<number> {
    let n = 0;
    for (const s of t.shardSet.shards)
      n += Number(
        (
          await t.shardSet
            .rawDb(s.id)
            .selectFrom('players')
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    return n;
  }

  for (const step of CREATE_STEPS) {
    it(`killed after "${step}": a retry of the same request completes it, once`, async () => {
      const identity = { provider: 'device', subject: `crash-retry-${step}-${randomUUID()}` };
      const requestId = randomUUID();
      const before = await playerCount();
      await crashAfter(step, { op: 'create', identity, requestId });
      const p = await accounts.createPlayer({ region: t.shardSet.router.regions[0]!, nickname: 'retried', identity, requestId });
      expect(await accounts.createPlayer({ region: t.shardSet.router.regions[0]!, nickname: 'again', identity, requestId })).toEqual(p);
      await expectConsistent(identity, p.id);
      expect(await playerCount()).toBe(before + 1);
    });

    it(`killed after "${step}": a different request gets a definite answer, and the lookup agrees`, async () => {
      const identity = { provider: 'device', subject: `crash-other-${step}-${randomUUID()}` };
      const requestId = randomUUID();
      const before = await playerCount();
      await crashAfter(step, { op: 'create', identity, requestId });
      const outcome = await accounts.createPlayer({ region: t.shardSet.router.regions[0]!, nickname: 'second', identity }).catch((e: unknown) => e);
      if (step === 'minted' || step === 'reserved') {
        // The crashed registration never created its player: it is given up after the lease, and this one wins.
        expect(outcome).not.toBeInstanceOf(Error);
        const p = outcome as { id: PlayerId };
        await expectConsistent(identity, p.id);
        // The crashed request, retried now, is told the identity is taken: it was fenced, so it never lands.
        expect(await errorOf(accounts.createPlayer({ region: t.shardSet.router.regions[0]!, nickname: 'late', identity, requestId }))).toBeInstanceOf(
          IdentityTakenError,
        );
      } else {
        // Its player exists: the identity is that player's, confirmed by whoever meets it first.
        expect(outcome).toBeInstanceOf(IdentityTakenError);
        const id = await accounts.playerIdByIdentity(identity);
        expect(id).not.toBeNull();
        expect((await accounts.getPlayer(id!)).nickname).toBe('crashed');
        await expectConsistent(identity, id);
      }
      expect(await playerCount()).toBe(before + 1);
    });

    it(`killed after "${step}": the sweeper alone settles it`, async () => {
      const identity = { provider: 'device', subject: `crash-sweep-${step}-${randomUUID()}` };
      const before = await playerCount();
      await crashAfter(step, { op: 'create', identity });
      await new Promise((r) => setTimeout(r, LEASE_MS + 50));
      await accounts.resolvePendingIdentities();
      const { directory } = await rowsOf(identity);
      const created = step === 'created' || step === 'confirmed';
      expect(directory.map((d) => d.state)).toEqual(created ? ['confirmed'] : []);
      await expectConsistent(identity, created ? directory[0]!.player_id : null);
      expect(await playerCount()).toBe(before + (created ? 1 : 0));
    });
  }

  it('a registration stalled past its lease is given up, and its late step never lands', async () => {
    const identity = { provider: 'device', subject: `stall-${randomUUID()}` };
    const before = await playerCount();
    const config: CrashConfig = {
      mapJson: t.mapJson,
      op: 'create',
      identity,
      region: t.shardSet.router.regions[0]!,
      requestId: randomUUID(),
      killAfter: 'reserved',
      leaseMs: LEASE_MS,
      stallMs: 3 * LEASE_MS,
    };
    const proc = spawnScript('test/faults/identity-crash-child.ts', [JSON.stringify(config)], 60_000);
    await proc.waitForEvent('the reservation', (e) => e.step === 'reserved', 30_000);
    // Another request waits out the lease, records the stalled request as aborted on its player's shard, and wins.
    const winner = await accounts.createPlayer({ region: t.shardSet.router.regions[0]!, nickname: 'winner', identity });
    const late = await proc.waitForEvent('the stalled process to finish', (e) => e.evt === 'finished', 30_000);
    expect(late.code).toBe('IDENTITY_TAKEN');
    await proc.done;
    await expectConsistent(identity, winner.id);
    expect(await playerCount()).toBe(before + 1);
  });

  for (const step of ['reserved', 'linked'] as const) {
    it(`a link killed after "${step}": the lookup and the player's list agree`, async () => {
      const p = await accounts.createPlayer({
        region: t.shardSet.router.regions[0]!,
        nickname: 'linker',
        identity: { provider: 'device', subject: randomUUID() },
      });
      const steam = { provider: 'steam', subject: `link-${step}-${randomUUID()}` };
      await crashAfter(step, { op: 'link', identity: steam, playerId: String(p.id) });
      await new Promise((r) => setTimeout(r, LEASE_MS + 50));
      await expectConsistent(steam, step === 'linked' ? p.id : null);
      // A later link completes whatever was left.
      await accounts.linkIdentity(p.id, steam);
      await expectConsistent(steam, p.id);
    });
  }

  for (const step of ['unlinking', 'removed'] as const) {
    it(`an unlink killed after "${step}": the lookup and the player's list agree`, async () => {
      const device = { provider: 'device', subject: `unlink-${step}-${randomUUID()}` };
      const p = await accounts.createPlayer({ region: t.shardSet.router.regions[0]!, nickname: 'unlinker', identity: device });
      await accounts.linkIdentity(p.id, { provider: 'steam', subject: randomUUID() });
      await crashAfter(step, { op: 'unlink', identity: device, playerId: String(p.id) });
      // Before the lease an unlink half-way still leads to the player (it has not happened yet), unless the player's shard says it did.
      await new Promise((r) => setTimeout(r, LEASE_MS + 50));
      await expectConsistent(device, step === 'removed' ? null : p.id);
    });
  }
});
