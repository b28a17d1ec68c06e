// Small process helpers shared by the set-up scripts (Temporal CLI, PostgreSQL, test runner).
// Everything here stops only processes it was handed, by pid: other people's processes on the
// same machine (a developer's own Temporal or PostgreSQL) must survive our tests.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export type Log = (message: string) => void;

/** Set-up chatter goes to stderr so that a command's stdout stays its own (e.g. test results). */
export const stderrLog: Log = (message) => {
  process.stderr.write(`${message}\n`);
};

/** The repository root: scripts/lib/ is two levels down. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');

/** A port that was free a moment ago on 127.0.0.1 (the OS picks it when we bind port 0). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('could not pick a free port'))));
    });
  });
}

/** Keeps the last `limit` characters of a stream, for error messages about a dead process. */
export class OutputTail {
  private text = '';
  constructor(private readonly limit = 16_000) {}
  push(chunk: Buffer | string): void {
    this.text += chunk.toString();
    if (this.text.length > this.limit * 2) this.text = this.text.slice(-this.limit);
  }
  toString(maxLines = 40): string {
    const lines = this.text.slice(-this.limit).split('\n');
    return lines.slice(-maxLines).join('\n').trim();
  }
  /** Lines that look like the reason a process failed (they can scroll out of the tail, e.g. above a usage text). */
  errorLines(max = 10): string[] {
    return this.text
      .slice(-this.limit)
      .split('\n')
      .filter((l) => /\b(error|fatal|panic|unknown flag)\b/i.test(l))
      .slice(0, max);
  }
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Echo each output line to this log as it arrives (long installs should show progress). */
  echo?: Log;
}

/** Runs a command to completion and collects its output; never throws for a non-zero exit. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const spawnOpts: SpawnOptions = { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] };
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, spawnOpts);
    } catch (err) {
      resolve({ code: null, signal: null, stdout: '', stderr: String(err) });
      return;
    }
    let stdout = '';
    let stderr = '';
    const echoLines = (chunk: Buffer) => {
      if (!opts.echo) return;
      for (const line of chunk.toString().split('\n')) if (line.trim()) opts.echo(`    ${line.trimEnd()}`);
    };
    child.stdout?.on('data', (c: Buffer) => {
      stdout += c.toString();
      echoLines(c);
    });
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString();
      echoLines(c);
    });
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          stderr += `\n[killed after ${opts.timeoutMs} ms]`;
          child.kill('SIGKILL');
        }, opts.timeoutMs)
      : undefined;
    child.once('error', (err) => {
      if (timer) clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr: stderr + String(err) });
    });
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Like run(), but a non-zero exit becomes an error that carries the command and its output. */
export async function runChecked(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const out = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`\`${[cmd, ...args].join(' ')}\` failed (${r.signal ? `signal ${r.signal}` : `exit ${r.code}`}):\n${out}`);
  }
  return r;
}

export function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The first executable called `name` on PATH, or null. */
export function which(name: string, envPath = process.env.PATH ?? ''): string | null {
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else (e.g. the postgres user).
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `pid` is gone; true if it went within the timeout. */
export async function waitForPidExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!pidAlive(pid)) return true;
    await sleep(50);
  }
  return !pidAlive(pid);
}

/**
 * Stops one child we started: SIGTERM, then SIGKILL if it is still there after `graceMs`.
 * Resolves once it has exited. Safe to call twice and after the child died on its own.
 */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), graceMs).unref());
  if ((await Promise.race([exited, timer])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

/** Poll every `intervalMs` until `fn` returns a truthy value or the timeout passes (errors count as not yet). */
export async function eventually<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs: number, what = 'condition', intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
