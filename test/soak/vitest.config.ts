import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// The long run only (`npm run test:soak`): the main config excludes test/soak so CI never starts it.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/soak/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 900_000,
    hookTimeout: 180_000,
  },
});
