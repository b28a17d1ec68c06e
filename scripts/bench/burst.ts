// The end-to-end burst a user sees: `npm start`'s local stack (scripts/stack.ts, started the way
// npm start does, in a throwaway state directory), one usage source posting one hour of usage for
// N new key-hours of one AWS seller account and region (N distinct customers, one tally each, in
// batches of 1,000) through POST /v1/tallies, then waiting until the AWS emulator holds every
// record. Method and figures: docs/performance.md ("End-to-end burst").
//
// Nothing here knows remit's workflow types or ids: history events are counted over every
// workflow the stack ran since the burst began (visibility's HistoryLength), grouped by type, so
// the figure holds whatever the unit of work is and whoever starts it.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { temporal as proto } from '@temporalio/proto';
import { loadConfig } from '../../config/env';
import { hourStart } from '../../domain/time';
import { REPO_ROOT, stopChild } from '../lib/proc';
import { ProcessSampler, machineCpu, type ProcessCost } from './procs';
import { profileOrigin, summarizeCpuProfile, type ProfileSummary } from './profile';

/** What AWS allows per seller account and region: 10 BatchMeterUsage calls a second x 25 records. */
export const AWS_CALLS_PER_SECOND = 10;
export const AWS_RECORDS_PER_CALL = 25;
export const AWS_CEILING_RECORDS_PER_SECOND = AWS_CALLS_PER_SECOND * AWS_RECORDS_PER_CALL;

export interface BurstOptions {
  /** New key-hours to post (one tally each). */
  n: number;
  /** REMIT_HOUR_SECONDS of the stack. */
  hourSeconds: number;
  /** Tallies per POST. */
  batchSize?: number;
  /** Unset: the stack's embedded database. Set: DATABASE_URL of the stack. */
  databaseUrl?: string;
  /** Label for the database, e.g. "embedded (PGlite)". */
  databaseLabel: string;
  /** Pid of a database server the stack does not run itself (counted with the stack's processes). */
  externalDatabasePid?: number;
  /** Run the stack's Node services under --cpu-prof and summarize where each spent its CPU. */
  profile?: boolean;
  /** Workflow histories fetched whole for the event-type breakdown. */
  historySample?: number;
  /** Give up waiting for the records after this long past the window close; default 20 min. */
  drainTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface BurstRun {
  database: string;
  keyHours: number;
  batchSize: number;
  hourSeconds: number;
  /** The remittance hour posted, and when its window closed (end of hour plus grace). */
  hour: string;
  windowCloseAt: string;
  ingest: {
    /** First POST sent to last 202 received, ms. */
    elapsedMs: number;
    talliesPerSecond: number;
    batchLatencyMs: { p50: number; max: number };
    /** Every 202 came before the hour ended, so the drain below measures sending alone. */
    postedInsideHour: boolean;
  };
  drain: {
    /** Records of the hour the AWS emulator holds at the end (should be keyHours). */
    records: number;
    complete: boolean;
    /** Window close to the emulator's acceptance of the first / last record, ms. */
    firstRecordAfterCloseMs: number | null;
    lastRecordAfterCloseMs: number | null;
    /** records / (window close to last record). */
    recordsPerSecond: number | null;
    ceilingRecordsPerSecond: number;
    shareOfCeiling: number | null;
    /** One record per BatchMeterUsage call: the rate limit alone (no batch-size switch in the stack). */
    oneRecordPerCallRecordsPerSecond: number;
    vsOneRecordPerCall: number | null;
    /** BatchMeterUsage calls that carried the burst, and their mean size. */
    calls: number;
    throttledCalls: number;
    recordsPerCall: number | null;
  };
  temporal: {
    /** Workflows the stack ran since the burst began, all types. */
    workflows: number;
    /** Their history events: per type, workflows x the mean of a sample of whole histories. */
    events: number;
    eventsPerRecord: number | null;
    /** Per type; `running` as visibility saw it when listed (it lags behind right after a burst). */
    byType: Record<string, { workflows: number; events: number; running: number }>;
    /** Event types in a sample of histories of the commonest type, mean per workflow. */
    sample: { workflowType: string; workflows: number; eventsPerWorkflow: number; eventTypes: Record<string, number> } | null;
    /** Size of the dev server's SQLite files after the burst, MB. */
    dbFileMb: number | null;
  };
  /** Per process: CPU during the drain (% of one core) and peak memory. */
  processes: Record<string, { cpuPercentDuringDrain: number | null } & ProcessCost>;
  /** Machine-wide, during the drain: % of all cores busy and % waiting on I/O. */
  machineDuringDrain: { busyPercent: number; iowaitPercent: number } | null;
  loadAverage: { atStart: number[]; atEnd: number[] };
  profiles?: Record<string, ProfileSummary>;
}

const round = (v: number, digits = 1): number => Math.round(v * 10 ** digits) / 10 ** digits;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const loads = () => os.loadavg().map((l) => round(l, 2));

interface StackState {
  api: string;
  pids: Record<string, number | undefined>;
  tokens: { ingest: string; operator: string };
  emulators: { aws?: { admin: string } };
  temporal: { address: string; namespace: string };
}

/** Environment the bench's stack must not inherit: it would point the stack at someone else's parts. */
const INHERITED = ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'AWS_METERING_ENDPOINT', 'AZURE_METERING_ENDPOINT', 'REMIT_PROMETHEUS_URL', 'REMIT_INGEST_TOKEN', 'REMIT_OPERATOR_TOKEN', 'REMIT_API_PORT', 'REMIT_PROFILE_DIR'];

/** Stacks running now, so that an interrupted bench (Ctrl-C, SIGTERM) stops them too. */
const running = new Set<LocalStack>();

/** Stops every stack a burst is running and removes its state; for the bench's signal handler. */
export async function stopBurstStacks(): Promise<void> {
  await Promise.allSettled(
    [...running].map(async (s) => {
      await s.stop();
      fs.rmSync(s.stateDir, { recursive: true, force: true });
    }),
  );
}

class LocalStack {
  private output = '';
  readonly child: ChildProcess;
  readonly pidsSeen = new Map<number, string>();

  constructor(
    readonly stateDir: string,
    env: NodeJS.ProcessEnv,
  ) {
    // Exactly what `npm start` runs.
    this.child = spawn(process.execPath, [path.join(REPO_ROOT, 'scripts', 'bootstrap.mjs'), 'stack'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d) => (this.output = (this.output + String(d)).slice(-20_000)));
    this.child.stderr!.on('data', (d) => (this.output = (this.output + String(d)).slice(-20_000)));
    running.add(this);
    this.child.once('exit', () => running.delete(this));
  }

  async ready(timeoutMs = 180_000): Promise<StackState> {
    const deadline = Date.now() + timeoutMs;
    while (!this.output.includes('remit is running')) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`the local stack exited during start-up:\n${this.output.slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`the local stack was not running after ${timeoutMs} ms:\n${this.output.slice(-3000)}`);
      await sleep(250);
    }
    return this.state();
  }

  state(): StackState {
    const s = JSON.parse(fs.readFileSync(path.join(this.stateDir, 'local-stack.json'), 'utf8')) as StackState;
    for (const [name, pid] of Object.entries(s.pids)) if (pid) this.pidsSeen.set(pid, name);
    return s;
  }

  /** Ctrl-C, as a user stops it: the stack stops its parts itself. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGINT');
    const t = setTimeout(() => void stopChild(this.child, 5_000), 60_000);
    await exited;
    clearTimeout(t);
  }
}

function body(hourIso: string, from: number, to: number): string {
  const tallies = [];
  for (let i = from; i < to; i++) {
    tallies.push({
      orgId: `burst-org-${i}`,
      productTag: 'rhel-for-x86-els-payg-addon',
      metric: 'vCPUs',
      sla: 'Premium',
      usage: 'Production',
      billingProvider: 'aws',
      // Distinct customers (AWS account ids) of the one seller account and region the stack bills as.
      billingAccountId: String(700_000_000_000 + i),
      hour: hourIso,
      value: 1 + (i % 16),
    });
  }
  return JSON.stringify({ tallies });
}

async function getJson<T>(url: string, token?: string): Promise<T> {
  const r = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(30_000) });
  if (!r.ok) throw new Error(`GET ${url} answered ${r.status}`);
  return (await r.json()) as T;
}

interface EmulatorRecord {
  hour: string;
  customer: string;
  acceptedAt: string;
}

interface EmulatorCall {
  at: number;
  recordCount: number;
  outcome: string;
  succeeded: number;
}

function dbFileMb(stateDir: string): number | null {
  const files = ['temporal.db', 'temporal.db-wal', 'temporal.db-shm'].map((f) => path.join(stateDir, f)).filter((f) => fs.existsSync(f));
  return files.length ? round(files.reduce((s, f) => s + fs.statSync(f).size, 0) / 2 ** 20) : null;
}

/**
 * History events per record, whatever the design: every workflow the stack started since the
 * burst began is listed through visibility (all types, so a schedule's or a sweep's workflows
 * count too), and a sample of each type's histories is fetched whole once it has closed.
 * Visibility's own HistoryLength is not used: right after a burst it lags far behind.
 */
async function countHistories(stack: StackState, sinceMs: number, records: number, sampleSize: number, log: (l: string) => void): Promise<BurstRun['temporal']> {
  const connection = await Connection.connect({ address: stack.temporal.address });
  try {
    const client = new Client({ connection, namespace: stack.temporal.namespace });
    const byType: BurstRun['temporal']['byType'] = {};
    const ids = new Map<string, string[]>();
    let workflows = 0;
    for await (const w of client.workflow.list({ query: `StartTime >= "${new Date(sinceMs).toISOString()}"` })) {
      const t = (byType[w.type] ??= { workflows: 0, events: 0, running: 0 });
      t.workflows += 1;
      if (w.status.name === 'RUNNING') t.running += 1;
      workflows += 1;
      const list = ids.get(w.type) ?? [];
      // Spread the sample over the burst rather than its first workflows.
      if (list.length < sampleSize) list.push(w.workflowId);
      else if (Math.random() < sampleSize / t.workflows) list[Math.floor(Math.random() * sampleSize)] = w.workflowId;
      ids.set(w.type, list);
    }
    const names = proto.api.enums.v1.EventType as unknown as Record<number, string>;
    const commonest = Object.entries(byType).sort((a, b) => b[1].workflows - a[1].workflows)[0]?.[0];
    let sample: BurstRun['temporal']['sample'] = null;
    let events = 0;
    const deadline = Date.now() + 180_000;
    for (const [type, sampled] of ids) {
      const eventTypes: Record<string, number> = {};
      let total = 0;
      for (const id of sampled) {
        const handle = client.workflow.getHandle(id);
        // The commonest type's sample must be whole: wait (bounded) for each to close.
        while (type === commonest && Date.now() < deadline && (await handle.describe()).status.name === 'RUNNING') await sleep(1000);
        for (const e of (await handle.fetchHistory()).events ?? []) {
          const name = (names[Number(e.eventType ?? 0)] ?? String(e.eventType)).replace(/^EVENT_TYPE_/, '');
          eventTypes[name] = (eventTypes[name] ?? 0) + 1;
          total += 1;
        }
      }
      const mean = total / Math.max(1, sampled.length);
      byType[type]!.events = Math.round(mean * byType[type]!.workflows);
      events += byType[type]!.events;
      if (type === commonest) {
        for (const k of Object.keys(eventTypes)) eventTypes[k] = round(eventTypes[k]! / Math.max(1, sampled.length), 2);
        sample = { workflowType: type, workflows: sampled.length, eventsPerWorkflow: round(mean, 1), eventTypes };
      }
    }
    log(`Temporal: ${workflows} workflows since the burst began, about ${events} history events (${Object.entries(byType).map(([t, v]) => `${t} ${v.workflows}`).join(', ')})`);
    return { workflows, events, eventsPerRecord: records ? round(events / records, 1) : null, byType, sample, dbFileMb: null };
  } finally {
    await connection.close();
  }
}

export async function benchBurst(o: BurstOptions): Promise<BurstRun> {
  const log = o.log ?? (() => undefined);
  const batchSize = o.batchSize ?? 1000;
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-bench-stack-'));
  // Kept after the run (git-ignored .tmp/), to open in Chrome DevTools or speedscope.
  const profileDir = o.profile ? path.join(REPO_ROOT, '.tmp', 'bench-profiles', `${new Date().toISOString().replace(/[:.]/g, '-')}-${o.databaseLabel.split(' ')[0]}`) : undefined;
  const env: NodeJS.ProcessEnv = { ...process.env, REMIT_STATE_DIR: stateDir, REMIT_HOUR_SECONDS: String(o.hourSeconds), REMIT_API_PORT: '0' };
  for (const v of INHERITED) delete env[v];
  if (o.databaseUrl) env.DATABASE_URL = o.databaseUrl;
  if (profileDir) env.REMIT_PROFILE_DIR = profileDir;
  const time = loadConfig(env).time;
  const hourMs = time.hourMs;
  const loadAtStart = loads();

  log(`burst on ${o.databaseLabel}: starting the local stack (REMIT_HOUR_SECONDS=${o.hourSeconds}, state in ${stateDir}) ...`);
  const stack = new LocalStack(stateDir, env);
  let sampler: ProcessSampler | undefined;
  try {
    const s = await stack.ready();
    const pids = () => ({ ...stack.state().pids, ...(o.externalDatabasePid ? { database: o.externalDatabasePid } : {}) });
    sampler = new ProcessSampler(pids);
    const awsAdmin = s.emulators.aws?.admin;
    if (!awsAdmin) throw new Error('the local stack runs no AWS emulator (is AWS_METERING_ENDPOINT set?)');
    // The stack prefers fixed ports (8080, 4566, ...) when they look free; on a machine shared with
    // other stacks another one can take the port between the check and the bind, and then answer
    // for ours. Our operator token proves the API is ours.
    const whoami = await fetch(`${s.api}/v1/remittances?limit=1`, { headers: { authorization: `Bearer ${s.tokens.operator}` } }).catch((err: Error) => err);
    if (whoami instanceof Error || whoami.status !== 200) throw new Error(`the API at ${s.api} is not this stack's (it refused the stack's operator token: ${whoami instanceof Error ? whoami.message : whoami.status}); another stack took its port: run again`);

    // Post at the start of a fresh hour, so the whole burst lands inside it and the drain after
    // its window closes measures sending alone.
    const hour = hourStart(Date.now(), hourMs) + hourMs;
    log(`burst: waiting ${round((hour - Date.now()) / 1000)} s for the next hour (${new Date(hour).toISOString()}) to begin ...`);
    const bodies: Buffer[] = [];
    for (let i = 0; i < o.n; i += batchSize) bodies.push(Buffer.from(body(new Date(hour).toISOString(), i, Math.min(o.n, i + batchSize))));
    await sleep(Math.max(0, hour - Date.now() + 250));

    const burstBeganMs = Date.now();
    const latencies: number[] = [];
    const t0 = performance.now();
    for (const [i, b] of bodies.entries()) {
      const t = performance.now();
      const r = await fetch(`${s.api}/v1/tallies`, { method: 'POST', headers: { authorization: `Bearer ${s.tokens.ingest}`, 'content-type': 'application/json' }, body: b, signal: AbortSignal.timeout(600_000) });
      const text = await r.text();
      latencies.push(performance.now() - t);
      if (r.status !== 202) throw new Error(`POST /v1/tallies (batch ${i + 1}) answered ${r.status}: ${text.slice(0, 300)}`);
    }
    const ingestMs = performance.now() - t0;
    const postedInsideHour = Date.now() < hour + hourMs;
    const sorted = [...latencies].sort((a, b) => a - b);
    log(`burst: ${o.n} tallies in ${bodies.length} batches posted in ${round(ingestMs)} ms (${round((o.n / ingestMs) * 1000)} tallies/s)${postedInsideHour ? '' : ' -- NOT inside the hour: raise --burst-hour-seconds'}`);

    const windowClose = hour + hourMs * (1 + time.graceHours);
    log(`burst: the window closes at ${new Date(windowClose).toISOString()} (in ${round((windowClose - Date.now()) / 1000)} s); then waiting for ${o.n} records at the AWS emulator ...`);
    await sleep(Math.max(0, windowClose - Date.now()));
    const cpu0 = sampler.cpu();
    const m0 = machineCpu();
    const drainStarted = performance.now();

    const hourIso = new Date(hour).toISOString();
    const deadline = Date.now() + (o.drainTimeoutMs ?? 20 * 60_000);
    let ours: EmulatorRecord[] = [];
    let lastLog = Date.now();
    for (;;) {
      const { records } = await getJson<{ records: EmulatorRecord[] }>(`${awsAdmin}/records`);
      ours = records.filter((r) => r.hour === hourIso);
      if (ours.length >= o.n || Date.now() > deadline) break;
      if (Date.now() - lastLog > 30_000) {
        lastLog = Date.now();
        log(`burst: ${ours.length} of ${o.n} records after ${round((Date.now() - windowClose) / 1000)} s`);
      }
      await sleep(1000);
    }
    const drainWallS = (performance.now() - drainStarted) / 1000;
    const cpu1 = sampler.cpu();
    const m1 = machineCpu();
    const accepted = ours.map((r) => Date.parse(r.acceptedAt)).sort((a, b) => a - b);
    const last = accepted.length ? accepted[accepted.length - 1]! - windowClose : null;
    const first = accepted.length ? accepted[0]! - windowClose : null;
    const rate = last && last > 0 ? round((ours.length / last) * 1000) : null;
    const { calls } = await getJson<{ calls: EmulatorCall[] }>(`${awsAdmin}/calls`);
    const burstCalls = calls.filter((c) => c.at >= burstBeganMs && c.recordCount > 0);
    const okCalls = burstCalls.filter((c) => c.outcome === 'ok');
    const sent = okCalls.reduce((sum, c) => sum + c.succeeded, 0);
    log(`burst: ${ours.length} records; last ${last === null ? '-' : round(last / 1000)} s after the window closed (${rate ?? '-'} records/s), ${okCalls.length} calls`);

    const temporal = await countHistories(s, burstBeganMs - 1000, ours.length, o.historySample ?? 20, log);
    temporal.dbFileMb = dbFileMb(stateDir);
    const processes: BurstRun['processes'] = {};
    const peaks = sampler.stop();
    sampler = undefined;
    for (const name of new Set([...Object.keys(peaks), ...Object.keys(cpu1)])) {
      const a = cpu0[name];
      const b = cpu1[name];
      processes[name] = { cpuPercentDuringDrain: a != null && b != null ? round(((b - a) / drainWallS) * 100) : null, ...(peaks[name] ?? { peakMemoryMb: null, rootPeakRssMb: null }) };
    }
    const machine =
      m0 && m1 && m1.total > m0.total
        ? { busyPercent: round((1 - (m1.idle - m0.idle + m1.iowait - m0.iowait) / (m1.total - m0.total)) * 100), iowaitPercent: round(((m1.iowait - m0.iowait) / (m1.total - m0.total)) * 100) }
        : null;

    const run: BurstRun = {
      database: o.databaseLabel,
      keyHours: o.n,
      batchSize,
      hourSeconds: o.hourSeconds,
      hour: hourIso,
      windowCloseAt: new Date(windowClose).toISOString(),
      ingest: { elapsedMs: round(ingestMs), talliesPerSecond: round((o.n / ingestMs) * 1000), batchLatencyMs: { p50: round(sorted[Math.floor(sorted.length / 2)] ?? 0), max: round(sorted[sorted.length - 1] ?? 0) }, postedInsideHour },
      drain: {
        records: ours.length,
        complete: ours.length >= o.n,
        firstRecordAfterCloseMs: first,
        lastRecordAfterCloseMs: last,
        recordsPerSecond: rate,
        ceilingRecordsPerSecond: AWS_CEILING_RECORDS_PER_SECOND,
        shareOfCeiling: rate === null ? null : round(rate / AWS_CEILING_RECORDS_PER_SECOND, 3),
        oneRecordPerCallRecordsPerSecond: AWS_CALLS_PER_SECOND,
        vsOneRecordPerCall: rate === null ? null : round(rate / AWS_CALLS_PER_SECOND, 2),
        calls: okCalls.length,
        throttledCalls: burstCalls.filter((c) => c.outcome === 'ThrottlingException').length,
        recordsPerCall: okCalls.length ? round(sent / okCalls.length) : null,
      },
      temporal,
      processes,
      machineDuringDrain: machine,
      loadAverage: { atStart: loadAtStart, atEnd: loads() },
    };
    await stack.stop();
    if (profileDir) run.profiles = profiles(profileDir, stack.pidsSeen);
    return run;
  } finally {
    sampler?.stop();
    await stack.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

/** One summary per profiled service and thread that worked at least half a second (profiles are written when each process exits). */
function profiles(dir: string, pidsSeen: Map<number, string>): Record<string, ProfileSummary> {
  const out: Record<string, ProfileSummary> = {};
  if (!fs.existsSync(dir)) return out;
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
    const origin = profileOrigin(f);
    const service = (origin && pidsSeen.get(origin.pid)) || `pid ${origin?.pid ?? '?'}`;
    const name = origin?.thread ? `${service} (thread ${origin.thread})` : service;
    try {
      const summary = summarizeCpuProfile(path.join(dir, f), REPO_ROOT);
      if (summary.busySeconds >= 0.5) out[name] = summary;
    } catch (err) {
      out[name] = { file: f, busySeconds: 0, byPackage: [{ name: `unreadable: ${(err as Error).message}`, percent: 0 }], topFunctions: [] };
    }
  }
  return out;
}
