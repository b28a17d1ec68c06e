// A real, throwaway Prometheus server (Debian's `prometheus` package) for the tests and the local
// stack: found on the machine or installed with apt-get, started on a data directory of its own
// and a free port on 127.0.0.1, stopped by its pid. Also `promtool`, from the same package.
//
// Series get into it the way a real setup feeds one: through the remote-write receiver
// (`--web.enable-remote-write-receiver`), with an out-of-order window so that tests may write
// hours in any order (a real Prometheus scraping live targets never needs that).

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, isExecutable, type Log, OutputTail, run, runChecked, stderrLog, stopChild, which } from './proc';

export interface PrometheusBinaries {
  prometheus: string;
  promtool: string;
  /** e.g. "prometheus, version 2.42.0+ds". */
  version: string;
  source: string;
}

async function findBinaries(): Promise<PrometheusBinaries | null> {
  for (const dir of ['/usr/bin', ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean)]) {
    const prometheus = path.join(dir, 'prometheus');
    const promtool = path.join(dir, 'promtool');
    if (!isExecutable(prometheus) || !isExecutable(promtool)) continue;
    const r = await run(prometheus, ['--version'], { timeoutMs: 30_000 });
    if (r.code !== 0) continue;
    return { prometheus, promtool, version: `${r.stdout}${r.stderr}`.split('\n')[0]!.trim(), source: dir };
  }
  return null;
}

let ensured: Promise<PrometheusBinaries> | undefined;

/**
 * prometheus and promtool from PATH. When they are missing and we are root (CI, fresh machines),
 * installs Debian's `prometheus` package (server and promtool), as scripts/lib/postgres.ts does
 * for PostgreSQL. Its service is not started: there is no init system here, and we run our own.
 */
export function ensurePrometheusBinaries(log: Log = stderrLog): Promise<PrometheusBinaries> {
  ensured ??= (async () => {
    const found = await findBinaries();
    if (found) return found;
    if (process.getuid?.() !== 0) {
      throw new Error('prometheus and promtool were not found on PATH, and installing them needs root. Install them (e.g. `sudo apt-get install -y prometheus`) and run again.');
    }
    const apt = which('apt-get');
    if (!apt) throw new Error('prometheus and promtool were not found and there is no apt-get to install them: install Prometheus and run again.');
    log('Prometheus: not found; installing Debian\'s prometheus package with apt-get (apt-get update && apt-get install -y prometheus) ...');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const lock = ['-o', 'DPkg::Lock::Timeout=300'];
    const started = Date.now();
    await runChecked(apt, [...lock, 'update'], { env, timeoutMs: 10 * 60_000 });
    await runChecked(apt, [...lock, 'install', '-y', '--no-install-recommends', 'prometheus'], { env, timeoutMs: 20 * 60_000 });
    const installed = await findBinaries();
    if (!installed) throw new Error('apt-get install prometheus succeeded, but prometheus/promtool are still not on PATH.');
    log(`Prometheus: installed ${installed.version} in ${Math.round((Date.now() - started) / 1000)} s`);
    return { ...installed, source: 'installed with apt-get' };
  })();
  ensured.catch(() => (ensured = undefined));
  return ensured;
}

export interface ScrapeTarget {
  job: string;
  /** host:port */
  targets: string[];
  metricsPath?: string;
}

export interface StartPrometheusOptions {
  /** Keep the TSDB here (created if missing); default: a temporary directory removed by stop(). */
  dataDir?: string;
  port?: number;
  scrape?: ScrapeTarget[];
  /** Rule files to load (absolute paths). */
  ruleFiles?: string[];
  /** Scrape and rule evaluation interval; default 15s. */
  interval?: string;
  /** Accept remote-write (POST /api/v1/write); default true. */
  remoteWrite?: boolean;
  /** Log every query the engine ran (global.query_log_file), read back with queries(). */
  queryLog?: boolean;
  log?: Log;
}

export interface PrometheusServer {
  url: string;
  port: number;
  pid: number;
  dataDir: string;
  configFile: string;
  /** Stop this server (SIGTERM, then SIGKILL); removes a temporary data directory. Idempotent. */
  stop(): Promise<void>;
  /** Stop the process, keeping its data (the server is down: connections are refused). */
  down(): Promise<void>;
  /** Start it again on the same data directory and port. */
  up(): Promise<void>;
  /** Freeze the process (SIGSTOP): it accepts connections and answers nothing: a slow server. */
  pause(): void;
  resume(): void;
  /** Append samples through the remote-write receiver. */
  write(series: WriteSeries[]): Promise<void>;
  /** Delete series (optionally only samples from startMs to endMs) through the admin API: what an operator does to drop bad data. */
  deleteSeries(match: string, range?: { startMs: number; endMs: number }): Promise<void>;
  /** Queries the engine ran (queryLog: true): the PromQL and the evaluation time, epoch ms. */
  queries(): Array<{ query: string; timeMs: number }>;
}

export interface WriteSeries {
  /** Labels, __name__ included. */
  labels: Record<string, string>;
  /** [epoch ms, value] pairs, oldest first. */
  samples: Array<[number, number]>;
}

function yamlString(s: string): string {
  return JSON.stringify(s);
}

function configText(o: StartPrometheusOptions, base: string): string {
  const interval = o.interval ?? '15s';
  const lines = [
    '# written by scripts/lib/prometheus.ts',
    'global:',
    `  scrape_interval: ${interval}`,
    `  evaluation_interval: ${interval}`,
    ...(o.queryLog ? [`  query_log_file: ${yamlString(path.join(base, 'queries.log'))}`] : []),
    // Tests and backfills write hours in any order; a scraping server never needs this.
    'storage:',
    '  tsdb:',
    '    out_of_order_time_window: 3650d',
  ];
  if (o.ruleFiles?.length) lines.push('rule_files:', ...o.ruleFiles.map((f) => `  - ${yamlString(f)}`));
  if (o.scrape?.length) {
    lines.push('scrape_configs:');
    for (const s of o.scrape) {
      lines.push(`  - job_name: ${yamlString(s.job)}`, `    metrics_path: ${yamlString(s.metricsPath ?? '/metrics')}`, '    static_configs:', `      - targets: [${s.targets.map(yamlString).join(', ')}]`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Writes `<base>/prometheus.yml` and returns the command line of a server on 127.0.0.1:port with
 * its TSDB in `<base>/data`: for a supervisor that runs it (the local stack), or startPrometheus.
 */
export function preparePrometheus(base: string, port: number, o: StartPrometheusOptions): { args: string[]; configFile: string; dataDir: string } {
  const dataDir = path.join(base, 'data');
  fs.mkdirSync(dataDir, { recursive: true });
  const configFile = path.join(base, 'prometheus.yml');
  fs.writeFileSync(configFile, configText(o, base));
  const args = [
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${dataDir}`,
    // Tests write hours of months ago; keep them.
    '--storage.tsdb.retention.time=100y',
    `--web.listen-address=127.0.0.1:${port}`,
    '--web.enable-lifecycle',
    '--web.enable-admin-api',
    ...(o.remoteWrite === false ? [] : ['--web.enable-remote-write-receiver']),
    '--log.level=warn',
  ];
  return { args, configFile, dataDir };
}

export async function startPrometheus(o: StartPrometheusOptions = {}): Promise<PrometheusServer> {
  const log = o.log ?? stderrLog;
  const bins = await ensurePrometheusBinaries(log);
  const temporary = !o.dataDir;
  const base = o.dataDir ? path.resolve(o.dataDir) : fs.mkdtempSync(path.join(os.tmpdir(), 'remit-prom-'));
  let port = o.port ?? (await freePort());
  let prepared = preparePrometheus(base, port, o);
  const { dataDir, configFile } = prepared;
  let child: ChildProcess | undefined;
  let tail = new OutputTail();

  const launch = async () => {
    tail = new OutputTail();
    const c = spawn(bins.prometheus, prepared.args, { cwd: base, stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout?.on('data', (d: Buffer) => tail.push(d));
    c.stderr?.on('data', (d: Buffer) => tail.push(d));
    child = c;
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`Prometheus exited (${c.exitCode ?? c.signalCode}) on 127.0.0.1:${port}:\n${tail.toString()}`);
      try {
        const r = await fetch(`http://127.0.0.1:${port}/-/ready`, { signal: AbortSignal.timeout(2000) });
        if (r.ok) return;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) {
        await stopChild(c);
        throw new Error(`Prometheus on 127.0.0.1:${port} was not ready within 60 s:\n${tail.toString()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  for (let attempt = 1; ; attempt++) {
    try {
      await launch();
      break;
    } catch (err) {
      if (o.port || attempt >= 3 || !/address already in use/i.test((err as Error).message)) {
        if (temporary) fs.rmSync(base, { recursive: true, force: true });
        throw err;
      }
      port = await freePort();
      prepared = preparePrometheus(base, port, o);
    }
  }
  const url = `http://127.0.0.1:${port}`;
  log(`Prometheus: ${url} (pid ${child!.pid}, ${bins.version}, data in ${dataDir})`);

  let stopped: Promise<void> | undefined;
  const server: PrometheusServer = {
    url,
    port,
    get pid() {
      return child!.pid!;
    },
    dataDir,
    configFile,
    stop: () =>
      (stopped ??= (async () => {
        if (child) {
          try {
            process.kill(child.pid!, 'SIGCONT');
          } catch {
            /* gone */
          }
          await stopChild(child);
        }
        if (temporary) fs.rmSync(base, { recursive: true, force: true });
      })()),
    async down() {
      if (child) {
        try {
          process.kill(child.pid!, 'SIGCONT');
        } catch {
          /* gone */
        }
        await stopChild(child);
      }
    },
    async up() {
      if (child && child.exitCode === null && child.signalCode === null) return;
      await launch();
    },
    pause: () => process.kill(child!.pid!, 'SIGSTOP'),
    resume: () => process.kill(child!.pid!, 'SIGCONT'),
    async write(series) {
      const body = snappyLiteral(encodeWriteRequest(series));
      const r = await fetch(`${url}/api/v1/write`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy', 'x-prometheus-remote-write-version': '0.1.0' },
        body,
      });
      if (r.status >= 300) throw new Error(`remote write to ${url} answered ${r.status}: ${await r.text()}`);
    },
    async deleteSeries(match, range) {
      const q = new URLSearchParams({ 'match[]': match, ...(range ? { start: String(range.startMs / 1000), end: String(range.endMs / 1000) } : {}) });
      const r = await fetch(`${url}/api/v1/admin/tsdb/delete_series?${q.toString()}`, { method: 'POST' });
      if (r.status >= 300) throw new Error(`delete_series ${match} answered ${r.status}: ${await r.text()}`);
    },
    queries() {
      const file = path.join(base, 'queries.log');
      if (!fs.existsSync(file)) return [];
      return fs
        .readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as { params: { query: string; end: string } })
        .map((e) => ({ query: e.params.query, timeMs: Date.parse(e.params.end) }));
    },
  };
  return server;
}

// --- remote write: prometheus.WriteRequest in protobuf, snappy-framed -------------------------
// Hand-encoded (a few fields) rather than a protobuf and a snappy dependency for a test helper.

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n; // int64 two's complement
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number((v & 0x7fn) | 0x80n));
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

function field(num: number, bytes: Buffer): Buffer {
  return Buffer.concat([Buffer.from([...varint((num << 3) | 2), ...varint(bytes.length)]), bytes]);
}

function encodeWriteRequest(series: WriteSeries[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of series) {
    const ts: Buffer[] = [];
    // Labels sorted by name, as the receiver requires.
    for (const [name, value] of Object.entries(s.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      ts.push(field(1, Buffer.concat([field(1, Buffer.from(name)), field(2, Buffer.from(value))])));
    }
    for (const [ms, value] of s.samples) {
      const d = Buffer.alloc(8);
      d.writeDoubleLE(value);
      ts.push(field(2, Buffer.concat([Buffer.from([0x09]), d, Buffer.from([0x10, ...varint(ms)])])));
    }
    parts.push(field(1, Buffer.concat(ts)));
  }
  return Buffer.concat(parts);
}

/** Snappy block format with literals only: valid, uncompressed. */
function snappyLiteral(data: Buffer): Buffer {
  const out: Buffer[] = [Buffer.from(varint(data.length))];
  for (let i = 0; i < data.length; i += 65_536) {
    const chunk = data.subarray(i, i + 65_536);
    const n = chunk.length - 1;
    out.push(Buffer.from([61 << 2, n & 0xff, (n >> 8) & 0xff]), chunk);
  }
  return Buffer.concat(out);
}

/** `promtool <args>`; resolves with its output, throws with it on a non-zero exit. */
export async function promtool(args: string[], opts: { cwd?: string; log?: Log } = {}): Promise<string> {
  const bins = await ensurePrometheusBinaries(opts.log);
  const r = await run(bins.promtool, args, { cwd: opts.cwd, timeoutMs: 120_000 });
  const out = `${r.stdout}${r.stderr}`;
  if (r.code !== 0) throw new Error(`promtool ${args.join(' ')} failed (exit ${r.code}):\n${out}`);
  return out;
}
