// Crashes of any process: a worker killed with SIGKILL in the middle of sending, a Temporal
// server restart, a PostgreSQL restart. The worker runs as its own process (workers/main.ts),
// against a Temporal dev server and a PostgreSQL of this file's own, kept on disk so that they
// can be restarted. Each story ends with exactly one accepted record and a clean audit.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../api/app';
import { loadConfig } from '../../config/env';
import { openDatabase, type Database } from '../../db/client';
import { migrate } from '../../db/migrate';
import { loadCatalog } from '../../domain/catalog';
import { startAwsEmulator, type AwsEmulator } from '../../scripts/emulators/aws';
import { createLogger } from '../../lib/log';
import { auditLedger } from '../../operations/audit';
import { freePort } from '../../scripts/lib/proc';
import { startPostgres, type PostgresServer } from '../../scripts/lib/postgres';
import { startTemporalDevServer, type DevServer } from '../../scripts/lib/temporal-cli';
import { eventually } from '../../scripts/lib/stack-harness';

const HOUR_MS = 3000;
const root = path.resolve(__dirname, '..', '..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-crash-'));
// PostgreSQL runs as the postgres user, which must be able to reach its data directory.
fs.chmodSync(dir, 0o755);

let pg: PostgresServer;
let pgPort: number;
let temporal: DevServer;
let temporalPort: number;
let aws: AwsEmulator;
let database: Database;
let connection: Connection;
let client: Client;
let api: FastifyInstance;
let apiUrl: string;
const taskQueue = `crash-${randomUUID()}`;
const tokens = { ingest: 'crash-ingest', operator: 'crash-operator' };
let env: NodeJS.ProcessEnv;
const catalog = loadCatalog();
const cfgEnv = { REMIT_HOUR_SECONDS: String(HOUR_MS / 1000), REMIT_GRACE_HOURS: '0.25', REMIT_AWS_ACCEPTANCE_HOURS: '30' };
const time = loadConfig({ ...cfgEnv }).time;

function startWorker(): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'workers', 'main.ts')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err = (err + String(d)).slice(-4000)));
  child.on('exit', (code, sig) => {
    if (code && code !== 0 && !sig) console.error(`worker exited ${code}: ${err}`);
  });
  return child;
}

/** A worker is ready when it polls this file's task queue. */
async function workerPolling(): Promise<void> {
  await eventually(async () => {
    const r = await connection.workflowService.describeTaskQueue({ namespace: 'default', taskQueue: { name: taskQueue }, taskQueueType: 2 });
    return (r.pollers?.length ?? 0) > 0;
  }, 60_000, 'a worker polling');
}

async function kill(child: ChildProcess, signal: NodeJS.Signals) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

before(async () => {
  pgPort = await freePort();
  pg = await startPostgres({ dataDir: path.join(dir, 'pg'), port: pgPort, log: () => undefined });
  temporalPort = await freePort();
  temporal = await startTemporalDevServer({ port: temporalPort, headless: true, dbFile: path.join(dir, 'temporal.db'), log: () => undefined });
  aws = await startAwsEmulator({ hourMs: HOUR_MS, acceptanceHours: 30, host: '127.0.0.1' });
  await migrate(pg.url);
  database = openDatabase(pg.url);
  connection = await Connection.connect({ address: temporal.address });
  client = new Client({ connection });
  env = {
    ...process.env,
    ...cfgEnv,
    DATABASE_URL: pg.url,
    TEMPORAL_ADDRESS: temporal.address,
    REMIT_TASK_QUEUE: taskQueue,
    AWS_METERING_ENDPOINT: aws.url,
    AWS_ACCESS_KEY_ID: 'crash-test',
    AWS_SECRET_ACCESS_KEY: 'crash-test-secret',
    AZURE_METERING_ENDPOINT: '',
    LOG_LEVEL: 'error',
  };
  api = await buildApi({ database, catalog, time, temporal: { client, taskQueue }, tokens, log: createLogger('crash-test', 'error') });
  apiUrl = await api.listen({ port: 0, host: '127.0.0.1' });
});

after(async () => {
  await api?.close();
  await connection?.close();
  await database?.close();
  await aws?.close();
  await temporal?.stop();
  await pg?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function post(orgId: string, account: string, value: number) {
  const hour = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
  const r = await fetch(`${apiUrl}/v1/tallies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokens.ingest}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tallies: [{ orgId, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: account, hour: new Date(hour).toISOString(), value }] }),
  });
  assert.equal(r.status, 202, await r.text());
}

async function rows(orgId: string) {
  return (await database.pool.query('SELECT r.id, r.status, r.bill, m.attempts, r.receipt_id AS "receiptId", r.reason FROM remittances r JOIN marketplace_records m ON m.id = r.record_id WHERE r.org_id = $1', [orgId])).rows;
}

async function expectOneRecord(orgId: string, account: string, value: number) {
  const done = await eventually(async () => {
    const r = await rows(orgId);
    return r.length === 1 && r[0].status === 'Succeeded' ? r[0] : undefined;
  }, 90_000, `the remittance of ${orgId}`);
  const recs = aws.records().filter((r) => r.customer === account);
  assert.equal(recs.length, 1, 'exactly one accepted record');
  assert.equal(recs[0]!.quantity, value);
  assert.equal(recs[0]!.receiptId, done.receiptId);
  assert.equal(aws.calls().filter((c) => c.duplicates > 0).length, 0, 'no duplicate rejection');
  return done;
}

async function assertAuditClean() {
  const report = await auditLedger({
    database,
    catalog,
    time,
    marketplaceRecords: { aws: aws.records().map((r) => ({ marketplace: 'aws' as const, receiptId: r.receiptId, customer: r.customer, dimension: r.dimension, quantity: r.quantity, hourMs: Date.parse(r.hour) })) },
  });
  assert.deepEqual(report.violations, []);
}

const account = () => String(200000000000 + Math.floor(Math.random() * 799999999999));

describe('crashes of any process', () => {
  it('a worker killed with SIGKILL in the middle of sending: one accepted record, true ledger', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const acct = account();
    // The first call for this customer never gets an answer: the worker is stuck mid-send.
    aws.faults.add({ kind: 'timeout', count: 1, match: { customer: acct } });
    let worker = startWorker();
    await post(orgId, acct, 8);
    await eventually(async () => (await rows(orgId))[0]?.status === 'Sending' && aws.calls().some((c) => c.outcome === 'timeout'), 30_000, 'the send in flight');
    await kill(worker, 'SIGKILL');
    worker = startWorker();
    try {
      const done = await expectOneRecord(orgId, acct, 8);
      assert.ok(done.attempts >= 2, 'the second worker took over the send');
      await assertAuditClean();
    } finally {
      await kill(worker, 'SIGTERM');
    }
  });

  it('a Temporal dev server restart while remittances wait for their window', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const acct = account();
    const worker = startWorker();
    try {
      await workerPolling();
      await post(orgId, acct, 5);
      await temporal.stop();
      await new Promise((r) => setTimeout(r, 2000));
      temporal = await startTemporalDevServer({ port: temporalPort, headless: true, dbFile: path.join(dir, 'temporal.db'), log: () => undefined });
      await expectOneRecord(orgId, acct, 5);
      await assertAuditClean();
    } finally {
      await kill(worker, 'SIGTERM');
    }
  });

  it('a PostgreSQL restart across the window close', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const acct = account();
    const worker = startWorker();
    try {
      await workerPolling();
      await post(orgId, acct, 6);
      await pg.stop();
      // Down across the window close: the computation fails and is retried until it is back.
      await new Promise((r) => setTimeout(r, HOUR_MS * 1.5));
      pg = await startPostgres({ dataDir: path.join(dir, 'pg'), port: pgPort, log: () => undefined });
      await expectOneRecord(orgId, acct, 6);
      await assertAuditClean();
    } finally {
      await kill(worker, 'SIGTERM');
    }
  });
});
