#!/usr/bin/env node
// `remit`, the operator CLI (package bin): runs cli/remit.ts in this very process, with tsx's
// loaders registered from this package's own node_modules, so `npx remit` and `./bin/remit.mjs`
// work wherever they are run from (the CLI looks for .remit/local-stack.json in the working
// directory). No child process: a token given as a flag is never copied onto another process's
// command line.

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const entry = path.join(root, 'cli', 'remit.ts');

function fail(message) {
  process.stderr.write(`remit: ${message}\n`);
  process.exit(1);
}

let cli;
try {
  // Both loaders: cli/remit.ts is CommonJS, and it imports some packages dynamically.
  (await import('tsx/cjs/api')).register();
  const esm = await import('tsx/esm/api');
  if (typeof esm.register === 'function') {
    try {
      esm.register();
    } catch {
      // Node without module.register (< 20.6): the CommonJS loader is enough for the CLI.
    }
  }
  cli = createRequire(import.meta.url)(entry);
} catch (err) {
  fail(`cannot load ${entry} (${err.message}): run \`npm install\` in ${root}`);
}
cli.runAsProcess(process.argv.slice(2));
