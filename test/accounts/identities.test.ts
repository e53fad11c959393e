import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Accounts,
  IdentityNotLinkedError,
  IdentityTakenError,
  LastIdentityError,
  PlayerNotFoundError,
  ShardSet,
  ShardUnavailableError,
  ValidationError,
  foldCase,
  validateShardMap,
  type Identity,
  type PlayerId,
} from '../../src/index.js';
import fc from 'fast-check';
import { IdentityRules, identityBucket } from '../../src/accounts/identity-key.js';
import { bucketOfKey, ownerOfBucket } from '../../src/routing/key-bucket.js';
import { homeShardOf } from '../../src/settlement/keys.js';
import { freePort } from '../../src/demo/free-port.js';
import { errorOf } from '../support/errors.js';
import { startGoWorker } from '../support/go-worker.js';
import { LAYOUTS, createTestShards, type TestShards } from '../support/shards.js';
import { countQueries, type QueryCounter } from './query-counter.js';

const unique = (base: string) => `${base}-${randomUUID().slice(0, 8)}`;

async function fieldOf(p: Promise<unknown>): Promise<string> {
  const e = await errorOf(p);
  expect(e).toBeInstanceOf(ValidationError);
  return (e as ValidationError).field;
}

describe('identity normalisation (pure)', () => {
  it('folds case fully, keeps look-alikes apart, and is idempotent', () => {
    expect(foldCase('Bob')).toBe('bob');
    expect(foldCase('STRASSE')).toBe(foldCase('straße'));
    expect(foldCase('ẞ')).toBe('ss');
    expect(foldCase('ΟΔΟΣ')).toBe(foldCase('οδοσ'));
    expect(foldCase('\u212A')).toBe('k'); // Kelvin sign
    expect(foldCase('ﬁle')).toBe('file');
    expect(foldCase('ı')).not.toBe(foldCase('i')); // dotless i is its own letter
    expect(foldCase('İ')).toBe('i\u0307');
    expect(foldCase('bоb')).not.toBe('bob'); // Cyrillic о
    expect(foldCase('Ｂｏｂ')).not.toBe('bob'); // full-width: no compatibility folding
    for (const s of ['Bob', 'straße', 'ΟΔΟΣ', 'İstanbul', 'ǅemal', 'ŉ', 'Ꭰ', 'ꭰ']) expect(foldCase(foldCase(s))).toBe(foldCase(s));
    expect(foldCase('Ꭰ')).toBe(foldCase('ꭰ'));
  });
});

describe('identity placement (pure)', () => {
  it('is the one key hash of match ids too, and never changes: rows are placed by it', () => {
    expect(identityBucket({ provider: 'username', subject: 'bob' })).toBe(2944);
    expect(bucketOfKey('username:bob')).toBe(2944);
    const map = validateShardMap({
      version: 1,
      buckets: 4096,
      regions: ['a', 'b'],
      shards: [
        { id: 'a-1', region: 'a', connection: 'postgres://h/a', buckets: ['0-2047'] },
        { id: 'b-1', region: 'b', connection: 'postgres://h/b', buckets: ['2048-4095'] },
      ],
    });
    expect(ownerOfBucket(map, 2944).id).toBe('b-1');
    expect(homeShardOf(map, 'username:bob').id).toBe('b-1');
  });
});

describe('identity normalisation (properties)', () => {
  const rules = new IdentityRules();
  it('a stored subject is a fixed point, and its bucket one of the 4096', () => {
    fc.assert(
      fc.property(fc.constantFrom('username', 'email', 'device'), fc.string({ unit: 'grapheme', maxLength: 40 }), (provider, subject) => {
        let stored: Identity;
        try {
          stored = rules.normalize({ provider, subject });
        } catch (err) {
          expect(err).toBeInstanceOf(ValidationError);
          expect((err as ValidationError).field).toBe('identity.subject');
          return;
        }
        expect(rules.normalize(stored)).toEqual(stored);
        expect(stored.subject).toBe(stored.subject.normalize('NFC'));
        const b = identityBucket(stored);
        expect(Number.isInteger(b) && b >= 0 && b < 4096).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('case variants of a username are one identity; of an opaque provider, distinct', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-zA-Z0-9._@-]{1,30}$/), (s) => {
        const flip = [...s].map((c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase())).join('');
        expect(rules.normalize({ provider: 'username', subject: flip })).toEqual(rules.normalize({ provider: 'username', subject: s }));
        if (flip !== s) expect(rules.normalize({ provider: 'device', subject: flip })).not.toEqual(rules.normalize({ provider: 'device', subject: s }));
      }),
      { numRuns: 1000 },
    );
  });
});

describe.each(LAYOUTS)('identities (%s)', (layout) => {
  let t: TestShards;
  let accounts: Accounts;
  let counter: QueryCounter;

  beforeAll(async () => {
    t = await createTestShards(layout);
    accounts = new Accounts(t.shardSet, { identityLeaseMs: 500, identityProviders: { gamertag: { caseInsensitive: true } } });
    counter = countQueries(t.shardSet);
    await Promise.all(t.shardSet.shards.map((s) => t.shardSet.db(s.id))); // identity checks before counting
  });
  afterAll(() => t?.cleanup());

  const identityShard = (i: Identity) => ownerOfBucket(t.map, identityBucket(i)).id;

  async function directoryRows(i: Identity) {
    const out: { shardId: string; bucket: number; state: string; player_id: PlayerId }[] = [];
    for (const s of t.shardSet.shards) {
      const rows = await t.shardSet
        .rawDb(s.id)
        .selectFrom('identities')
        .select(['bucket', 'state', 'player_id'])
        .where('provider', '=', i.provider)
        .where('subject', '=', i.subject)
        .execute();
      out.push(...rows.map((r) => ({ shardId: s.id, ...r })));
    }
    return out;
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

  it('creates the player with its identity, on the shard its hash names, found in one statement there', async () => {
    const identity = { provider: 'username', subject: unique('Ann') };
    const stored = { provider: 'username', subject: identity.subject.toLowerCase() };
    const p = await accounts.createPlayer({ region: 'shenzhen', nickname: 'Ann', identity });
    const rows = await directoryRows(stored);
    expect(rows).toEqual([{ shardId: identityShard(stored), bucket: identityBucket(stored), state: 'confirmed', player_id: p.id }]);

    counter.reset();
    expect(await accounts.playerIdByIdentity({ provider: 'username', subject: identity.subject.toUpperCase() })).toBe(p.id);
    expect(counter.counts()).toEqual(Object.fromEntries(t.shardSet.shards.map((s) => [s.id, s.id === identityShard(stored) ? 1 : 0])));
    expect(counter.statements(identityShard(stored))[0]).toMatch(/WHERE bucket = \$1 AND provider = \$2 AND subject = \$3/);

    expect(await accounts.findByIdentity(identity)).toEqual(p);
    expect(await accounts.findByIdentity({ provider: 'username', subject: unique('nobody') })).toBeNull();
    expect((await accounts.listIdentities(p.id)).map(({ provider, subject }) => ({ provider, subject }))).toEqual([stored]);
  });

  it('a second registration of the identity is IdentityTakenError; the same requestId gets the same player', async () => {
    const identity = { provider: 'steam', subject: unique('7656119') };
    const requestId = randomUUID();
    const p = await accounts.createPlayer({ region: 'shenzhen', nickname: 'first', identity, requestId });
    const before = await playerCount();
    expect(await accounts.createPlayer({ region: 'shenzhen', nickname: 'again', identity, requestId })).toEqual(p);
    const taken = await errorOf(accounts.createPlayer({ region: 'shenzhen', nickname: 'other', identity }));
    expect(taken).toBeInstanceOf(IdentityTakenError);
    expect((taken as IdentityTakenError).code).toBe('IDENTITY_TAKEN');
    expect((taken as IdentityTakenError).message).not.toContain(identity.subject);
    expect(await playerCount()).toBe(before);
  });

  it('compares username, email and declared providers case-insensitively, every other provider exactly', async () => {
    const name = unique('Straße');
    const a = await accounts.createPlayer({ region: 'shenzhen', nickname: 'a', identity: { provider: 'username', subject: name } });
    expect(await accounts.playerIdByIdentity({ provider: 'username', subject: name.toUpperCase() })).toBe(a.id); // STRASSE
    await accounts.createPlayer({ region: 'shenzhen', nickname: 'e', identity: { provider: 'email', subject: `Ann.${name}@Example.COM` } });
    expect(
      await errorOf(accounts.createPlayer({ region: 'shenzhen', nickname: 'e2', identity: { provider: 'email', subject: `ann.${name}@example.com` } })),
    ).toBeInstanceOf(IdentityTakenError);
    const g = await accounts.createPlayer({ region: 'shenzhen', nickname: 'g', identity: { provider: 'gamertag', subject: `Ace${name}` } });
    expect(await accounts.playerIdByIdentity({ provider: 'gamertag', subject: `ACE${name}` })).toBe(g.id);
    const opaque = `AbC${name}`;
    const o = await accounts.createPlayer({ region: 'shenzhen', nickname: 'o', identity: { provider: 'device', subject: opaque } });
    expect(await accounts.playerIdByIdentity({ provider: 'device', subject: opaque.toLowerCase() })).toBeNull();
    expect(await accounts.playerIdByIdentity({ provider: 'device', subject: opaque })).toBe(o.id);
    // NFC: a decomposed é is the same subject as the composed one, even for an opaque provider.
    const e1 = await accounts.createPlayer({ region: 'shenzhen', nickname: 'n', identity: { provider: 'device', subject: `caf\u00e9-${name}` } });
    expect(await accounts.playerIdByIdentity({ provider: 'device', subject: `cafe\u0301-${name}` })).toBe(e1.id);
  });

  it('refuses hostile subjects with a ValidationError naming the field, writing nothing', async () => {
    counter.reset();
    const before = await playerCount();
    counter.reset();
    const bad: [unknown, string][] = [
      [{ provider: 'Steam', subject: 'x' }, 'identity.provider'],
      [{ provider: '', subject: 'x' }, 'identity.provider'],
      [{ provider: 'a'.repeat(33), subject: 'x' }, 'identity.provider'],
      [{ provider: 'user:name', subject: 'x' }, 'identity.provider'],
      [{ provider: 'username', subject: '' }, 'identity.subject'],
      [{ provider: 'username', subject: 'x'.repeat(257) }, 'identity.subject'],
      [{ provider: 'username', subject: 'x'.repeat(10_240) }, 'identity.subject'],
      [{ provider: 'username', subject: 'bob\u0000' }, 'identity.subject'],
      [{ provider: 'username', subject: 'bob\u202Egnp.exe' }, 'identity.subject'],
      [{ provider: 'username', subject: 'b\u200Bob' }, 'identity.subject'],
      [{ provider: 'username', subject: 'bob\n' }, 'identity.subject'],
      [{ provider: 'username', subject: ' bob' }, 'identity.subject'],
      [{ provider: 'username', subject: 42 }, 'identity.subject'],
      [{ provider: 'username', subject: 'bob', extra: 1 }, 'identity.extra'],
      ['username:bob', 'identity'],
    ];
    for (const [identity, field] of bad) {
      expect(
        await fieldOf(accounts.createPlayer({ region: 'shenzhen', nickname: 'x', identity: identity as Identity })),
        JSON.stringify(identity).slice(0, 60),
      ).toBe(field);
      expect(await fieldOf(accounts.playerIdByIdentity(identity as Identity))).toBe(field);
    }
    expect(await fieldOf(accounts.createPlayer({ region: 'shenzhen', nickname: 'x', requestId: 'r-1' }))).toBe('requestId');
    expect(
      await fieldOf(accounts.createPlayer({ region: 'shenzhen', nickname: 'x', identity: { provider: 'username', subject: 'ok' }, requestId: 'has space' })),
    ).toBe('requestId');
    expect(await fieldOf(accounts.createPlayer({ region: 'shenzhen', nickname: '', identity: { provider: 'username', subject: 'ok' } }))).toBe('nickname');
    expect(
      ((await errorOf(accounts.createPlayer({ region: 'atlantis', nickname: 'x', identity: { provider: 'username', subject: 'ok' } }))) as { code: string })
        .code,
    ).toBe('UNKNOWN_REGION');
    expect(Object.values(counter.counts()).every((n) => n === 0)).toBe(true);
    expect(await playerCount()).toBe(before);
    expect(() => new Accounts(t.shardSet, { identityProviders: { 'Bad Name': {} } })).toThrow(ValidationError);
    expect(() => new Accounts(t.shardSet, { identityProviders: { gamertag: { caseInsensitve: true } as never } })).toThrow(
      /identityProviders.gamertag.caseInsensitve/,
    );
  });

  it('stores SQL-like text verbatim, and keeps look-alikes apart unless folding maps them', async () => {
    const sqlish = `'); DROP TABLE identities; -- ${unique('x')}`;
    const p = await accounts.createPlayer({ region: 'shenzhen', nickname: 'sql', identity: { provider: 'device', subject: sqlish } });
    expect(await accounts.playerIdByIdentity({ provider: 'device', subject: sqlish })).toBe(p.id);
    const max = 'é'.repeat(250) + unique('').slice(0, 6);
    const long = await accounts.createPlayer({ region: 'shenzhen', nickname: 'long', identity: { provider: 'device', subject: max } });
    expect(await accounts.playerIdByIdentity({ provider: 'device', subject: max })).toBe(long.id);

    const tag = unique('');
    const latin = await accounts.createPlayer({ region: 'shenzhen', nickname: 'latin', identity: { provider: 'username', subject: `bob${tag}` } });
    const cyrillic = await accounts.createPlayer({ region: 'shenzhen', nickname: 'cyr', identity: { provider: 'username', subject: `bоb${tag}` } });
    const wide = await accounts.createPlayer({ region: 'shenzhen', nickname: 'wide', identity: { provider: 'username', subject: `Ｂｏｂ${tag}` } });
    const dotless = await accounts.createPlayer({ region: 'shenzhen', nickname: 'dotless', identity: { provider: 'username', subject: `lıly${tag}` } });
    expect(new Set([latin.id, cyrillic.id, wide.id, dotless.id]).size).toBe(4);
    expect(await accounts.playerIdByIdentity({ provider: 'username', subject: `BOB${tag}` })).toBe(latin.id);
    expect(await accounts.playerIdByIdentity({ provider: 'username', subject: `lily${tag}` })).toBeNull();
    // The Kelvin sign folds to k: the same username.
    const k = await accounts.createPlayer({ region: 'shenzhen', nickname: 'k', identity: { provider: 'username', subject: `k${tag}` } });
    expect(
      await errorOf(accounts.createPlayer({ region: 'shenzhen', nickname: 'K', identity: { provider: 'username', subject: `\u212A${tag}` } })),
    ).toBeInstanceOf(IdentityTakenError);
    expect(await accounts.playerIdByIdentity({ provider: 'username', subject: `\u212A${tag}` })).toBe(k.id);
  });

  it('links, lists and unlinks, never the last identity, and both directions agree', async () => {
    const device = { provider: 'device', subject: unique('dev') };
    const steam = { provider: 'steam', subject: unique('st') };
    const guest = await accounts.createPlayer({ region: 'shenzhen', nickname: 'guest', identity: device });
    expect(await accounts.linkIdentity(guest.id, steam)).toEqual(steam);
    await accounts.linkIdentity(guest.id, steam); // holding it already: a no-op
    expect((await accounts.listIdentities(guest.id)).map((i) => i.provider)).toEqual(['device', 'steam']);
    expect(await accounts.playerIdByIdentity(steam)).toBe(guest.id);

    const other = await accounts.createPlayer({ region: 'shenzhen', nickname: 'other', identity: { provider: 'device', subject: unique('dev') } });
    expect(await errorOf(accounts.linkIdentity(other.id, steam))).toBeInstanceOf(IdentityTakenError);
    expect(await errorOf(accounts.unlinkIdentity(other.id, steam))).toBeInstanceOf(IdentityNotLinkedError);

    await accounts.unlinkIdentity(guest.id, device);
    expect(await accounts.playerIdByIdentity(device)).toBeNull();
    expect((await accounts.listIdentities(guest.id)).map((i) => i.provider)).toEqual(['steam']);
    const last = await errorOf(accounts.unlinkIdentity(guest.id, steam));
    expect(last).toBeInstanceOf(LastIdentityError);
    expect((last as LastIdentityError).code).toBe('LAST_IDENTITY');
    expect(await accounts.playerIdByIdentity(steam)).toBe(guest.id);
    expect((await directoryRows(steam)).map((r) => r.state)).toEqual(['confirmed']);

    // The freed device id can be linked to another player.
    await accounts.linkIdentity(other.id, device);
    expect(await accounts.playerIdByIdentity(device)).toBe(other.id);

    // Two unlinks of one player at once: one of them finds the other identity gone.
    const email = await accounts.linkIdentity(guest.id, { provider: 'email', subject: `${unique('G')}@Example.com` });
    expect(email.subject).toBe(email.subject.toLowerCase());
    const both = await Promise.allSettled([accounts.unlinkIdentity(guest.id, steam), accounts.unlinkIdentity(guest.id, email)]);
    expect(both.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((both.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason).toBeInstanceOf(LastIdentityError);
    const left = await accounts.listIdentities(guest.id);
    expect(left).toHaveLength(1);
    expect(await accounts.playerIdByIdentity({ provider: left[0]!.provider, subject: left[0]!.subject })).toBe(guest.id);
    const gone = left[0]!.provider === 'steam' ? email : steam;
    expect(await accounts.playerIdByIdentity(gone)).toBeNull();
  });

  it('linking to a player that does not exist is PlayerNotFoundError and leaves the identity free', async () => {
    const ghost = t.shardSet.router.newPlayerId('shenzhen');
    const identity = { provider: 'device', subject: unique('ghost') };
    expect(await errorOf(accounts.linkIdentity(ghost, identity))).toBeInstanceOf(PlayerNotFoundError);
    expect(await directoryRows(identity)).toEqual([]);
    expect(await errorOf(accounts.listIdentities(ghost))).toBeInstanceOf(PlayerNotFoundError);
  });

  it('the SQL bucket check agrees with the hash, and refuses a row under another bucket', async () => {
    const i = { provider: 'device', subject: unique('sql-bucket') };
    const shard = identityShard(i);
    const db = t.shardSet.rawDb(shard);
    const ok = { bucket: identityBucket(i), provider: i.provider, subject: i.subject, player_id: 1n as PlayerId, state: 'confirmed' as const, request_id: 'r' };
    await db.insertInto('identities').values(ok).execute();
    await db.deleteFrom('identities').where('subject', '=', i.subject).execute();
    const err = await errorOf(
      db
        .insertInto('identities')
        .values({ ...ok, bucket: (ok.bucket + 1) % 4096 })
        .execute(),
    );
    expect((err as { constraint?: string }).constraint).toBe('identities_bucket_check');
  });

  it('100 concurrent registrations of one identity from 4 processes make exactly 1 player', async () => {
    const identity = { provider: 'username', subject: unique('Race') };
    const before = await playerCount();
    const shared = randomUUID(); // half of the calls are retries of one request
    const workers = await Promise.all(
      Array.from({ length: 4 }, (_, w) =>
        startWorker({
          mapJson: t.mapJson,
          identity,
          region: t.shardSet.router.regions[w % t.shardSet.router.regions.length]!,
          requestIds: Array.from({ length: 25 }, (_, i) => (i % 2 === 0 ? shared : randomUUID())),
          leaseMs: 5000,
        }),
      ),
    );
    const outcomes = (await Promise.all(workers.map((w) => w.go()))).flat();
    expect(outcomes).toHaveLength(100);
    expect(outcomes.flatMap((o) => (o.error ? [o.error] : []))).toEqual([]);
    const winners = new Set(outcomes.flatMap((o) => (o.player ? [o.player] : [])));
    expect(winners.size).toBe(1);
    const winner = [...winners][0]!;
    const winningRequests = new Set(outcomes.filter((o) => o.player).map((o) => o.requestId));
    expect(winningRequests.size).toBe(1);
    // Every call of the winning request got the player; every other call was told it is taken.
    for (const o of outcomes) expect(o.player !== undefined).toBe(winningRequests.has(o.requestId));
    expect(await playerCount()).toBe(before + 1);
    expect(String(await accounts.playerIdByIdentity(identity))).toBe(winner);
    expect((await directoryRows({ provider: 'username', subject: identity.subject.toLowerCase() })).map((r) => [r.state, String(r.player_id)])).toEqual([
      ['confirmed', winner],
    ]);
  }, 120_000);

  it("the identity's shard down: ShardUnavailableError, and nothing half-done blocks the retry", async () => {
    // The same databases, with the identity's shard pointed at a port nobody listens on.
    const identity = { provider: 'device', subject: unique('down') };
    const downId = identityShard(identity);
    const json = structuredClone(t.mapJson) as { shards: { id: string; connection: string }[] };
    const spec = json.shards.find((s) => s.id === downId)!;
    const url = new URL(spec.connection);
    url.port = String(await freePort());
    spec.connection = url.toString();
    const downSet = new ShardSet(validateShardMap(json), { connectionTimeoutMs: 2000 });
    try {
      const before = await playerCount();
      const requestId = randomUUID();
      const region = t.shardSet.router.regions[0]!;
      const down = new Accounts(downSet, { identityLeaseMs: 500 });
      const err = await errorOf(down.createPlayer({ region, nickname: 'down', identity, requestId }));
      expect(err).toBeInstanceOf(ShardUnavailableError);
      expect((err as ShardUnavailableError).shardId).toBe(downId);
      expect(await errorOf(down.playerIdByIdentity(identity))).toBeInstanceOf(ShardUnavailableError);
      expect(await playerCount()).toBe(before);
      expect((await down.resolvePendingIdentities()).unavailableShards).toEqual([downId]);
      // The shard is back: the same request completes, once.
      const p = await accounts.createPlayer({ region, nickname: 'down', identity, requestId });
      expect(await accounts.playerIdByIdentity(identity)).toBe(p.id);
      expect(await playerCount()).toBe(before + 1);
    } finally {
      await downSet.close();
    }
  });

  it.runIf(layout === 'several-shards')("the player's shard down after the reservation: the request waits for it, then completes", async () => {
    const playerShard = 'sc-1'; // sichuan's only shard
    let identity = { provider: 'device', subject: unique('p-down') };
    while (identityShard(identity) === playerShard) identity = { provider: 'device', subject: unique('p-down') };
    const requestId = randomUUID();
    // A registration that stops right after its reservation (as if its process died there).
    const stopping = new Accounts(t.shardSet, {
      identityLeaseMs: 500,
      __identityStepHook: (step) => {
        if (step === 'reserved') throw new Error('stopped after the reservation');
      },
    });
    await expect(stopping.createPlayer({ region: 'sichuan', nickname: 'p-down', identity, requestId })).rejects.toThrow(/stopped after the reservation/);
    expect((await directoryRows(identity)).map((r) => r.state)).toEqual(['pending']);

    const json = structuredClone(t.mapJson) as { shards: { id: string; connection: string }[] };
    const spec = json.shards.find((s) => s.id === playerShard)!;
    const url = new URL(spec.connection);
    url.port = String(await freePort());
    spec.connection = url.toString();
    const downSet = new ShardSet(validateShardMap(json), { connectionTimeoutMs: 2000 });
    try {
      const down = new Accounts(downSet, { identityLeaseMs: 500 });
      for (const attempt of [
        () => down.createPlayer({ region: 'sichuan', nickname: 'p-down', identity, requestId }),
        () => down.createPlayer({ region: 'shenzhen', nickname: 'other', identity }),
        () => down.playerIdByIdentity(identity),
      ]) {
        const err = await errorOf(attempt());
        expect(err).toBeInstanceOf(ShardUnavailableError);
        expect((err as ShardUnavailableError).shardId).toBe(playerShard);
      }
      expect((await directoryRows(identity)).map((r) => r.state)).toEqual(['pending']);
    } finally {
      await downSet.close();
    }
    const p = await accounts.createPlayer({ region: 'sichuan', nickname: 'p-down', identity, requestId });
    expect(t.shardSet.router.shardFor(p.id).id).toBe(playerShard);
    expect(await accounts.playerIdByIdentity(identity)).toBe(p.id);
    expect((await directoryRows(identity)).map((r) => r.state)).toEqual(['confirmed']);
  });
});

interface Outcome {
  requestId: string;
  player?: string;
  taken?: true;
  error?: string;
}

function startWorker(config: unknown): Promise<{ go(): Promise<Outcome[]> }> {
  return startGoWorker<Outcome[]>(fileURLToPath(new URL('./identity-worker.ts', import.meta.url)), [JSON.stringify(config)]);
}
