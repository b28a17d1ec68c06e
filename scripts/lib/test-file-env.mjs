// Imported (`--import`) before each test file by scripts/test.ts's runner: node:test starts every
// file in a process of its own with the runner's execArgv and the file's path as argv[1]. Sets
// the Temporal namespace that `npm test` created for that file (scripts/lib/test-namespace.ts);
// any other process keeps its environment. Plain JavaScript: Temporal's workflow threads inherit
// the execArgv too, and TypeScript does not load there.

import path from 'node:path';

const file = process.argv[1];
const byFile = JSON.parse(process.env.REMIT_TEST_NAMESPACES || '{}');
const namespace = file ? byFile[path.resolve(file)] : undefined;
if (namespace) process.env.TEMPORAL_NAMESPACE = namespace;
