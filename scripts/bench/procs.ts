// What each process of a running stack costs, read from Linux's /proc: CPU time (to say where
// the time goes during a drain, as `top` would), peak memory, and the machine's I/O wait.
// Processes are named by their root pid; a root's descendants (PostgreSQL's backends) count
// with it. Elsewhere than Linux every reading is null.

import fs from 'node:fs';

/** sysconf(_SC_CLK_TCK): 100 on every Linux this runs on. */
const CLOCK_TICKS = 100;

function read(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Fields of /proc/<pid>/stat after the command name (which may contain spaces). */
function statFields(pid: number): string[] | null {
  const s = read(`/proc/${pid}/stat`);
  return s === null ? null : s.slice(s.lastIndexOf(')') + 2).split(' ');
}

/** `pid` and every process below it. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return [pid];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const f = statFields(Number(e));
    if (!f) continue;
    const ppid = Number(f[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

/** User + system CPU seconds of these processes (their own, not reaped children's), null if none is readable. */
export function cpuSeconds(pids: number[]): number | null {
  let total = 0;
  let seen = false;
  for (const pid of pids) {
    const f = statFields(pid);
    if (!f) continue;
    seen = true;
    total += (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  }
  return seen ? total : null;
}

function statusKb(pid: number, field: string): number | null {
  const m = read(`/proc/${pid}/status`)?.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  return m ? Number(m[1]) : null;
}

/**
 * Memory of a process tree now, in kB: proportional set size (shared pages split between the
 * processes sharing them, so PostgreSQL's shared buffers count once), else RSS.
 */
export function treeMemoryKb(pids: number[]): number | null {
  let total = 0;
  let seen = false;
  for (const pid of pids) {
    const m = read(`/proc/${pid}/smaps_rollup`)?.match(/^Pss:\s+(\d+) kB/m);
    const kb = m ? Number(m[1]) : statusKb(pid, 'VmRSS');
    if (kb === null) continue;
    seen = true;
    total += kb;
  }
  return seen ? total : null;
}

/** The kernel's own peak RSS of one process since it started (VmHWM), kB. */
export function peakRssKb(pid: number): number | null {
  return statusKb(pid, 'VmHWM');
}

/** Machine-wide CPU time split, in ticks: for the share spent waiting on I/O. */
export function machineCpu(): { total: number; idle: number; iowait: number } | null {
  const line = read('/proc/stat')?.split('\n')[0];
  if (!line?.startsWith('cpu ')) return null;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  return { total: v.reduce((a, b) => a + b, 0), idle: v[3] ?? 0, iowait: v[4] ?? 0 };
}

export interface ProcessCost {
  /** Peak of the process tree's memory (PSS), sampled once a second, MB. */
  peakMemoryMb: number | null;
  /** The root process's own peak RSS as the kernel counts it (VmHWM), MB. */
  rootPeakRssMb: number | null;
}

/**
 * Samples the memory of named process trees once a second; `pids()` is asked each time, so a
 * process the supervisor restarted is followed. `cpu()` snapshots CPU seconds per name.
 */
export class ProcessSampler {
  private peaks = new Map<string, number>();
  private hwm = new Map<string, number>();
  private timer: NodeJS.Timeout;

  constructor(private readonly pids: () => Record<string, number | undefined>, intervalMs = 1000) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): void {
    for (const [name, pid] of Object.entries(this.pids())) {
      if (!pid) continue;
      const kb = treeMemoryKb(processTree(pid));
      if (kb !== null) this.peaks.set(name, Math.max(this.peaks.get(name) ?? 0, kb));
      const h = peakRssKb(pid);
      if (h !== null) this.hwm.set(name, Math.max(this.hwm.get(name) ?? 0, h));
    }
  }

  cpu(): Record<string, number | null> {
    return Object.fromEntries(Object.entries(this.pids()).map(([name, pid]) => [name, pid ? cpuSeconds(processTree(pid)) : null]));
  }

  /** Stops sampling (after a last sample) and returns the peaks per name. */
  stop(): Record<string, ProcessCost> {
    this.sample();
    clearInterval(this.timer);
    const mb = (kb: number | undefined) => (kb === undefined ? null : Math.round(kb / 102.4) / 10);
    const names = new Set([...this.peaks.keys(), ...this.hwm.keys()]);
    return Object.fromEntries([...names].map((n) => [n, { peakMemoryMb: mb(this.peaks.get(n)), rootPeakRssMb: mb(this.hwm.get(n)) }]));
  }
}
