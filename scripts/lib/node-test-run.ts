// node:test's runner for scripts/test.ts, given the files in the order to start them:
//   node --import tsx scripts/lib/node-test-run.ts --timeout=MS [--concurrency=N] [--test-name-pattern=RE]... [--test-only] -- FILE...
// `node --test FILE...` sorts its file arguments; run() keeps our order (start order, and the
// order files are reported in). Each file runs in its own process with this process's execArgv
// (--import tsx and scripts/test.ts's per-file environment), N files at a time. Exits 1 if
// anything failed. At the end, the slowest files go to stderr: the figures behind scripts/test.ts's
// start order.

import { setMaxListeners } from 'node:events';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';

const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
const flags = sep === -1 ? argv : argv.slice(0, sep);
const files = sep === -1 ? [] : argv.slice(sep + 1);

let timeout: number | undefined;
let concurrency = 1;
const testNamePatterns: string[] = [];
let only = false;
for (const f of flags) {
  if (f.startsWith('--timeout=')) timeout = Number(f.slice('--timeout='.length));
  else if (f.startsWith('--concurrency=')) concurrency = Math.max(1, Math.floor(Number(f.slice('--concurrency='.length))) || 1);
  else if (f.startsWith('--test-name-pattern=')) testNamePatterns.push(f.slice('--test-name-pattern='.length));
  else if (f === '--test-only') only = true;
  else {
    process.stderr.write(`node-test-run: unsupported flag ${f} (supported: --concurrency=N, --test-name-pattern=RE, --test-only)\n`);
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
  concurrency,
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

// Seconds per file: its top-level tests' durations, as measured in the file's own process.
const fileSeconds = new Map<string, number>();
const count = (data: { nesting: number; file?: string; details?: { duration_ms?: number } }) => {
  if (data.nesting !== 0 || !data.file) return;
  fileSeconds.set(data.file, (fileSeconds.get(data.file) ?? 0) + (data.details?.duration_ms ?? 0) / 1000);
};
stream.on('test:pass', count);
stream.on('test:fail', count);
const started = Date.now();
stream
  .compose(new spec())
  .on('end', () => {
    if (fileSeconds.size < 2) return;
    const slowest = [...fileSeconds].sort((a, b) => b[1] - a[1]).slice(0, 12);
    const cwd = process.cwd();
    process.stderr.write(
      `\n[test] ${fileSeconds.size} files in ${((Date.now() - started) / 1000).toFixed(0)} s, ${concurrency} at a time; slowest (s): ` +
        `${slowest.map(([f, s]) => `${f.startsWith(cwd) ? f.slice(cwd.length + 1) : f} ${s.toFixed(0)}`).join(', ')}\n`,
    );
  })
  .pipe(process.stdout);
