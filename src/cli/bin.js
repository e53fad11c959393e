#!/usr/bin/env node
// The `shardline` command. In a clone the TypeScript sources run directly through tsx, so
// `npx shardline` works right after `npm ci` with no build step; a published package runs dist/.
import { existsSync } from 'node:fs';

const source = new URL('./main.ts', import.meta.url);
try {
  if (existsSync(source)) {
    const { register } = await import('tsx/esm/api');
    register();
    await import(source.href);
  } else {
    await import(new URL('../../dist/src/cli/main.js', import.meta.url).href);
  }
} catch (err) {
  // Only a failure to load the program gets here (main.ts reports its own errors): one line, as
  // for every CLI error; the stack is for whoever debugs the installation.
  console.error(`error: shardline could not start: ${err instanceof Error ? err.message : String(err)}`);
  if (process.env.SHARDLINE_DEBUG) console.error(err);
  process.exitCode = 1;
}
