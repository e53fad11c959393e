// ESLint flat config: `npm run lint`. typescript-eslint's type-aware recommended set (it catches floating promises
// and misused async callbacks, which plain syntax rules cannot), kept to what finds real faults in this codebase.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  // .ci/pack-check/ is compiled by the pack check itself, in a fresh project against the packed package.
  { ignores: ['dist/', 'node_modules/', '.tmp/', 'bench/results.json', '.ci/pack-check/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        // Files outside tsconfig.json's include (this config, src/cli/bin.js) get the same compiler options.
        projectService: { allowDefaultProject: ['*.js', 'src/cli/*.js', 'test/package/*.mjs'], defaultProject: 'tsconfig.json' },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // An `async` function without `await` is how this code implements Promise-returning interfaces (knex's
      // MigrationSource, AsyncIterator.return, stop and submit callbacks); the rule would demand Promise.resolve wrappers.
      '@typescript-eslint/require-await': 'off',
      // `_`-prefixed names are deliberately unused (destructuring a field away, a required but unread parameter).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // Vitest's asymmetric matchers (expect.any, expect.stringMatching, ...) are typed `any` by design.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      // Tests match control characters on purpose: terminal escapes, NUL and other hostile input.
      'no-control-regex': 'off',
    },
  },
  {
    files: ['**/*.js'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: { URL: 'readonly', process: 'readonly', console: 'readonly' } },
  },
);
