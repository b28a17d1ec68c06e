// One Temporal namespace per test file on `npm test`'s shared dev server, so that test files can
// run at the same time: each stack already has its own database and task queue, but workflow
// ids (remittance/aws/<account>/<product>/<dimension>/<hour>), schedules and visibility queries
// (`remit replay --query`, the Web UI's lists) are per namespace, and two files billing the same
// account in the same scaled hour would otherwise meet in one of them.
//
// scripts/test.ts creates the namespaces (the dev server registers the search attributes in each)
// and maps each file's absolute path to its namespace in REMIT_TEST_NAMESPACES (JSON);
// test-file-env.mjs, imported first in each test file's process, sets TEMPORAL_NAMESPACE from it
// before anything reads it, so the harness, the product's config and every process a test
// spawns use it.

import path from 'node:path';
import { REPO_ROOT } from './proc';

/** JSON { "<absolute test file path>": "<namespace>" } of what scripts/test.ts created. */
export const TEST_NAMESPACES_ENV = 'REMIT_TEST_NAMESPACES';

/** `test/integration/crash.test.ts` -> `test-integration-crash`. */
export function testNamespaceOf(file: string): string {
  const rel = path.relative(REPO_ROOT, path.resolve(REPO_ROOT, file)).split(path.sep).join('/');
  const slug = rel
    .replace(/^test\//, '')
    .replace(/\.test\.[cm]?[jt]s$/, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
  return `test-${slug || 'file'}`;
}
