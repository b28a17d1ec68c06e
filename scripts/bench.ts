// `npm run bench`: the performance benchmarks, on real parts.
//   ingest         tallies a second through the HTTP API into PostgreSQL (bench/ingest.ts)
//   awsBatching    records a second through the batcher to the AWS emulator (bench/marketplaces.ts)
//   azureBatching  the same for Azure over HTTPS with Entra tokens (bench/azure.ts)
//
// PostgreSQL and Temporal: TEST_DATABASE_URL / TEMPORAL_ADDRESS when set, otherwise a throwaway
// server of each is started here and stopped at the end (also on Ctrl-C).
//
//   npm run bench                      everything
//   npm run bench -- ingest aws        only the benchmarks whose name contains a filter
//
// Set-up messages go to stderr; stdout gets a readable table and, as its last line, one line of
// JSON with every figure. Exit code 1 if any benchmark failed (its entry then holds the error).

import os from 'node:os';
import pg from 'pg';
import { benchIngest, type IngestBench } from '../bench/ingest';
import { benchAwsBatching, type AwsBatchingBench } from '../bench/marketplaces';
import { benchAzureBatching, type AzureBatchingBench } from '../bench/azure';
import { startPostgres, type PostgresServer } from './lib/postgres';
import { startTemporalDevServer, type DevServer } from './lib/temporal-cli';

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

interface Summary {
  machine: { cpus: number; cpuModel: string; memoryGb: number; platform: string; node: string; postgres: string | null; loadAverage1m: number };
  ingest?: IngestBench | { error: string };
  awsBatching?: AwsBatchingBench | { error: string };
  azureBatching?: AzureBatchingBench | { error: string };
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
  return out.join('\n');
}

async function main(): Promise<number> {
  const filters = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const want = (name: string) => filters.length === 0 || filters.some((f) => name.toLowerCase().includes(f.toLowerCase()));
  const started = Date.now();
  let postgres: PostgresServer | undefined;
  let temporal: DevServer | undefined;
  let stopping: Promise<void> | undefined;
  const teardown = () =>
    (stopping ??= (async () => {
      const results = await Promise.allSettled([temporal?.stop(), postgres?.stop()]);
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
    summary.durationMs = Date.now() - started;

    await teardown();
    process.stdout.write(`${report(summary)}\n\n`);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    const failed = [summary.ingest, summary.awsBatching, summary.azureBatching].some((v) => v && 'error' in v);
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
