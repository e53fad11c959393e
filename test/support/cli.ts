import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/** The real `shardline` bin of this checkout (runs the TypeScript sources through tsx). */
export const SHARDLINE_BIN = 'src/cli/bin.js';

export interface CliResult {
  /** The exit code; null when a signal ended the process. */
  code: number | null;
  /** The signal that ended the process, if one did. */
  signal?: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Added to the environment; a variable set to undefined is removed from it. */
  env?: Record<string, string | undefined>;
  /** The process is SIGKILLed after this long (default 60 s), so no test waits on a hung command. */
  timeoutMs?: number;
  /** Working directory (default this one, the checkout). */
  cwd?: string;
}

export interface CliProcess {
  readonly child: ChildProcess;
  /** stdout and stderr so far, interleaved as they came. */
  output(): string;
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has exited and its output is read. */
  readonly done: Promise<CliResult>;
}

/**
 * Starts `shardline ...args` as a subprocess, the way operators run it. Its environment is this
 * process's without SHARDLINE_MAP (so a developer's shell cannot point a test at another map), plus
 * `options.env`.
 */
export function startCli(args: readonly string[], options: CliOptions = {}): CliProcess {
  const child = spawn(process.execPath, [path.resolve(SHARDLINE_BIN), ...args], {
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    env: { ...process.env, SHARDLINE_MAP: '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
    output += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const done = new Promise<CliResult>((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  // A caller that only watches `child` must not turn a spawn failure into an unhandled rejection.
  done.catch(() => undefined);
  return { child, done, output: () => output, stdout: () => stdout, stderr: () => stderr };
}

/** Runs `shardline ...args` to its end (see startCli). */
export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return startCli(args, options).done;
}
