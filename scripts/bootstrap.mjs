#!/usr/bin/env node
// Entry point of `npm test`, `npm start`, `npm run bench` and `npm run chaos`:
//   node scripts/bootstrap.mjs <command> [args...]  ->  node --import tsx scripts/<command>.ts [args...]
// Plain Node with no dependencies, because it is what installs the dependencies: in a fresh
// clone node_modules does not exist yet, and tsx lives there.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [command, ...args] = process.argv.slice(2);

function fail(message) {
  process.stderr.write(`bootstrap: ${message}\n`);
  process.exit(1);
}

const mtime = (p) => {
  try {
    return fs.statSync(p).mtimeMs;
  } catch {
    return undefined;
  }
};

function commands() {
  return fs
    .readdirSync(path.join(root, 'scripts'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.slice(0, -3))
    .sort();
}

if (!command || command.startsWith('-')) fail(`usage: node scripts/bootstrap.mjs <command> [args]; commands: ${commands().join(', ')}`);
const script = path.join(root, 'scripts', `${command}.ts`);
if (!fs.existsSync(script)) fail(`no scripts/${command}.ts; commands: ${commands().join(', ')}`);

// npm writes node_modules/.package-lock.json at the end of every install: older than the
// lockfile means the dependencies changed since (a pull, a branch switch).
const lockTime = mtime(path.join(root, 'package-lock.json'));
const installedTime = mtime(path.join(root, 'node_modules', '.package-lock.json'));
const why =
  installedTime === undefined
    ? 'node_modules is missing'
    : lockTime !== undefined && lockTime > installedTime
      ? 'package-lock.json is newer than node_modules'
      : undefined;
if (why) {
  process.stderr.write(`bootstrap: ${why}: running npm ci ...\n`);
  const npm = os.platform() === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.error) fail(`could not run npm ci: ${r.error.message}`);
  if (r.status !== 0) fail(`npm ci failed (exit ${r.status ?? r.signal}); fix the error above and run again`);
  process.stderr.write('bootstrap: npm ci done\n');
}

// cwd = repo root: `--import tsx` resolves tsx from there, and scripts use repo-relative paths.
const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, stdio: 'inherit' });

// Forward SIGINT/SIGTERM/SIGHUP to the script, which owns the clean-up of what it started.
// A terminal's Ctrl-C reaches the whole process group (npm, us, the script) and npm forwards it
// too, so the script may see the same signal more than once: scripts treat repeats as one.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  });
}

child.on('error', (err) => fail(`could not start ${script}: ${err.message}`));
child.on('exit', (code, signal) => {
  if (signal) {
    // Die the same way, so that callers (npm, a shell, CI) see the real cause.
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    setTimeout(() => process.exit(128 + (os.constants.signals[signal] ?? 0)), 100).unref();
    return;
  }
  process.exit(code ?? 1);
});
