// Reads a V8 .cpuprofile (node --cpu-prof) and says where the process spent its CPU: self time
// grouped by package (node_modules/<name>, remit's own folders, V8's garbage collector) and the
// hottest functions. Idle time is left out, so the shares are of the time the process worked.

import fs from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  file: string;
  /** CPU time the profile saw the process busy (not idle), s. */
  busySeconds: number;
  /** Share of busy time per package or folder, %, largest first. */
  byPackage: Array<{ name: string; percent: number }>;
  /** The hottest functions by self time, %. */
  topFunctions: Array<{ name: string; percent: number }>;
}

function groupOf(url: string, functionName: string, root: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native / V8 builtins)';
  if (url.startsWith('wasm://')) return 'WebAssembly (PGlite: PostgreSQL compiled to wasm)';
  if (url.includes('workflow-bundle')) return 'workflow bundle (remit workflows + Temporal SDK, in a workflow thread)';
  const file = url.startsWith('file://') ? url.slice('file://'.length) : url;
  const nm = file.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const parts = file.slice(nm + 'node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  if (file.startsWith('node:')) return 'node (core)';
  if (file.startsWith(root)) return `remit ${path.relative(root, file).split(path.sep)[0]}/`;
  return file;
}

export function summarizeCpuProfile(file: string, root: string, top = 8): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  if (p.samples && p.timeDeltas) {
    // Each sample's time is the delta to the next one.
    for (let i = 0; i < p.samples.length; i++) {
      const dt = p.timeDeltas[i + 1] ?? 0;
      self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + Math.max(0, dt));
    }
  } else {
    const per = (p.endTime - p.startTime) / Math.max(1, p.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0));
    for (const n of p.nodes) self.set(n.id, (n.hitCount ?? 0) * per);
  }
  const packages = new Map<string, number>();
  const functions = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n || n.callFrame.functionName === '(idle)') continue;
    busy += us;
    const g = groupOf(n.callFrame.url, n.callFrame.functionName, root);
    packages.set(g, (packages.get(g) ?? 0) + us);
    const where = n.callFrame.url ? `${path.basename(n.callFrame.url)}:${n.callFrame.lineNumber + 1}` : '';
    const name = `${n.callFrame.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    functions.set(name, (functions.get(name) ?? 0) + us);
  }
  const pct = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, percent: Math.round((us / Math.max(1, busy)) * 1000) / 10 }));
  return { file, busySeconds: Math.round(busy / 1e5) / 10, byPackage: pct(packages), topFunctions: pct(functions) };
}

/**
 * Pid and thread of a --cpu-prof file (CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile):
 * thread 0 is the main thread; others are worker threads (tsx's module loader, the Temporal
 * worker's workflow threads), each with a profile of its own.
 */
export function profileOrigin(file: string): { pid: number; thread: number } | null {
  const m = path.basename(file).match(/^CPU\.\d+\.\d+\.(\d+)\.(\d+)\./);
  return m ? { pid: Number(m[1]), thread: Number(m[2]) } : null;
}
