// `npm run bench`: the performance benchmarks, on real parts.
//   ingest         tallies a second through the HTTP API into PostgreSQL (scripts/bench/ingest.ts)
//   awsBatching    records a second through the batcher to the AWS emulator (scripts/bench/marketplaces.ts)
//   azureBatching  the same for Azure over HTTPS with Entra tokens (scripts/bench/azure.ts)
//   burst          the end-to-end burst a user sees on `npm start`'s stack, on its embedded
//                  database and on an external PostgreSQL (DATABASE_URL), against the floor of a fresh in-memory Temporal dev
//                  server (scripts/bench/burst.ts, scripts/bench/floor.ts); takes 15-40 minutes
//
// PostgreSQL and Temporal: TEST_DATABASE_URL / TEMPORAL_ADDRESS when set, otherwise a throwaway
// server of each is started here and stopped at the end (also on Ctrl-C).
//
//   npm run bench                      everything
//   npm run bench -- ingest aws        only the benchmarks whose name contains a filter
//   npm run bench -- burst --burst-n=2000 --burst-hour-seconds=240 --burst-on=embedded,postgres
//                  --floor-n=2000 --profile
//     --burst-n             new key-hours posted (default 5000)
//     --burst-hour-seconds  REMIT_HOUR_SECONDS of the stack (default 240: see docs/performance.md)
//     --burst-on            embedded, postgres or both (default both)
//     --floor-n             minimal workflows for the floor (default: burst-n)
//     --profile             run the stack's Node services under --cpu-prof and summarize them
//
// Set-up messages go to stderr; stdout gets a readable table and, as its last line, one line of
// JSON with every figure. Exit code 1 if any benchmark failed (its entry then holds the error).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { benchIngest, type IngestBench } from './bench/ingest';
import { benchAwsBatching, type AwsBatchingBench } from './bench/marketplaces';
import { benchAzureBatching, type AzureBatchingBench } from './bench/azure';
import { benchBurst, stopBurstStacks, type BurstRun } from './bench/burst';
import { benchFloor, type FloorBench } from './bench/floor';
import { startPostgres, type PostgresServer } from './lib/postgres';
import { startTemporalDevServer, type DevServer } from './lib/temporal-cli';

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

interface Summary {
  machine: { cpus: number; cpuModel: string; memoryGb: number; platform: string; node: string; postgres: string | null; loadAverage1m: number };
  ingest?: IngestBench | { error: string };
  awsBatching?: AwsBatchingBench | { error: string };
  azureBatching?: AzureBatchingBench | { error: string };
  burst?: { floor: FloorBench | { error: string }; runs: Array<BurstRun | { database: string; error: string }> };
  durationMs: number;
}

function table(rows: Array<Array<string | number>>, header: string[]): string {
  const all = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(all[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...all.slice(1).map(line)].join('\n');
}

function report(s: Summary): string {
  const out: string[] = [];
  const m = s.machine;
  out.push(`Machine: ${m.cpus} x ${m.cpuModel}, ${m.memoryGb} GB, ${m.platform}, Node ${m.node}, PostgreSQL ${m.postgres ?? '?'} (load average at start ${m.loadAverage1m})`);
  if (s.ingest && 'error' in s.ingest) out.push(`\ningest: FAILED: ${s.ingest.error}`);
  else if (s.ingest) {
    const i = s.ingest;
    out.push(`\nIngestion: POST /v1/tallies, batches of ${i.batchSize.toLocaleString('en')} tallies, API in process, one SQL statement per batch`);
    out.push(
      table(
        i.runs.map((r) => [`${r.shape} (${r.keysPerBatch.toLocaleString('en')} keys x ${r.hoursPerBatch} h)`, r.concurrency, r.requests, r.talliesPerSecond.toLocaleString('en'), r.latencyMs.p50, r.latencyMs.p95, r.latencyMs.max, r.nodeCpuMsPerRequest, r.postgresCpuMsPerRequest ?? '?']),
        ['batch shape', 'in flight', 'requests', 'tallies/s', 'p50 ms', 'p95 ms', 'max ms', 'CPU ms/req: node', 'PostgreSQL'],
      ),
    );
    out.push(`Memory of the bench process (API and client): peak RSS ${i.memory.rssPeakMb} MB (${i.memory.payloadMb} MB of it request bodies held by the client), peak JS heap ${i.memory.heapUsedPeakMb} MB; rows stored ${i.storedRows.toLocaleString('en')}`);
  }
  const mp: Array<Array<string | number>> = [];
  if (s.awsBatching && !('error' in s.awsBatching)) {
    const a = s.awsBatching;
    mp.push(['AWS (25/call, 10 calls/s)', a.records, a.calls, a.recordsPerCall, a.recordsPerSecond, a.sustainedRecordsPerSecond, a.baselineRecordsPerSecond]);
  }
  if (s.azureBatching && !('error' in s.azureBatching)) {
    const z = s.azureBatching;
    mp.push(['Azure (25/call, HTTPS)', z.records, z.calls, z.recordsPerCall, z.recordsPerSecond, '-', z.baselineRecordsPerSecond]);
  }
  if (mp.length) {
    out.push('\nMarketplace batching (emulators, real clients):');
    out.push(table(mp, ['marketplace', 'records', 'calls', 'records/call', 'records/s', 'sustained/s', 'one per call/s']));
  }
  for (const [name, v] of [['awsBatching', s.awsBatching], ['azureBatching', s.azureBatching]] as const) {
    if (v && 'error' in v) out.push(`${name}: FAILED: ${v.error}`);
  }
  if (s.burst) out.push('', burstReport(s.burst));
  return out.join('\n');
}

function burstReport(b: NonNullable<Summary['burst']>): string {
  const out: string[] = [];
  const floor = 'error' in b.floor ? undefined : b.floor;
  out.push(
    floor
      ? `Floor: a fresh in-memory dev server completes ${floor.workflowsPerSecond} minimal workflows/s (${floor.workflows} started in bulk, ${floor.historyEvents} history events each; CPU: server ${floor.cpuPercent.temporal ?? '?'} %, worker ${floor.cpuPercent.benchProcess} %)`
      : `Floor: FAILED: ${(b.floor as { error: string }).error}`,
  );
  for (const r of b.runs) {
    if ('error' in r) {
      out.push(`\nBurst on ${r.database}: FAILED: ${r.error}`);
      continue;
    }
    const d = r.drain;
    const sec = (ms: number | null) => (ms === null ? '-' : `${Math.round(ms / 100) / 10} s`);
    out.push(`\nBurst on ${r.database}: ${r.keyHours.toLocaleString('en')} new key-hours of one AWS seller, batches of ${r.batchSize}, one hour = ${r.hourSeconds} s (load average ${r.loadAverage.atStart.join(' ')} at start, ${r.loadAverage.atEnd.join(' ')} at end)`);
    out.push(
      table(
        [
          ['all 202s (ingestion)', `${sec(r.ingest.elapsedMs)}  (${r.ingest.talliesPerSecond} tallies/s, batch p50 ${r.ingest.batchLatencyMs.p50} ms, max ${r.ingest.batchLatencyMs.max} ms${r.ingest.postedInsideHour ? '' : ', NOT inside the hour'})`],
          ['window close -> every record at AWS', `${sec(d.lastRecordAfterCloseMs)}  (first after ${sec(d.firstRecordAfterCloseMs)}; ${d.records} records${d.complete ? '' : ', INCOMPLETE'})`],
          ['records/s', `${d.recordsPerSecond ?? '-'}  = ${d.shareOfCeiling === null ? '-' : `${Math.round(d.shareOfCeiling * 1000) / 10} %`} of the ${d.ceilingRecordsPerSecond}/s ceiling, ${d.vsOneRecordPerCall ?? '-'} x one record per call (${d.oneRecordPerCallRecordsPerSecond}/s)`],
          ['records/s / floor', floor && d.recordsPerSecond !== null ? String(Math.round((d.recordsPerSecond / floor.workflowsPerSecond) * 100) / 100) : '-'],
          ['records per call', `${d.recordsPerCall ?? '-'}  (${d.calls} calls, ${d.throttledCalls} throttled)`],
          ['history events per record', `${r.temporal.eventsPerRecord ?? '-'}  (${r.temporal.events} events in ${r.temporal.workflows} workflows: ${Object.entries(r.temporal.byType).map(([t, v]) => `${t} ${v.workflows}${v.running ? ` (${v.running} running)` : ''}`).join(', ')})`],
          ['Temporal SQLite files after', r.temporal.dbFileMb === null ? '-' : `${r.temporal.dbFileMb} MB`],
          ['machine during the drain', r.machineDuringDrain ? `${r.machineDuringDrain.busyPercent} % busy, ${r.machineDuringDrain.iowaitPercent} % I/O wait` : '-'],
        ],
        ['', ''],
      ),
    );
    if (r.temporal.sample) {
      const sm = r.temporal.sample;
      out.push(`One ${sm.workflowType} history (mean of ${sm.workflows}): ${sm.eventsPerWorkflow} events: ${Object.entries(sm.eventTypes).sort((a, b) => b[1] - a[1]).map(([t, n]) => `${n} ${t}`).join(', ')}`);
    }
    out.push(
      table(
        Object.entries(r.processes).map(([name, p]) => [name, p.cpuPercentDuringDrain ?? '-', p.peakMemoryMb ?? '-', p.rootPeakRssMb ?? '-']),
        ['process', 'CPU % of a core (drain)', 'peak memory MB (PSS, tree)', 'peak RSS MB (VmHWM)'],
      ),
    );
    for (const [name, p] of Object.entries(r.profiles ?? {})) {
      out.push(`Profile of ${name} (${p.busySeconds} s busy): ${p.byPackage.map((g) => `${g.name} ${g.percent} %`).join(', ')}`);
      out.push(`  hottest: ${p.topFunctions.slice(0, 5).map((f) => `${f.name} ${f.percent} %`).join('; ')}`);
    }
  }
  return out.join('\n');
}

/** `--name=value` or `--name value`. */
function option(args: string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return undefined;
  const a = args[i]!;
  return a.includes('=') ? a.slice(a.indexOf('=') + 1) : args[i + 1];
}

function positiveInt(args: string[], name: string, fallback: number): number {
  const v = option(args, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const valued = new Set(['burst-n', 'burst-hour-seconds', 'burst-on', 'floor-n'].map((n) => `--${n}`));
  const filters = args.filter((a, i) => !a.startsWith('-') && !valued.has(args[i - 1] ?? ''));
  const want = (name: string) => filters.length === 0 || filters.some((f) => name.toLowerCase().includes(f.toLowerCase()));
  const started = Date.now();
  let postgres: PostgresServer | undefined;
  let burstPostgres: PostgresServer | undefined;
  let burstPostgresDir: string | undefined;
  let temporal: DevServer | undefined;
  let stopping: Promise<void> | undefined;
  const teardown = () =>
    (stopping ??= (async () => {
      // Stacks first: their services use the servers below.
      await stopBurstStacks();
      const results = await Promise.allSettled([temporal?.stop(), postgres?.stop(), burstPostgres?.stop()]);
      if (burstPostgresDir) fs.rmSync(burstPostgresDir, { recursive: true, force: true });
      for (const r of results) if (r.status === 'rejected') log(`tear-down: ${String(r.reason)}`);
    })());
  let interrupted = false;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (interrupted) return;
      interrupted = true;
      log(`${signal}: stopping what the benchmark started ...`);
      void teardown().then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }

  try {
    let databaseUrl = process.env.TEST_DATABASE_URL;
    let temporalAddress = process.env.TEMPORAL_ADDRESS;
    if (want('ingest')) {
      const [p, t] = await Promise.allSettled([
        databaseUrl ? Promise.resolve(undefined) : startPostgres({ log }),
        temporalAddress ? Promise.resolve(undefined) : startTemporalDevServer({ headless: true, log }),
      ]);
      if (p.status === 'fulfilled') postgres = p.value;
      if (t.status === 'fulfilled') temporal = t.value;
      if (p.status === 'rejected') throw p.reason;
      if (t.status === 'rejected') throw t.reason;
      databaseUrl ??= postgres?.url;
      temporalAddress ??= temporal?.address;
      log(`PostgreSQL: ${postgres ? `started for this run (${postgres.url})` : 'TEST_DATABASE_URL'}; Temporal: ${temporal ? `started for this run (${temporal.address})` : `TEMPORAL_ADDRESS (${temporalAddress})`}`);
    }

    let pgVersion: string | null = null;
    if (databaseUrl) {
      const c = new pg.Client({ connectionString: databaseUrl });
      await c.connect();
      pgVersion = (await c.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
      await c.end();
    }
    const cpus = os.cpus();
    const summary: Summary = {
      machine: {
        cpus: cpus.length,
        cpuModel: cpus[0]?.model.trim() ?? 'unknown',
        memoryGb: Math.round(os.totalmem() / 2 ** 30),
        platform: `${os.platform()} ${os.release()}`,
        node: process.version,
        postgres: pgVersion,
        loadAverage1m: Math.round(os.loadavg()[0]! * 100) / 100,
      },
      durationMs: 0,
    };
    const attempt = async <T>(name: string, fn: () => Promise<T>): Promise<T | { error: string }> => {
      log(`${name} ...`);
      try {
        return await fn();
      } catch (err) {
        log(`${name} failed: ${(err as Error).stack ?? String(err)}`);
        return { error: (err as Error).message };
      }
    };
    if (want('ingest')) summary.ingest = await attempt('ingest', () => benchIngest({ databaseUrl, log: (l) => log(l) }));
    if (want('awsBatching')) summary.awsBatching = await attempt('awsBatching', () => benchAwsBatching());
    if (want('azureBatching')) summary.azureBatching = await attempt('azureBatching', () => benchAzureBatching());
    if (want('burst')) {
      // The servers of the benchmarks above would only compete for the machine.
      await Promise.allSettled([temporal?.stop(), postgres?.stop()]);
      const n = positiveInt(args, 'burst-n', 5000);
      const hourSeconds = positiveInt(args, 'burst-hour-seconds', 240);
      const floorN = positiveInt(args, 'floor-n', n);
      const on = (option(args, 'burst-on') ?? 'embedded,postgres').split(',');
      for (const o of on) if (!['embedded', 'postgres'].includes(o)) throw new Error(`--burst-on takes embedded, postgres or both, not ${o}`);
      const profile = args.includes('--profile');
      const floor = await attempt('floor', () => benchFloor({ n: floorN, log }));
      const runs: NonNullable<Summary['burst']>['runs'] = [];
      for (const db of on) {
        const label = db === 'embedded' ? 'the embedded database (PostgreSQL)' : 'PostgreSQL';
        const r = await attempt(`burst on ${label}`, async () => {
          if (db === 'embedded') return benchBurst({ n, hourSeconds, databaseLabel: label, profile, log });
          // A PostgreSQL as a developer runs one: durable settings, its own data directory.
          burstPostgresDir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-bench-pg-'));
          // The server runs as the postgres user when we are root: it must reach its data directory.
          fs.chmodSync(burstPostgresDir, 0o755);
          burstPostgres = await startPostgres({ dataDir: path.join(burstPostgresDir, 'data'), log });
          const c = new pg.Client({ connectionString: burstPostgres.url });
          await c.connect();
          const version = (await c.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
          await c.query('CREATE DATABASE remit');
          await c.end();
          const url = new URL(burstPostgres.url);
          url.pathname = '/remit';
          try {
            return await benchBurst({ n, hourSeconds, databaseUrl: url.toString(), databaseLabel: `PostgreSQL ${version}`, externalDatabasePid: burstPostgres.pid, profile, log });
          } finally {
            await burstPostgres.stop();
            fs.rmSync(burstPostgresDir, { recursive: true, force: true });
            burstPostgres = undefined;
            burstPostgresDir = undefined;
          }
        });
        runs.push('error' in r ? { database: label, error: r.error } : r);
      }
      summary.burst = { floor, runs };
    }
    summary.durationMs = Date.now() - started;

    await teardown();
    process.stdout.write(`${report(summary)}\n\n`);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    const failed = [summary.ingest, summary.awsBatching, summary.azureBatching, summary.burst?.floor, ...(summary.burst?.runs ?? [])].some((v) => v && 'error' in v);
    return interrupted ? 130 : failed ? 1 : 0;
  } catch (err) {
    log(`FAILED: ${(err as Error).stack ?? String(err)}`);
    await teardown();
    return 1;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  },
);
