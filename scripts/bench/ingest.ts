// Ingestion benchmark: tallies a second through the real HTTP API (Fastify, validation, one SQL
// statement per batch) into a real PostgreSQL, in batches of 10,000. Running this file alone
// prints one JSON line. Method and figures: docs/performance.md.
//
// Two things are measured apart, because they scale with different numbers:
// - the ingest path (HTTP, JSON, validation, one INSERT ... ON CONFLICT for the batch) scales
//   with tallies. Measured in two batch shapes, "hourly" (10,000 keys x 1 hour: what a usage
//   source sends every hour) and "backfill" (1,000 keys x 10 hours), with 1, 2 and 4 requests in
//   flight, each in-flight client with its own keys as separate usage-source shards would be.
//   Ingestion starts no workflow (the sweep that closes the hour does), so this is the whole
//   path a usage source waits for; the end-to-end burst (scripts/bench/burst.ts) measures the rest.
// Request bodies are serialized before the clock starts, so the client's JSON work is not
// counted; the API runs in this process on loopback, as in the test harness.

import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { Client } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { buildApi } from '../../api/app';
import { openDatabase, type Database } from '../../db/client';
import { migrate } from '../../db/migrate';
import { loadCatalog } from '../../config/catalog';
import type { RemittanceKey } from '../../domain/key';
import { PRODUCTION_HOUR_MS, hourStart } from '../../domain/time';
import type { TimeSettings } from '../../config/env';
import { createLogger } from '../../lib/log';

export interface LatencyStats {
  p50: number;
  p95: number;
  max: number;
}

export interface IngestRun {
  shape: 'hourly' | 'backfill';
  keysPerBatch: number;
  hoursPerBatch: number;
  /** Requests in flight at once. */
  concurrency: number;
  requests: number;
  /** CPU time of this process (API, and the client's small share) per request, ms: independent of other load on the machine. */
  nodeCpuMsPerRequest: number;
  /** CPU time of the PostgreSQL backends serving the API per request, ms (null when PostgreSQL is not on this machine). */
  postgresCpuMsPerRequest: number | null;
  tallies: number;
  elapsedMs: number;
  talliesPerSecond: number;
  latencyMs: LatencyStats;
}

export interface IngestBench {
  batchSize: number;
  /** Best steady throughput of the hourly shape (the production pattern), tallies/s. */
  talliesPerSecond: number;
  /** Hourly shape, one request at a time: tallies/s and latency. */
  sequential: { talliesPerSecond: number; latencyMs: LatencyStats };
  runs: IngestRun[];
  /** First batch of an hour for new keys through the API wired to Temporal: one start per key. */
  /** Every request stored all of its tallies (checked by counting rows at the end). */
  storedRows: number;
  /** Peak RSS and JS heap of the bench process (API and client); the client holds one run's request bodies (payloadMb, outside the heap). */
  memory: { rssPeakMb: number; heapUsedPeakMb: number; payloadMb: number };
}

export interface IngestBenchOptions {
  /** Admin URL of a PostgreSQL server; a throwaway database is created on it. Default TEST_DATABASE_URL. */
  databaseUrl?: string;
  batchSize?: number;
  /** Requests per run. */
  requests?: number;
  /** In-flight levels to measure. */
  concurrency?: number[];
  log?: (line: string) => void;
}

const round = (v: number, digits = 1): number => Math.round(v * 10 ** digits) / 10 ** digits;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function stats(ms: number[]): LatencyStats {
  const s = [...ms].sort((a, b) => a - b);
  return { p50: round(percentile(s, 50)), p95: round(percentile(s, 95)), max: round(s[s.length - 1] ?? NaN) };
}

const PRODUCT = { productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production' };

function keyOf(orgId: string, k: number): RemittanceKey {
  return { billingProvider: 'aws', billingAccountId: String(600_000_000_000 + k), orgId, ...PRODUCT };
}

/** `keys` keys of one org x `hours` consecutive hours ending `hoursBack` hours before `nowHour`. */
function batchBody(orgId: string, keys: number, hours: number, hoursBack: number, nowHour: number, hourMs: number): string {
  const tallies = [];
  for (let k = 0; k < keys; k++) {
    const key = keyOf(orgId, k);
    for (let h = 0; h < hours; h++) {
      tallies.push({ ...key, hour: new Date(nowHour - (hoursBack + h) * hourMs).toISOString(), value: ((k * 31 + h * 7) % 640) / 8 });
    }
  }
  return JSON.stringify({ tallies });
}

interface Api {
  url: string;
  token: string;
  app: FastifyInstance;
}

async function startApi(database: Database, time: TimeSettings, temporal?: { client: Client; taskQueue: string }): Promise<Api> {
  const token = `bench-${randomUUID()}`;
  const app = await buildApi({ database, catalog: loadCatalog(), time, temporal, tokens: { ingest: token, operator: `op-${randomUUID()}` }, log: createLogger('bench', 'error') });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, token, app };
}

async function post(api: Api, payload: string | Buffer, expected: number): Promise<{ ms: number; started: number }> {
  const t0 = performance.now();
  const res = await fetch(`${api.url}/v1/tallies`, { method: 'POST', headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' }, body: payload });
  const text = await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 202) throw new Error(`POST /v1/tallies answered ${res.status}: ${text.slice(0, 300)}`);
  const parsed = JSON.parse(text) as { accepted: number; remittancesStarted: number };
  if (parsed.accepted !== expected) throw new Error(`accepted ${parsed.accepted} of ${expected}`);
  return { ms, started: parsed.remittancesStarted };
}

export async function benchIngest(opts: IngestBenchOptions = {}): Promise<IngestBench> {
  const adminUrl = opts.databaseUrl ?? process.env.TEST_DATABASE_URL;
  if (!adminUrl) throw new Error('benchIngest needs a PostgreSQL server: pass databaseUrl or set TEST_DATABASE_URL (npm run bench starts one)');
  const batchSize = opts.batchSize ?? 10_000;
  const requests = opts.requests ?? 32;
  const levels = opts.concurrency ?? [1, 2, 4];
  const log = opts.log ?? (() => undefined);
  const hourMs = PRODUCTION_HOUR_MS;
  const time: TimeSettings = { hourMs, graceHours: 0.1667, acceptanceHours: { aws: 6, azure: 24 } };
  const runTag = randomBytes(4).toString('hex');

  const dbName = `bench_ingest_${runTag}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE DATABASE "${dbName}"`);
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  const cleanups: Array<() => Promise<unknown>> = [() => admin(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`)];

  let rssPeak = 0;
  let heapPeak = 0;
  let payloadMbPeak = 0;
  const sample = () => {
    const m = process.memoryUsage();
    rssPeak = Math.max(rssPeak, m.rss);
    heapPeak = Math.max(heapPeak, m.heapUsed);
  };
  const sampler = setInterval(sample, 50);

  try {
    await migrate(url.toString());
    const database = openDatabase(url.toString(), { max: 10, applicationName: 'remit-bench' });
    cleanups.unshift(() => database.close());
    const api = await startApi(database, time);
    cleanups.unshift(() => api.app.close());

    const nowHour = hourStart(Date.now(), hourMs);
    // Each request moves its org further back in time, so every request inserts new rows
    // (a new tally, the common case) rather than replacing existing ones.
    const cursor = new Map<string, { keys: number; hoursBack: number }>();
    const nextBody = (orgId: string, keys: number) => {
      const c = cursor.get(orgId) ?? { keys, hoursBack: 0 };
      const hours = batchSize / keys;
      cursor.set(orgId, { keys, hoursBack: c.hoursBack + hours });
      return batchBody(orgId, keys, hours, c.hoursBack, nowHour, hourMs);
    };

    // Warm-up (JIT, pool, plans), not measured.
    for (let i = 0; i < 3; i++) await post(api, nextBody(`bench-${runTag}-warm`, 1000), batchSize);

    const runs: IngestRun[] = [];
    for (const [shape, keys] of [['hourly', batchSize], ['backfill', batchSize / 10]] as const) {
      for (const concurrency of levels) {
        const orgs = Array.from({ length: concurrency }, (_, i) => `bench-${runTag}-${shape}-c${concurrency}-${i}`);
        const perClient = Math.ceil(requests / concurrency);
        // Buffers, outside the JS heap, so the heap figure is the API's (RSS includes them).
        const payloads = orgs.map((o) => Array.from({ length: perClient }, () => Buffer.from(nextBody(o, keys))));
        payloadMbPeak = Math.max(payloadMbPeak, payloads.flat().reduce((sum, b) => sum + b.length, 0) / 2 ** 20);
        const latencies: number[] = [];
        const pg0 = await backendCpuMs(database);
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        await Promise.all(
          payloads.map(async (list) => {
            for (const p of list) latencies.push((await post(api, p, batchSize)).ms);
          }),
        );
        const elapsedMs = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        const pg1 = await backendCpuMs(database);
        let pgMs: number | null = null;
        if (pg0 && pg1) pgMs = [...pg1].reduce((sum, [pid, ms]) => sum + ms - (pg0.get(pid) ?? 0), 0);
        const n = perClient * concurrency * batchSize;
        const nodeCpuMsPerRequest = round((cpu.user + cpu.system) / 1000 / (perClient * concurrency));
        const run: IngestRun = { shape, keysPerBatch: keys, hoursPerBatch: batchSize / keys, concurrency, requests: perClient * concurrency, nodeCpuMsPerRequest, postgresCpuMsPerRequest: pgMs === null ? null : round(pgMs / (perClient * concurrency)), tallies: n, elapsedMs: round(elapsedMs), talliesPerSecond: round((n / elapsedMs) * 1000, 0), latencyMs: stats(latencies) };
        runs.push(run);
        log(`ingest ${shape} x${concurrency}: ${run.talliesPerSecond} tallies/s, p50 ${run.latencyMs.p50} ms, p95 ${run.latencyMs.p95} ms, CPU ms/request: node ${nodeCpuMsPerRequest}, PostgreSQL ${run.postgresCpuMsPerRequest ?? '?'}`);
      }
    }

    const expected = [...cursor.values()].reduce((s, c) => s + c.hoursBack * c.keys, 0);
    const stored = await database.pool.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM tallies');
    if (stored.rows[0]!.n !== expected) throw new Error(`stored ${stored.rows[0]!.n} tallies, expected ${expected}`);
    sample();
    const hourly = runs.filter((r) => r.shape === 'hourly');
    const seq = hourly.find((r) => r.concurrency === 1) ?? hourly[0]!;
    return {
      batchSize,
      talliesPerSecond: Math.max(...hourly.map((r) => r.talliesPerSecond)),
      sequential: { talliesPerSecond: seq.talliesPerSecond, latencyMs: seq.latencyMs },
      runs,
      storedRows: stored.rows[0]!.n,
      memory: { rssPeakMb: round(rssPeak / 2 ** 20), heapUsedPeakMb: round(heapPeak / 2 ** 20), payloadMb: round(payloadMbPeak) },
    };
  } finally {
    clearInterval(sampler);
    for (const c of cleanups) await c().catch((err: unknown) => console.error(`bench clean-up: ${String(err)}`));
  }
}

/**
 * CPU time (user + system, ms) of each PostgreSQL backend of the bench's pool, read from
 * /proc/<pid>/stat: only when PostgreSQL runs on this machine, else null.
 */
async function backendCpuMs(database: Database): Promise<Map<number, number> | null> {
  const r = await database.pool.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = 'remit-bench' AND backend_type = 'client backend'`);
  const out = new Map<number, number>();
  for (const { pid } of r.rows) {
    let stat: string;
    try {
      stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // the backend exited since (the pool closed an idle connection), or PostgreSQL is elsewhere
    }
    // A pid of another machine's PostgreSQL may name a local process: check it is a postgres.
    if (!stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).startsWith('postgres')) return null;
    // Fields after the command name (which may contain spaces): utime and stime are the 14th and 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(pid, ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS);
  }
  return r.rows.length > 0 && out.size === 0 ? null : out;
}

/** sysconf(_SC_CLK_TCK): 100 on every Linux this runs on. */
const CLOCK_TICKS = 100;

if (require.main === module) {
  benchIngest({ log: (l) => console.error(l) }).then(
    (r) => console.log(JSON.stringify({ ingest: r })),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
