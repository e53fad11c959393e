import type { Knex } from 'knex';

/**
 * The score-range functions of 0012 again, without STRICT. Postgres inlines a SQL function into the
 * calling statement only when it is not STRICT (or its body is provably strict, which a CASE never
 * is); a function that is not inlined runs as its own executor call on every row. Not inlined,
 * `shardline_score_range` cost about 26 µs a row, and every leaderboard row that settlement writes
 * computes two (its old and new range, in the count-delta trigger): most of the apply's Postgres
 * time per result. Inlined, about 0.9 µs. The answers are the same for every non-NULL score, and
 * the columns they are called on are NOT NULL.
 *
 * `shardline_score_range_hi` also adds its two terms in an order that cannot overflow: for the
 * topmost ranges (at or above 2^62) `r + 2^k` passes 2^63 - 1 before the `- 1` brings it back.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE OR REPLACE FUNCTION shardline_bit_length(v bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
      SELECT 64 - coalesce(nullif(position('1' in v::bit(64)::text), 0) - 1, 64)
    $$`);
  await knex.raw(`
    CREATE OR REPLACE FUNCTION shardline_score_range(s bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
      SELECT CASE WHEN s > -128 AND s < 128 THEN s
        ELSE sign(s)::bigint * ((abs(s) >> (shardline_bit_length(abs(s)) - 7)) << (shardline_bit_length(abs(s)) - 7)) END
    $$`);
  await knex.raw(`
    CREATE OR REPLACE FUNCTION shardline_score_range_hi(r bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
      SELECT CASE WHEN r < 128 THEN r ELSE r + ((1::bigint << (shardline_bit_length(r) - 7)) - 1) END
    $$`);
}

/** Back to 0012's definitions, verbatim (migrations are frozen snapshots and never import each other). */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE OR REPLACE FUNCTION shardline_bit_length(v bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
      SELECT 64 - coalesce(nullif(position('1' in v::bit(64)::text), 0) - 1, 64)
    $$`);
  await knex.raw(`
    CREATE OR REPLACE FUNCTION shardline_score_range(s bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
      SELECT CASE WHEN s > -128 AND s < 128 THEN s
        ELSE sign(s)::bigint * ((abs(s) >> (shardline_bit_length(abs(s)) - 7)) << (shardline_bit_length(abs(s)) - 7)) END
    $$`);
  await knex.raw(`
    CREATE OR REPLACE FUNCTION shardline_score_range_hi(r bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
      SELECT CASE WHEN r < 128 THEN r ELSE r + (1::bigint << (shardline_bit_length(r) - 7)) - 1 END
    $$`);
}
