// A small process supervisor for the local stack: runs each part as a child process, restarts
// one that dies unexpectedly (and says so), and stops them all in reverse order on Ctrl-C.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import path from 'node:path';

export interface ServiceSpec {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Resolves when the service is ready to serve; rejects or times out otherwise. */
  ready?: () => Promise<void>;
}

interface Running {
  spec: ServiceSpec;
  child: ChildProcess;
  restarts: number;
  /** When the current process was started. */
  since: number;
  stopping: boolean;
  log: WriteStream;
}

export class Supervisor {
  private services = new Map<string, Running>();
  private stopping = false;

  constructor(
    private readonly logDir: string,
    private readonly say: (msg: string) => void,
    private readonly onChange: () => void,
  ) {
    mkdirSync(logDir, { recursive: true });
  }

  pids(): Record<string, number | undefined> {
    return Object.fromEntries([...this.services].map(([n, r]) => [n, r.child.pid]));
  }

  logFile(name: string): string {
    return path.join(this.logDir, `${name}.log`);
  }

  async start(spec: ServiceSpec): Promise<void> {
    const log = createWriteStream(this.logFile(spec.name), { flags: 'a' });
    const running: Running = { spec, child: this.spawn(spec, log), restarts: 0, since: Date.now(), stopping: false, log };
    this.services.set(spec.name, running);
    this.watch(running);
    await this.waitReady(running);
    this.onChange();
  }

  private spawn(spec: ServiceSpec, log: WriteStream): ChildProcess {
    const child = spawn(spec.command, spec.args, { cwd: spec.cwd, env: { ...process.env, ...spec.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    return child;
  }

  private async waitReady(r: Running): Promise<void> {
    if (!r.spec.ready) return;
    let exited: string | undefined;
    const onExit = (code: number | null, sig: string | null) => (exited = `exited (${sig ?? code})`);
    r.child.once('exit', onExit);
    const deadline = Date.now() + 120_000;
    for (;;) {
      try {
        await r.spec.ready();
        r.child.off('exit', onExit);
        return;
      } catch (err) {
        if (exited) throw new Error(`${r.spec.name} ${exited} before it was ready; see ${this.logFile(r.spec.name)}`);
        if (Date.now() > deadline) throw new Error(`${r.spec.name} not ready after 120 s (${(err as Error).message}); see ${this.logFile(r.spec.name)}`);
        await new Promise((res) => setTimeout(res, 300));
      }
    }
  }

  private watch(r: Running): void {
    r.child.once('exit', (code, signal) => {
      if (this.stopping || r.stopping) return;
      // A part that ran a while before dying is restarted as fast as the first time: the delay
      // grows only for a part that keeps dying at once (a crash loop), not over a long life.
      if (Date.now() - r.since > 60_000) r.restarts = 0;
      r.restarts += 1;
      const delay = Math.min(30_000, 500 * 2 ** Math.min(r.restarts - 1, 6));
      this.say(`! ${r.spec.name} (pid ${r.child.pid}) died unexpectedly (${signal ?? `exit ${code}`}); restarting in ${delay} ms (restart #${r.restarts}); log: ${this.logFile(r.spec.name)}`);
      setTimeout(() => {
        if (this.stopping) return;
        r.child = this.spawn(r.spec, r.log);
        r.since = Date.now();
        this.watch(r);
        this.waitReady(r)
          .then(() => {
            this.say(`  ${r.spec.name} is back (pid ${r.child.pid})`);
            this.onChange();
          })
          .catch((err: Error) => this.say(`! ${err.message}`));
        this.onChange();
      }, delay).unref();
    });
  }

  /**
   * Sends `signal` to a running service (a chaos fault, a proof's restart) and resolves once the
   * supervisor has it running again and ready.
   */
  async bounce(name: string, signal: NodeJS.Signals, timeoutMs = 180_000): Promise<{ pid: number; newPid: number; ms: number }> {
    const r = this.services.get(name);
    const pid = r?.child.pid;
    if (!r || pid === undefined) throw new Error(`no running service ${name}`);
    const started = Date.now();
    r.child.kill(signal);
    for (;;) {
      const c = r.child;
      if (c.pid !== pid && c.exitCode === null && c.signalCode === null) {
        try {
          await r.spec.ready?.();
          return { pid, newPid: c.pid!, ms: Date.now() - started };
        } catch {
          // not ready yet
        }
      }
      if (Date.now() - started > timeoutMs) throw new Error(`${name} was not back ${timeoutMs} ms after ${signal}; see ${this.logFile(name)}`);
      await new Promise((res) => setTimeout(res, 300));
    }
  }

  /** Stop every service, last started first: SIGTERM, then SIGKILL after a grace period. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    for (const r of [...this.services.values()].reverse()) {
      r.stopping = true;
      const child = r.child;
      if (child.exitCode !== null || child.signalCode !== null) continue;
      await new Promise<void>((resolve) => {
        const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      });
      r.log.end();
    }
  }
}
