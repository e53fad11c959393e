/**
 * The rejection of `p`, for asserting on an error's class and fields. A promise that resolves fails
 * the test here, rather than passing its value on to an `instanceof` check that says less.
 */
export async function errorOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}
