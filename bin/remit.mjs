#!/usr/bin/env node
// `remit`, the operator CLI (package bin): runs cli/remit.ts through tsx,
//   node --import <this package's tsx> cli/remit.ts [args...]
// from any working directory (the CLI looks for .remit/local-stack.json there), forwarding the
// arguments, stdio, signals and exit code. tsx is resolved from this package's own
// node_modules, so `npx remit` and `./bin/remit.mjs` work wherever they are run from.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const entry = path.join(root, 'cli', 'remit.ts');

function fail(message) {
  process.stderr.write(`remit: ${message}\n`);
  process.exit(1);
}

/** tsx's ESM loader as a file URL, resolved from this file (not from the working directory). */
function tsxLoader() {
  try {
    if (typeof import.meta.resolve === 'function') return import.meta.resolve('tsx');
  } catch {
    // fall through: resolve through package.json below
  }
  const require = createRequire(import.meta.url);
  const pkgFile = require.resolve('tsx/package.json');
  const dot = JSON.parse(fs.readFileSync(pkgFile, 'utf8')).exports?.['.'];
  const rel = typeof dot === 'string' ? dot : (dot?.import?.default ?? dot?.import ?? dot?.default);
  if (typeof rel !== 'string') throw new Error(`cannot find the loader in ${pkgFile}`);
  return pathToFileURL(path.join(path.dirname(pkgFile), rel)).href;
}

let loader;
try {
  loader = tsxLoader();
} catch (err) {
  fail(`cannot find tsx (${err.message}): run \`npm install\` in ${root}`);
}

const child = spawn(process.execPath, ['--import', loader, entry, ...process.argv.slice(2)], { stdio: 'inherit' });

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  });
}

child.on('error', (err) => fail(`could not start ${entry}: ${err.message}`));
child.on('exit', (code, signal) => {
  if (signal) {
    // Die the same way, so that a shell or a script sees the real cause.
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    setTimeout(() => process.exit(128 + (os.constants.signals[signal] ?? 0)), 100).unref();
    return;
  }
  process.exit(code ?? 1);
});
