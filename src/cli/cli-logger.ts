import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

/**
 * The logger the CLI hands the library: warnings as one plain line each on stderr, never pino's
 * JSON with an error's stack (an operator reads these on a terminal; the worker keeps JSON logs).
 */
export function cliLogger(level: 'warn' | 'error' = 'warn'): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() !== '') process.stderr.write(`${plainLine(line)}\n`);
      }
      done();
    },
  });
  return pino({ level }, sink);
}

function plainLine(json: string): string {
  try {
    const entry = JSON.parse(json) as { level?: number; msg?: string; err?: { message?: string } };
    const label = (entry.level ?? 40) >= 50 ? 'error' : 'warning';
    const detail = entry.err?.message ? `: ${entry.err.message}` : '';
    return `${label}: ${entry.msg ?? ''}${detail}`;
  } catch {
    return `warning: ${json}`;
  }
}
