import type { Knex } from 'knex';

/**
 * Leaderboards v2 (docs/leaderboards.md): boards with an operator and a period, and exact ranks in
 * milliseconds.
 *
 * - `leaderboard_boards` and `leaderboard_seasons` are definitions, the same rows on every shard
 *   (the library writes them to each shard, the first shard of the map deciding conflicts), so the
 *   worker and every reader agree. Not player tables: per-shard copies of shared data.
 * - `leaderboard_scores` is a player table: one row per (player, board, period). The plain game id
 *   (the all-time sum board of player_stats) is mirrored here with `period = ''` by statement
 *   triggers on player_stats, so every board is read the same way, and rows written to player_stats
 *   by any path (the worker, a restore, a test) are on their board. `active` mirrors
 *   `players.status = 'active'` (a trigger on players), so hiding inactive players is a column test.
 * - `leaderboard_counts` holds, per (board, period, score range, active), how many rows of this
 *   shard are in that range: a rank is the sum of the higher ranges plus one small count inside the
 *   player's range. The ranges are `shardline_score_range(score)`: exact below 128, then the top 7
 *   significant bits (64 ranges per power of two), so a range is never wide where scores are dense.
 * - Writers never lock a count row: statement triggers on leaderboard_scores append signed deltas to
 *   `leaderboard_count_deltas` (a heap without a key, so concurrent apply transactions never wait on
 *   each other or deadlock over a hot range), and `shardline_compact_board_counts()` folds them into
 *   the counts under a transaction advisory lock that a second compactor skips instead of waiting
 *   for. Readers sum counts and pending deltas: exact at every snapshot.
 * - `leaderboard_late_results` records results refused by a board: a result whose season had
 *   closed before it arrived counts on no board, and its row here says so.
 *
 * TRUNCATE fires no row or statement delete triggers: after a TRUNCATE, or a copy made with
 * triggers off (session_replication_role = replica), `shardline_rebuild_leaderboards()` recomputes
 * this shard's mirror rows and counts from player_stats and leaderboard_scores.
 *
 * The application role gets DML on every table (as 0003's default privileges would give it;
 * granted here explicitly so the migration says what it grants). No `?` appears in this SQL:
 * knex.raw would take it for a binding.
 */
const APP_ROLE = `coalesce(nullif(current_setting('shardline.app_role', true), ''), 'shardline_app')`;

const CHECK_APP_ROLE = `
      IF app = current_user OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app)
         OR NOT has_table_privilege(app, format('%I.players', s), 'SELECT') THEN
        RAISE EXCEPTION 'role "%" is not the application role migration 0003 granted to', app
          USING ERRCODE = '22023', HINT = 'pass the same --app-role (or $SHARDLINE_APP_ROLE) as when the shard was first migrated';
      END IF;`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE leaderboard_boards (
      board_id text PRIMARY KEY,
      game_id text NOT NULL,
      name text NOT NULL,
      operator text NOT NULL,
      period text NOT NULL,
      week_start smallint NOT NULL DEFAULT 1,
      created_at timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT leaderboard_boards_id_check CHECK (board_id = game_id || ':' || name),
      CONSTRAINT leaderboard_boards_name_check CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
      CONSTRAINT leaderboard_boards_operator_check CHECK (operator IN ('sum', 'best', 'set')),
      CONSTRAINT leaderboard_boards_period_check CHECK (period IN ('all-time', 'daily', 'weekly', 'monthly', 'season')),
      CONSTRAINT leaderboard_boards_week_start_check CHECK (week_start BETWEEN 1 AND 7)
    )`);
  await knex.raw(`CREATE INDEX leaderboard_boards_game ON leaderboard_boards (game_id)`);

  await knex.raw(`
    CREATE TABLE leaderboard_seasons (
      board_id text NOT NULL REFERENCES leaderboard_boards (board_id) ON DELETE CASCADE,
      season_id text NOT NULL,
      opened_at timestamptz NOT NULL,
      closed_at timestamptz,
      PRIMARY KEY (board_id, season_id),
      CONSTRAINT leaderboard_seasons_id_check CHECK (season_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
      CONSTRAINT leaderboard_seasons_order_check CHECK (closed_at IS NULL OR closed_at >= opened_at)
    )`);
  // At most one open season per board: seasons never overlap, so a result falls in at most one.
  await knex.raw(`CREATE UNIQUE INDEX leaderboard_seasons_one_open ON leaderboard_seasons (board_id) WHERE closed_at IS NULL`);

  await knex.raw(`
    CREATE TABLE leaderboard_scores (
      player_id bigint NOT NULL REFERENCES players (player_id) ON DELETE CASCADE,
      board_id text NOT NULL,
      period text NOT NULL,
      score bigint NOT NULL,
      active boolean NOT NULL DEFAULT true,
      last_ended_at timestamptz,
      last_match_id text,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (player_id, board_id, period)
    )`);
  // The board order (score desc, then id asc) of one period, with the flag for index-only counts.
  await knex.raw(`CREATE INDEX leaderboard_scores_order ON leaderboard_scores (board_id, period, score DESC, player_id) INCLUDE (active)`);
  // The rows of given buckets of a board period: found at once during a bucket move, empty otherwise.
  await knex.raw(`CREATE INDEX leaderboard_scores_bucket ON leaderboard_scores (board_id, period, ((player_id >> 10) & 4095), score)`);

  await knex.raw(`
    CREATE TABLE leaderboard_counts (
      board_id text NOT NULL,
      period text NOT NULL,
      range bigint NOT NULL,
      active boolean NOT NULL,
      n bigint NOT NULL,
      PRIMARY KEY (board_id, period, range, active)
    )`);
  await knex.raw(`
    CREATE TABLE leaderboard_count_deltas (
      board_id text NOT NULL,
      period text NOT NULL,
      range bigint NOT NULL,
      active boolean NOT NULL,
      n bigint NOT NULL
    )`);
  await knex.raw(`CREATE INDEX leaderboard_count_deltas_range ON leaderboard_count_deltas (board_id, period, range)`);

  await knex.raw(`
    CREATE TABLE leaderboard_late_results (
      player_id bigint NOT NULL REFERENCES players (player_id) ON DELETE CASCADE,
      board_id text NOT NULL,
      match_id text NOT NULL,
      period text NOT NULL,
      score_delta integer NOT NULL,
      ended_at timestamptz NOT NULL,
      reason text NOT NULL,
      recorded_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (player_id, board_id, match_id)
    )`);

  // Bit length of a non-negative bigint, exactly (no floating-point log).
  await knex.raw(`
    CREATE FUNCTION shardline_bit_length(v bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
      SELECT 64 - coalesce(nullif(position('1' in v::bit(64)::text), 0) - 1, 64)
    $$`);
  // Monotonic (a <= b implies range(a) <= range(b)): what makes "sum of the higher ranges" exact.
  await knex.raw(`
    CREATE FUNCTION shardline_score_range(s bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
      SELECT CASE WHEN s > -128 AND s < 128 THEN s
        ELSE sign(s)::bigint * ((abs(s) >> (shardline_bit_length(abs(s)) - 7)) << (shardline_bit_length(abs(s)) - 7)) END
    $$`);
  // The highest score in range r (ranges of negative scores are truncated toward zero).
  await knex.raw(`
    CREATE FUNCTION shardline_score_range_hi(r bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
      SELECT CASE WHEN r < 128 THEN r ELSE r + (1::bigint << (shardline_bit_length(r) - 7)) - 1 END
    $$`);

  await knex.raw(`
    CREATE FUNCTION shardline_board_count_deltas() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO leaderboard_count_deltas (board_id, period, range, active, n)
        SELECT board_id, period, shardline_score_range(score), active, count(*) FROM new_rows GROUP BY 1, 2, 3, 4;
      ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO leaderboard_count_deltas (board_id, period, range, active, n)
        SELECT board_id, period, shardline_score_range(score), active, -count(*) FROM old_rows GROUP BY 1, 2, 3, 4;
      ELSE
        INSERT INTO leaderboard_count_deltas (board_id, period, range, active, n)
        SELECT board_id, period, range, active, sum(n) FROM (
          SELECT board_id, period, shardline_score_range(score) AS range, active, 1 AS n FROM new_rows
          UNION ALL
          SELECT board_id, period, shardline_score_range(score), active, -1 FROM old_rows) d
        GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0;
      END IF;
      RETURN NULL;
    END $$`);
  await knex.raw(`
    CREATE TRIGGER leaderboard_scores_counts_i AFTER INSERT ON leaderboard_scores
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION shardline_board_count_deltas()`);
  await knex.raw(`
    CREATE TRIGGER leaderboard_scores_counts_u AFTER UPDATE ON leaderboard_scores
      REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION shardline_board_count_deltas()`);
  await knex.raw(`
    CREATE TRIGGER leaderboard_scores_counts_d AFTER DELETE ON leaderboard_scores
      REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION shardline_board_count_deltas()`);

  // The plain game id's board follows player_stats, whatever statement wrote it.
  await knex.raw(`
    CREATE FUNCTION shardline_board_mirror_stats() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        DELETE FROM leaderboard_scores x USING old_rows o
        WHERE x.player_id = o.player_id AND x.board_id = o.game_id AND x.period = '';
      ELSE
        INSERT INTO leaderboard_scores AS x (player_id, board_id, period, score, active, last_match_id, updated_at)
        SELECT n.player_id, n.game_id, '', n.score, p.status = 'active', n.last_match_id, now()
        FROM new_rows n JOIN players p ON p.player_id = n.player_id
        ORDER BY n.player_id, n.game_id
        ON CONFLICT (player_id, board_id, period) DO UPDATE
          SET score = EXCLUDED.score, last_match_id = EXCLUDED.last_match_id, updated_at = EXCLUDED.updated_at
          WHERE x.score IS DISTINCT FROM EXCLUDED.score OR x.last_match_id IS DISTINCT FROM EXCLUDED.last_match_id;
      END IF;
      RETURN NULL;
    END $$`);
  await knex.raw(`
    CREATE TRIGGER player_stats_board_i AFTER INSERT ON player_stats
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION shardline_board_mirror_stats()`);
  await knex.raw(`
    CREATE TRIGGER player_stats_board_u AFTER UPDATE ON player_stats
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION shardline_board_mirror_stats()`);
  await knex.raw(`
    CREATE TRIGGER player_stats_board_d AFTER DELETE ON player_stats
      REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION shardline_board_mirror_stats()`);

  // A status change moves the player's rows between the shown and the hidden counts.
  await knex.raw(`
    CREATE FUNCTION shardline_board_player_status() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE leaderboard_scores x SET active = (n.status = 'active')
      FROM new_rows n
      WHERE x.player_id = n.player_id AND x.active IS DISTINCT FROM (n.status = 'active');
      RETURN NULL;
    END $$`);
  await knex.raw(`
    CREATE TRIGGER players_board_status AFTER UPDATE ON players
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION shardline_board_player_status()`);

  // Folds pending deltas into the counts; one compactor at a time, the others return at once (false).
  await knex.raw(`
    CREATE FUNCTION shardline_compact_board_counts() RETURNS boolean
    LANGUAGE plpgsql AS $$
    BEGIN
      IF NOT pg_try_advisory_xact_lock(hashtext('shardline.leaderboard_counts')) THEN
        RETURN false;
      END IF;
      WITH d AS (DELETE FROM leaderboard_count_deltas RETURNING board_id, period, range, active, n)
      INSERT INTO leaderboard_counts AS c (board_id, period, range, active, n)
      SELECT board_id, period, range, active, sum(n) FROM d GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4
      ON CONFLICT (board_id, period, range, active) DO UPDATE SET n = c.n + EXCLUDED.n;
      RETURN true;
    END $$`);

  await knex.raw(`
    CREATE FUNCTION shardline_rebuild_leaderboards() RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_advisory_xact_lock(hashtext('shardline.leaderboard_counts'));
      LOCK TABLE leaderboard_scores IN SHARE ROW EXCLUSIVE MODE;
      -- Mirror rows: exactly player_stats (statement triggers keep the deltas right meanwhile).
      DELETE FROM leaderboard_scores x WHERE x.period = ''
        AND NOT EXISTS (SELECT 1 FROM player_stats s WHERE s.player_id = x.player_id AND s.game_id = x.board_id);
      INSERT INTO leaderboard_scores AS x (player_id, board_id, period, score, active, last_match_id)
      SELECT s.player_id, s.game_id, '', s.score, p.status = 'active', s.last_match_id
      FROM player_stats s JOIN players p ON p.player_id = s.player_id
      ON CONFLICT (player_id, board_id, period) DO UPDATE SET score = EXCLUDED.score, last_match_id = EXCLUDED.last_match_id
        WHERE x.score IS DISTINCT FROM EXCLUDED.score OR x.last_match_id IS DISTINCT FROM EXCLUDED.last_match_id;
      UPDATE leaderboard_scores x SET active = (p.status = 'active') FROM players p
        WHERE p.player_id = x.player_id AND x.active IS DISTINCT FROM (p.status = 'active');
      -- Counts: recomputed from the rows, pending deltas dropped.
      DELETE FROM leaderboard_count_deltas;
      DELETE FROM leaderboard_counts;
      INSERT INTO leaderboard_counts (board_id, period, range, active, n)
      SELECT board_id, period, shardline_score_range(score), active, count(*) FROM leaderboard_scores GROUP BY 1, 2, 3, 4;
    END $$`);

  // Existing scores: the plain boards of a deployment migrated from before this migration.
  await knex.raw(`SELECT shardline_rebuild_leaderboards()`);

  await knex.raw(`
    DO $$
    DECLARE
      app text := ${APP_ROLE};
      s text := current_schema();
    BEGIN
${CHECK_APP_ROLE}
      EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.leaderboard_boards, %I.leaderboard_seasons, %I.leaderboard_scores,
        %I.leaderboard_counts, %I.leaderboard_count_deltas, %I.leaderboard_late_results TO %I', s, s, s, s, s, s, app);
    END $$`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TRIGGER players_board_status ON players`);
  await knex.raw(`DROP TRIGGER player_stats_board_i ON player_stats`);
  await knex.raw(`DROP TRIGGER player_stats_board_u ON player_stats`);
  await knex.raw(`DROP TRIGGER player_stats_board_d ON player_stats`);
  await knex.raw(
    `DROP TABLE leaderboard_late_results, leaderboard_count_deltas, leaderboard_counts, leaderboard_scores, leaderboard_seasons, leaderboard_boards`,
  );
  await knex.raw(`DROP FUNCTION shardline_rebuild_leaderboards()`);
  await knex.raw(`DROP FUNCTION shardline_compact_board_counts()`);
  await knex.raw(`DROP FUNCTION shardline_board_player_status()`);
  await knex.raw(`DROP FUNCTION shardline_board_mirror_stats()`);
  await knex.raw(`DROP FUNCTION shardline_board_count_deltas()`);
  await knex.raw(`DROP FUNCTION shardline_score_range_hi(bigint)`);
  await knex.raw(`DROP FUNCTION shardline_score_range(bigint)`);
  await knex.raw(`DROP FUNCTION shardline_bit_length(bigint)`);
}
