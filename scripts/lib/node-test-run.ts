// node:test's runner for scripts/test.ts, given the files in the order to run them:
//   node --import tsx scripts/lib/node-test-run.ts --timeout=MS [--test-name-pattern=RE]... [--test-only] -- FILE...
// `node --test FILE...` sorts its file arguments (test/integration before test/unit); run() keeps
// our order, so the fast unit tests report first. Each file runs in its own process, one at a
// time, with this process's --import tsx. Exits 1 if anything failed.

import { setMaxListeners } from 'node:events';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';

const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
const flags = sep === -1 ? argv : argv.slice(0, sep);
const files = sep === -1 ? [] : argv.slice(sep + 1);

let timeout: number | undefined;
const testNamePatterns: string[] = [];
let only = false;
for (const f of flags) {
  if (f.startsWith('--timeout=')) timeout = Number(f.slice('--timeout='.length));
  else if (f.startsWith('--test-name-pattern=')) testNamePatterns.push(f.slice('--test-name-pattern='.length));
  else if (f === '--test-only') only = true;
  else {
    process.stderr.write(`node-test-run: unsupported flag ${f} (supported: --test-name-pattern=RE, --test-only)\n`);
    process.exit(2);
  }
}
if (files.length === 0) {
  process.stderr.write('node-test-run: no test files given\n');
  process.exit(2);
}

// Ctrl-C / SIGTERM: abort, which kills the running test file's process, instead of leaving it
// orphaned and still talking to servers that are being torn down.
const abort = new AbortController();
setMaxListeners(0, abort.signal); // one listener per test file
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    abort.abort();
    process.exitCode = 130;
    setTimeout(() => process.exit(130), 5_000).unref();
  });
}

const stream = run({
  files,
  concurrency: 1,
  // Node 20 applies this per test file (as `node --test --test-timeout` does).
  timeout,
  // A file that leaves a handle open (a pool, a timer) must not hang the whole run.
  forceExit: true,
  signal: abort.signal,
  ...(testNamePatterns.length ? { testNamePatterns } : {}),
  ...(only ? { only } : {}),
});
stream.on('test:fail', (data: { todo?: unknown }) => {
  if (!data.todo) process.exitCode ||= 1;
});
stream.compose(new spec()).pipe(process.stdout);
