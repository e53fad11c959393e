/** Where the test suite finds the local services (CI and developer machines alike). */
export const PG_ADMIN_URL = process.env.SHARDLINE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.SHARDLINE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Databases this test run creates start with this prefix, so teardown drops its own leftovers and
 * never another run's (several runs may share one Postgres). The global setup picks the run id and
 * passes it to the test workers through the environment they inherit.
 */
export const RUN_ID = (process.env.SHARDLINE_TEST_RUN ??= `${process.pid.toString(36)}${Date.now().toString(36).slice(-5)}`);
export const RUN_PREFIX = `sltest_${RUN_ID}_`;

let counter = 0;
/** A name unique to this process and call: queue names, key prefixes, database names. */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter}`.toLowerCase();
}

export function urlFor(database: string): string {
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${database}`;
  return u.toString();
}
