import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * A racing child process for the concurrency tests: `node --import tsx <script> <args>`, which
 * prints `ready` once set up, starts on a `go` line on stdin, prints one JSON result line and exits.
 * Several are started, then all told to go, so their work begins at the same moment.
 */
export async function startGoWorker<T>(script: string, args: readonly string[]): Promise<{ go(): Promise<T> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  // Listened for from the start: a child's 'exit' may come before its last stdout line is read,
  // and a listener added after it would wait forever.
  const exited = new Promise((r) => child.once('exit', r));
  const iterator = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.value !== 'ready') throw new Error(`${script} did not start: ${String(first.value)}`);
  return {
    async go() {
      child.stdin.write('go\n');
      const line = await iterator.next();
      child.stdin.end();
      await exited;
      if (line.done) throw new Error(`${script} exited without a result`);
      return JSON.parse(line.value) as T;
    },
  };
}
