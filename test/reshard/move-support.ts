import pg from 'pg';
import { createTwoShards, type TwoShards } from './two-shards.js';

/**
 * The two-shard map of two-shards.ts for the mover's tests on the shared server (`sz-1` owning
 * every bucket, `sz-2` empty), with clients left to the test (`admin`, closed by cleanup()).
 */
export interface MoveShards extends TwoShards {
  admin(db: 0 | 1): pg.Client;
}

export async function createMoveShards(): Promise<MoveShards> {
  const shards = await createTwoShards('mv', '<move test>');
  const clients: pg.Client[] = [];
  return {
    ...shards,
    admin(i: 0 | 1) {
      const c = new pg.Client({ connectionString: shards.urls[i] });
      clients.push(c);
      return c;
    },
    async cleanup() {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await shards.cleanup();
    },
  };
}

/** Players with stats, ledger rows, identities and claims in buckets lo..hi (straight SQL, as the owner). */
export async function seedBuckets(s: MoveShards, lo: number, hi: number, perBucket: number): Promise<bigint[]> {
  const ids: bigint[] = [];
  const c = new pg.Client({ connectionString: s.urls[0]! });
  await c.connect();
  try {
    for (let b = lo; b <= hi; b++) for (let k = 0; k < perBucket; k++) ids.push((BigInt(1_000_000 + ids.length) << 22n) | (BigInt(b) << 10n) | BigInt(k));
    const text = ids.map(String);
    await c.query(`INSERT INTO players (player_id, region, nickname) SELECT id::bigint, 'shenzhen', 'p' || id FROM unnest($1::text[]) id`, [text]);
    await c.query(
      `INSERT INTO player_stats (player_id, game_id, score, wins, games_played) SELECT id::bigint, g, (id::bigint % 1000), 1, 1
         FROM unnest($1::text[]) id, (VALUES ('chess'), ('go')) v(g)`,
      [text],
    );
    await c.query(
      `INSERT INTO settlement_ledger (match_id, player_id, game_id, score_delta, outcome, ended_at, data)
       SELECT 'm-' || id || '-' || n, id::bigint, 'chess', n, 'win', '2026-01-02T03:04:05.678Z', jsonb_build_object('n', n)
         FROM unnest($1::text[]) id, generate_series(1, 3) n`,
      [text],
    );
    await c.query(
      `INSERT INTO player_identities (player_id, request_id, provider, subject, state) SELECT id::bigint, 'r-' || id, 'steam', 's' || id, 'linked' FROM unnest($1::text[]) id`,
      [text],
    );
    // Identities and claims spread over every bucket by their hashes: only those of lo..hi move.
    await c.query(
      `INSERT INTO identities (bucket, provider, subject, player_id, state, request_id)
       SELECT ((get_byte(sha256(convert_to('steam:s' || n, 'UTF8')), 2) & 15) << 8) | get_byte(sha256(convert_to('steam:s' || n, 'UTF8')), 3),
              'steam', 's' || n, n, 'confirmed', 'r' || n FROM generate_series(1, $1::int) n`,
      [perBucket * 200],
    );
    await c.query(
      `INSERT INTO settlement_inbox_claims (match_id, content_hash, game_id, shard_ids, player_count)
       SELECT 'claim-' || n, md5(n::text), 'chess', ARRAY['sz-1'], 2 FROM generate_series(1, $1::int) n`,
      [perBucket * 200],
    );
  } finally {
    await c.end();
  }
  return ids;
}
