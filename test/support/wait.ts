/**
 * Polls `fn` until it returns something truthy and resolves with that value. Bounded: after
 * `timeoutMs` it throws, naming `what`, so a condition that never comes fails the test instead of
 * hanging it. A function returning a boolean gives `true`; one returning a value gives the value.
 */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
