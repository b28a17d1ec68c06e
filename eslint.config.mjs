// Lint rules that protect the two things that break Temporal code silently:
// promises nobody awaits, and non-deterministic Node built-ins inside workflow code.
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const nodeBuiltins = builtinModules.flatMap((m) => [m, `node:${m}`]).filter((m) => !['assert', 'node:assert'].includes(m));

export default tseslint.config(
  { ignores: ['node_modules/**', '.tools/**', '.remit/**', '.tmp/**', '.tmp-*', 'dist/**', 'db/migrations/**', 'bin/**', 'scripts/bootstrap.mjs', 'eslint.config.mjs'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommended],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // node:test's describe/it return promises the runner itself tracks.
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Tests (and the harness they share) read loosely typed JSON answers.
    files: ['test/**/*.ts', 'scripts/bench/**/*.ts', 'scripts/lib/stack-harness.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox: no I/O, no clocks, no Node built-ins.
    files: ['workflows/**/*.ts'],
    // The typed start helpers run in the client (API, worker's close activity), never in a workflow.
    ignores: ['workflows/client.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: nodeBuiltins.map((name) => ({ name, message: 'Workflow code must be deterministic: do I/O in an activity.' })),
        patterns: [
          { group: ['pg', 'drizzle-orm', 'drizzle-orm/*', 'pino', 'undici', '@aws-sdk/*', '@azure/*', 'fastify'], message: 'Workflow code must not do I/O: use an activity.' },
          { group: ['@temporalio/activity', '@temporalio/client', '@temporalio/worker', '@temporalio/testing'], message: 'Workflows import only @temporalio/workflow (and import type of activities).' },
        ],
      }],
    },
  },
);
