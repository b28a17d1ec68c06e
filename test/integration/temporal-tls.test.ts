// remit against a Temporal frontend that accepts only mutual TLS: the real Temporal server
// (built into .tools/ when missing) on the test PostgreSQL, serving its frontend with a
// certificate from a CA made here and requiring client certificates from it. The product's own
// connection code, configured only through the TEMPORAL_TLS_* variables, runs a remittance end to
// end (API start, worker, the server's schedules); the CLI lists it; plaintext and a client
// without its certificate are refused.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { temporalConnectionFromEnv, type TemporalConnectionSettings } from '../../config/temporal';
import { connectClientConnection } from '../../lib/temporal-connection';
import { freePort } from '../../scripts/lib/proc';
import { applyTemporalSchema, ensureTemporalServer, makeTemporalCerts, startTemporalServer, type RunningTemporalServer, type TemporalCerts } from '../../scripts/lib/temporal-server';
import { testDatabaseServerUrl } from '../../scripts/lib/test-database';
import { eventually, startTestStack, type TestStack } from '../../scripts/lib/stack-harness';
import { sweepScheduleId } from '../../workflows/definitions';

const HOUR_MS = 3000;
const BIN = path.resolve(__dirname, '..', '..', 'bin', 'remit.mjs');
const log = (m: string) => process.stderr.write(`[temporal-tls] ${m}\n`);

let dir: string;
let certs: TemporalCerts;
let server: RunningTemporalServer | undefined;
let stack: TestStack | undefined;
let tlsEnv: NodeJS.ProcessEnv;
let settings: TemporalConnectionSettings;
const dbNames = [`t_temporal_${randomBytes(4).toString('hex')}`, `t_temporal_vis_${randomBytes(4).toString('hex')}`] as const;

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: testDatabaseServerUrl() });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

before(async () => {
  const binaries = await ensureTemporalServer(log);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-temporal-tls-'));
  certs = await makeTemporalCerts(dir);
  const pgUrl = new URL(testDatabaseServerUrl());
  const db = { host: pgUrl.hostname, port: Number(pgUrl.port), user: decodeURIComponent(pgUrl.username), password: decodeURIComponent(pgUrl.password), database: dbNames[0], visibilityDatabase: dbNames[1] };
  await applyTemporalSchema(binaries.sqlTool, db, log);
  const port = await freePort();
  // Only the variables an operator sets: the rest of the product reads them.
  tlsEnv = {
    TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
    TEMPORAL_NAMESPACE: 'remit-tls',
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.caFile,
    TEMPORAL_TLS_SERVER_NAME: certs.serverName,
    TEMPORAL_TLS_CLIENT_CERT_PATH: certs.clientCertFile,
    TEMPORAL_TLS_CLIENT_KEY_PATH: certs.clientKeyFile,
  };
  settings = temporalConnectionFromEnv(tlsEnv);
  server = await startTemporalServer({
    binaries,
    db,
    port,
    numHistoryShards: 2,
    settings,
    log,
    tls: {
      certFile: certs.serverCertFile,
      keyFile: certs.serverKeyFile,
      caFile: certs.caFile,
      serverName: certs.serverName,
      clientCaFile: certs.caFile,
      systemWorkerCertFile: certs.clientCertFile,
      systemWorkerKeyFile: certs.clientKeyFile,
    },
  });
  stack = await startTestStack({ hourMs: HOUR_MS, graceHours: 0.25, sweep: true, env: tlsEnv });
});

after(async () => {
  await stack?.stop();
  await server?.stop();
  await admin(`DROP DATABASE IF EXISTS "${dbNames[0]}" WITH (FORCE)`).catch(() => undefined);
  await admin(`DROP DATABASE IF EXISTS "${dbNames[1]}" WITH (FORCE)`).catch(() => undefined);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Resolves to the error the frontend (or the handshake) gave, or undefined when it answered. */
async function refusal(s: TemporalConnectionSettings): Promise<Error | undefined> {
  try {
    const c = await connectClientConnection(s, { connectTimeout: '5s' });
    try {
      await c.workflowService.getSystemInfo({});
    } finally {
      await c.close();
    }
    return undefined;
  } catch (err) {
    return err as Error;
  }
}

describe('a Temporal frontend that requires mutual TLS', () => {
  it('runs a remittance end to end through the product\'s API, worker and the server\'s schedules', async () => {
    const s = stack!;
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const hour = s.currentHourMs();
    const posted = await s.request(
      'POST',
      '/v1/tallies',
      { tallies: [{ orgId, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: '444455556666', hour: new Date(hour).toISOString(), value: 2 }] },
      s.tokens.ingest,
    );
    assert.equal(posted.status, 202, JSON.stringify(posted.body));
    const done = await eventually(async () => {
      const r = await s.request('GET', `/v1/remittances?orgId=${orgId}`);
      const items = (r.body?.items ?? []) as Array<Record<string, any>>;
      return items.length > 0 && items.every((i) => i.status === 'Succeeded') ? items : undefined;
    }, 60_000, 'the remittance to succeed over mTLS');
    const records = s.aws.records().filter((r) => r.customer === '444455556666');
    assert.equal(records.length, 1, 'exactly one record reached the marketplace');
    assert.equal(records[0]!.receiptId, done[0]!.receiptId);
    const audit = await s.audit();
    assert.equal(audit.ok, true, JSON.stringify(audit.violations));
    // The hourly sweep is a Temporal Schedule: it runs only if the server's own system worker
    // reaches the mTLS frontend too.
    await eventually(async () => (await s.client.schedule.getHandle(sweepScheduleId(s.taskQueue)).describe()).info.recentActions.length > 0, 30_000, 'the sweep schedule to fire');
  });

  it('lists the workflows from the operator CLI, configured by the same variables', async () => {
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(REMIT_|DATABASE_URL$|TEMPORAL_)/.test(k)));
    const env = { ...base, ...tlsEnv, REMIT_STACK_FILE: 'none', TEMPORAL_CLI_PATH: process.env.TEMPORAL_CLI_PATH };
    const run = (extra: NodeJS.ProcessEnv) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, [BIN, 'replay', '--query', 'Marketplace="aws"', '--dry-run', '--json'], { env: { ...env, ...extra }, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    const listed = await eventually(async () => {
      const r = await run({});
      if (r.code !== 0) throw new Error(`remit replay exited ${r.code}: ${r.stderr}`);
      const j = JSON.parse(r.stdout) as { workflows: unknown[] };
      return j.workflows.length > 0 ? j : undefined;
    }, 30_000, 'remit replay to list the remittance over mTLS');
    assert.ok(listed.workflows.length >= 1);
    // Without the client certificate the same command is refused, and says where it tried.
    const refused = await run({ TEMPORAL_TLS_CLIENT_CERT_PATH: '', TEMPORAL_TLS_CLIENT_KEY_PATH: '' });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /cannot connect to Temporal at 127\.0\.0\.1:\d+ \(namespace remit-tls, TLS with CA/);
  });

  it('refuses a plaintext connection', async () => {
    const err = await refusal({ ...settings, tls: undefined });
    assert.ok(err, 'a plaintext client must not get an answer');
  });

  it('refuses TLS without a client certificate, and a client that does not trust the server\'s CA', async () => {
    assert.ok(await refusal({ ...settings, tls: { serverCaFile: certs.caFile, serverName: certs.serverName } }), 'no client certificate');
    // The system CAs do not include the local CA: the client must refuse the server.
    assert.ok(await refusal({ ...settings, tls: { serverName: certs.serverName, clientCertFile: certs.clientCertFile, clientKeyFile: certs.clientKeyFile } }), 'unknown server CA');
    // And the right settings still work (the refusals above are about the settings, not a dead server).
    assert.equal(await refusal(settings), undefined);
  });
});
