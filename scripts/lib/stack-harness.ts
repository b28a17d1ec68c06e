// The real stack in one test process: a fresh PostgreSQL database (migrated), the marketplace
// emulators on loopback, a remittance worker on its own task queue against the real Temporal
// dev server that `npm test` started, and the HTTP API on a free port. Hours are scaled.

import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../api/app';
import { loadConfig, type RemitConfig, type TimeSettings } from '../../config/env';
import { openDatabase, type Database } from '../../db/client';
import { type Catalog } from '../../domain/catalog';
import { loadCatalog } from '../../config/catalog';
import { startAwsEmulator, type AwsEmulator } from '../emulators/aws';
import { createLogger } from '../../lib/log';
import { createMarketplaceGateway, type MarketplaceGateway } from '../../marketplaces';
import { connectTemporal, createRemittanceWorker, ensureSweepSchedule } from '../../workers/worker';
import { sweepScheduleId } from '../../workflows/definitions';
import { createTestDatabase } from './test-database';
export { eventually } from './proc';
import { APP, TENANT, startAzureStack, type AzureStack } from './azure-stack';
import { workflowBundle } from './workflow-bundle';
import { auditLedger, type AuditReport } from '../../operations/audit';

let runtimeInstalled = false;
/** Worker and SDK logs at ERROR (activity retries are expected here), so test output shows failures rather than every state change. */
function installRuntime() {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger((process.env.TEMPORAL_LOG_LEVEL as 'ERROR') || 'ERROR') });
}
/** One workflow bundle per test process (the one `npm test` prebuilt, when it did). */
export { workflowBundle };

export interface TestStackOptions {
  hourMs: number;
  graceHours?: number;
  awsAcceptanceHours?: number;
  /** Extra environment for loadConfig. */
  env?: NodeJS.ProcessEnv;
  /**
   * Create the sweep schedule that closes each hour (default true: nothing is remitted without
   * it). False for tests that close hours themselves.
   */
  sweep?: boolean;
}

export interface TestStack {
  apiUrl: string;
  aws: AwsEmulator;
  /** The Azure metering and Entra emulators (HTTPS, local CA). */
  azure: AzureStack;
  database: Database;
  client: Client;
  taskQueue: string;
  catalog: Catalog;
  time: TimeSettings;
  config: RemitConfig;
  tokens: { ingest: string; operator: string };
  marketplaces: MarketplaceGateway;
  /** Start (another) worker on the same task queue; returned so a test can stop it. */
  startWorker(): Promise<{ worker: Worker; done: Promise<void> }>;
  request(method: string, path: string, body?: unknown, token?: string | null): Promise<{ status: number; body: any }>;
  /** `remit audit` against this stack's ledger and the AWS emulator's records. */
  audit(): Promise<AuditReport>;
  currentHourMs(): number;
  stop(): Promise<void>;
}

export async function startTestStack(o: TestStackOptions): Promise<TestStack> {
  process.env.AWS_ACCESS_KEY_ID ??= 'test-access-key';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'test-secret-key';
  if (!process.env.TEMPORAL_ADDRESS && !o.env?.TEMPORAL_ADDRESS) throw new Error('TEMPORAL_ADDRESS is not set: run the tests with `npm test`, which starts Temporal and PostgreSQL');
  installRuntime();
  const acceptanceHours = o.awsAcceptanceHours ?? 6;
  const testDb = await createTestDatabase();
  const database = openDatabase(testDb.url, { max: 20 });
  const aws = await startAwsEmulator({ hourMs: o.hourMs, acceptanceHours, host: '127.0.0.1' });
  const azureAcceptanceHours = Number(o.env?.REMIT_AZURE_ACCEPTANCE_HOURS ?? 24);
  const azure = await startAzureStack({ hourMs: o.hourMs, acceptanceHours: azureAcceptanceHours });
  const tokens = { ingest: `ingest-${randomUUID()}`, operator: `operator-${randomUUID()}` };
  const config = loadConfig({
    ...process.env,
    REMIT_HOUR_SECONDS: String(o.hourMs / 1000),
    REMIT_GRACE_HOURS: String(o.graceHours ?? 0.25),
    REMIT_AWS_ACCEPTANCE_HOURS: String(acceptanceHours),
    AWS_METERING_ENDPOINT: aws.url,
    DATABASE_URL: testDb.url,
    AZURE_METERING_ENDPOINT: azure.azure.url,
    AZURE_AUTHORITY_HOST: azure.entra.url,
    AZURE_TENANT_ID: TENANT,
    AZURE_CLIENT_ID: APP.clientId,
    AZURE_CLIENT_SECRET: APP.clientSecret,
    REMIT_EXTRA_CA_CERT_FILE: azure.certs.caFile,
    ...o.env,
  });
  const time = config.time;
  const catalog = loadCatalog(config.catalogPath);
  const log = createLogger('test', process.env.LOG_LEVEL || 'error');
  const taskQueue = `test-${randomUUID()}`;
  // The workers' own connection code, from the same settings (TLS and API key included).
  const temporal = await connectTemporal(config);
  const { connection, client } = temporal;
  const marketplaces = await createMarketplaceGateway(config, log, { database });
  const workers: Array<{ worker: Worker; done: Promise<void> }> = [];
  const startWorker = async () => {
    const worker = await createRemittanceWorker({ connection, namespace: config.temporalNamespace, taskQueue, database, catalog, time, marketplaces, log, workflowBundle: await workflowBundle() });
    const w = { worker, done: worker.run() };
    workers.push(w);
    return w;
  };
  await startWorker();
  const sweep = o.sweep ?? true;
  if (sweep) await ensureSweepSchedule(client, taskQueue, time);
  const api: FastifyInstance = await buildApi({ database, catalog, time, temporal: { client, taskQueue }, tokens, log });
  const address = await api.listen({ port: 0, host: '127.0.0.1' });

  return {
    apiUrl: address,
    aws,
    azure,
    database,
    client,
    taskQueue,
    catalog,
    time,
    config,
    tokens,
    marketplaces,
    startWorker,
    currentHourMs: () => Math.floor(Date.now() / o.hourMs) * o.hourMs,
    audit: () =>
      auditLedger({
        database,
        catalog,
        time,
        marketplaceRecords: {
          aws: aws.records().map((r) => ({ marketplace: 'aws' as const, receiptId: r.receiptId, customer: r.customer, dimension: r.dimension, quantity: r.quantity, hourMs: Date.parse(r.hour) })),
          azure: azure.azure.records().map((r) => ({ marketplace: 'azure' as const, receiptId: r.receiptId, customer: r.customer, dimension: r.dimension, quantity: r.quantity, hourMs: Date.parse(r.hour) })),
        },
      }),
    async request(method, path, body, token) {
      const headers: Record<string, string> = {};
      if (token !== null) headers.authorization = `Bearer ${token ?? tokens.operator}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const r = await fetch(`${address}${path}`, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
      const text = await r.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: r.status, body: parsed };
    },
    async stop() {
      await api.close();
      if (sweep) await client.schedule.getHandle(sweepScheduleId(taskQueue)).delete().catch(() => undefined);
      for (const w of workers) {
        if (w.worker.getState() === 'RUNNING') w.worker.shutdown();
        await w.done.catch(() => undefined);
      }
      await marketplaces.close();
      await aws.close();
      await azure.close();
      await temporal.close();
      await database.close();
      await testDb.drop();
    },
  };
}

/**
 * Wait, if needed, until the previous hour has been closed (the sweep finished it, or the hour
 * has at least a `hour_closes` row finished at or after it) with at least `minLeftMs` of the
 * current hour ahead, and return the current hour's start: usage posted then is computed when
 * this hour closes, never at the previous hour's close (which can run late on a busy machine).
 */
export async function pastPreviousClose(stack: Pick<TestStack, 'time' | 'currentHourMs' | 'database'>, minLeftMs = 0): Promise<number> {
  const pastGrace = stack.time.hourMs * stack.time.graceHours;
  const giveUp = Date.now() + 10 * stack.time.hourMs;
  for (;;) {
    if (Date.now() > giveUp) throw new Error(`no hour closed in time with ${minLeftMs} ms of the next still ahead: is the sweep schedule running?`);
    const hour = stack.currentHourMs();
    const into = Date.now() - hour;
    if (stack.time.hourMs - into < minLeftMs) {
      await new Promise((r) => setTimeout(r, stack.time.hourMs - into + 20));
      continue;
    }
    if (into >= pastGrace) {
      const closed = await stack.database.pool.query('SELECT 1 FROM hour_closes WHERE hour >= $1 AND finished_at IS NOT NULL', [new Date(hour - stack.time.hourMs)]);
      if (closed.rowCount) return hour;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

