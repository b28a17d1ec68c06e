// Crashes of any process: a worker killed with SIGKILL in the middle of sending (AWS silent, or
// AWS having stored the record whose answer was lost), a Temporal server restart, a PostgreSQL
// restart. The worker runs as its own process (workers/main.ts),
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
import { loadCatalog } from '../../config/catalog';
import { startAwsEmulator, type AwsEmulator } from '../../scripts/emulators/aws';
import { createLogger } from '../../lib/log';
import { auditLedger } from '../../operations/audit';
import { freePort } from '../../scripts/lib/proc';
import { startPostgres, type PostgresServer } from '../../scripts/lib/postgres';
import { startTemporalDevServer, type DevServer } from '../../scripts/lib/temporal-cli';
import { eventually, workflowBundle } from '../../scripts/lib/stack-harness';

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

function startWorker(extraEnv: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'workers', 'main.ts')], { env: { ...env, ...extraEnv }, stdio: ['ignore', 'ignore', 'pipe'] });
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
    const r = await connection.workflowService.describeTaskQueue({ namespace: temporal.namespace, taskQueue: { name: taskQueue }, taskQueueType: 2 });
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
  client = new Client({ connection, namespace: temporal.namespace });
  // Workers load a prebuilt workflow bundle, as in the container image: a restarted worker is
  // polling within seconds instead of bundling first.
  const bundlePath = path.join(dir, 'workflow-bundle.js');
  fs.writeFileSync(bundlePath, (await workflowBundle()).code);
  env = {
    ...process.env,
    ...cfgEnv,
    REMIT_WORKFLOW_BUNDLE_PATH: bundlePath,
    DATABASE_URL: pg.url,
    TEMPORAL_ADDRESS: temporal.address,
    // This file's own server, not the namespace npm test gave it on the shared one.
    TEMPORAL_NAMESPACE: temporal.namespace,
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

async function post(orgId: string, account: string, value: number, hour = Math.floor(Date.now() / HOUR_MS) * HOUR_MS) {
  const r = await fetch(`${apiUrl}/v1/tallies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokens.ingest}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tallies: [{ orgId, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: account, hour: new Date(hour).toISOString(), value }] }),
  });
  assert.equal(r.status, 202, await r.text());
}

async function rows(orgId: string) {
  return (await database.pool.query(
    `SELECT r.id, r.status, r.bill, m.attempts, m.attempt_open AS "attemptOpen", m.in_doubt AS "inDoubt", r.receipt_id AS "receiptId", r.reason,
            r.remittance_hour AS "remittanceHour", r.error_code AS "errorCode"
     FROM remittances r JOIN marketplace_records m ON m.id = r.record_id WHERE r.org_id = $1 ORDER BY r.remittance_hour`,
    [orgId],
  )).rows;
}

/** Wait until a close of an hour at or after `hourMs` has finished: whatever it had to bill is made by then. */
async function closedThrough(hourMs: number) {
  await eventually(async () => (await database.pool.query('SELECT 1 FROM hour_closes WHERE hour >= $1 AND finished_at IS NOT NULL', [new Date(hourMs)])).rowCount, 60_000, `the close of ${new Date(hourMs).toISOString()}`);
}

/**
 * The dangerous moment: AWS has stored the record but its answer is lost (lost-response fault),
 * and the worker dies before the ledger knows. The worker's own follow-up (the identical re-send
 * that asks AWS what it recorded) is held open by a timeout fault, so the kill lands while the
 * ledger still says only "Sending, call dispatched" (attempt_open) and nothing says "in doubt".
 */
async function killAfterAwsStoredIt(orgId: string, acct: string, value: number, workerEnv: NodeJS.ProcessEnv = {}) {
  const since = Date.now();
  aws.faults.add({ kind: 'lost-response', count: 1, match: { customer: acct } });
  aws.faults.add({ kind: 'timeout', count: 1, match: { customer: acct } });
  const worker = startWorker(workerEnv);
  const hour = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
  await post(orgId, acct, value, hour);
  await eventually(
    async () => aws.calls().filter((c) => c.at >= since && c.outcome === 'lost-response').length === 1 && aws.calls().some((c) => c.at >= since && c.outcome === 'timeout'),
    120_000,
    'the lost answer, then the confirming re-send held open',
  ).catch(async (err: Error) => {
    await kill(worker, 'SIGKILL'); // no worker outlives a failed story
    throw new Error(`${err.message}; calls: ${JSON.stringify(aws.calls().filter((c) => c.at >= since).map((c) => [c.outcome, c.recordCount]))}; ledger: ${JSON.stringify(await rows(orgId))}`);
  });
  await kill(worker, 'SIGKILL');
  const stored = aws.records().filter((r) => r.customer === acct);
  assert.equal(stored.length, 1, 'AWS stored the record before the worker died');
  assert.equal(stored[0]!.quantity, value);
  const [row] = await rows(orgId);
  assert.equal(row.status, 'Sending', 'the ledger has not recorded the outcome');
  assert.equal(row.attemptOpen, true);
  assert.equal(row.inDoubt, false, 'nothing recorded that the answer was lost');
  return { hour, stored: stored[0]! };
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

  it('AWS stored the record, the worker is SIGKILLed before recording it: the restarted worker confirms that record, never bills it twice', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const acct = account();
    const { hour, stored } = await killAfterAwsStoredIt(orgId, acct, 8);
    // While no worker runs, the usage of that hour is corrected upwards (8 -> 11): the record in
    // flight must still be confirmed as sent (8, frozen), and only the difference billed later.
    await post(orgId, acct, 11, hour);
    const worker = startWorker();
    try {
      const sent = await eventually(async () => {
        const r = await rows(orgId);
        return r[0]?.status === 'Succeeded' ? r[0] : undefined;
      }, 90_000, 'the record of the killed worker to be confirmed');
      assert.equal(new Date(sent.remittanceHour).toISOString(), stored.hour);
      assert.equal(sent.bill, 8);
      assert.equal(sent.receiptId, stored.receiptId, "the ledger holds AWS's own receipt of the first send");
      assert.ok(sent.attempts >= 2, 'the restarted worker took over the send');
      const all = await eventually(async () => {
        const r = await rows(orgId);
        return r.length === 2 && r.every((x: { status: string }) => x.status === 'Succeeded') ? r : undefined;
      }, 90_000, 'the corrected difference billed in a later hour');
      assert.equal(all[1].bill, 3);
      const recs = aws.records().filter((r) => r.customer === acct);
      assert.deepEqual(recs.map((r) => [r.hour, r.quantity]).sort(), [[stored.hour, 8], [new Date(all[1].remittanceHour).toISOString(), 3]].sort(), 'one record per hour, 11 units in all: nothing twice');
      await assertAuditClean();
    } finally {
      await kill(worker, 'SIGTERM');
    }
  });

  it('AWS stored the record, the worker is SIGKILLed, and AWS cannot confirm it before the deadline: Unconfirmed, never billed again', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const acct = account();
    // A 12-hour window (36 s): the restarted worker takes over (after the dead worker's workflow
    // task times out) well before the deadline and keeps trying while AWS throttles every call.
    const workerEnv = { REMIT_AWS_ACCEPTANCE_HOURS: '12' };
    const { stored } = await killAfterAwsStoredIt(orgId, acct, 5, workerEnv);
    aws.faults.add({ kind: 'throttle', durationMs: 60_000, match: { customer: acct } });
    const worker = startWorker(workerEnv);
    try {
      const ended = await eventually(async () => {
        const r = await rows(orgId);
        return r[0] && !['Pending', 'Sending'].includes(r[0].status) ? r[0] : undefined;
      }, 120_000, 'the record to end');
      assert.equal(ended.status, 'Unconfirmed', `${ended.status}: ${ended.reason}`);
      assert.equal(ended.errorCode, 'marketplace_unconfirmed');
      assert.ok(ended.attempts >= 2, 'the restarted worker tried before the deadline');
      // AWS answers again; hours later nothing billed the amount a second time: it counts as remitted.
      aws.faults.clear();
      await closedThrough(Date.now() + HOUR_MS);
      assert.deepEqual((await rows(orgId)).map((r: { status: string }) => r.status), ['Unconfirmed']);
      const recs = aws.records().filter((r) => r.customer === acct);
      assert.deepEqual(recs.map((r) => [r.hour, r.quantity]), [[stored.hour, 5]], 'AWS holds it once');
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
