// Wires one remittance worker: Temporal connection, task queue, workflows, activities and their
// dependencies. The only place that knows all of them.

import { Client, ScheduleAlreadyRunning, ScheduleOverlapPolicy } from '@temporalio/client';
import { type NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import type { RemitConfig, TimeSettings } from '../config/env';
import type { Database } from '../db/client';
import type { Catalog } from '../domain/catalog';
import type { Logger } from '../lib/log';
import { connectClient, connectNativeConnection } from '../lib/temporal-connection';
import { startRecordWorkflow } from '../workflows/client';
import { WORKFLOW_TYPE, sweepScheduleId } from '../workflows/definitions';
import { createUsagePullActivities } from '../activities/usage-pull';
import { prometheusSourceFromEnv } from '../usage/prometheus';
import type { UsageSource } from '../usage/source';
import type { MarketplaceGateway } from '../marketplaces';

export interface WorkerDeps {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  database: Database;
  catalog: Catalog;
  time: TimeSettings;
  marketplaces: MarketplaceGateway;
  log: Logger;
  /** Where the usage pull reads; default: Prometheus when REMIT_PROMETHEUS_URL is set, else no pull. */
  usageSource?: UsageSource;
  /** Tests pass a prebuilt bundle so that each test file bundles the workflows once. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

export async function createRemittanceWorker(d: WorkerDeps): Promise<Worker> {
  // The hour close starts its records' workflows on this worker's own connection, eagerly: the
  // server returns each first workflow task in the start's answer, so the burst of starts at a
  // window close does not also queue thousands of tasks for the pollers to fetch back.
  const eagerClient = new Client({ connection: d.connection, namespace: d.namespace });
  const activities = createActivities({
    database: d.database,
    catalog: d.catalog,
    time: d.time,
    marketplaces: d.marketplaces,
    log: d.log,
    startRecordWorkflow: (s) => startRecordWorkflow({ client: eagerClient, taskQueue: d.taskQueue, eager: true }, s),
  });
  const usageSource = d.usageSource ?? prometheusSourceFromEnv();
  const usagePull = usageSource ? createUsagePullActivities({ database: d.database, catalog: d.catalog, time: d.time, source: usageSource, log: d.log }) : {};
  return Worker.create({
    connection: d.connection,
    namespace: d.namespace,
    taskQueue: d.taskQueue,
    ...(d.workflowBundle ? { workflowBundle: d.workflowBundle } : { workflowsPath: require.resolve('../workflows') }),
    activities: { ...activities, ...usagePull },
    // Sends are local activities that wait on the marketplace (batching, rate limit), holding no
    // database connection meanwhile; many at once is what lets the batcher fill 25-record calls.
    maxConcurrentActivityTaskExecutions: 50,
    maxConcurrentLocalActivityExecutions: 1000,
    maxConcurrentWorkflowTaskExecutions: 100,
    maxCachedWorkflows: 2000,
    shutdownGraceTime: '10 seconds',
  });
}

/**
 * The hourly sweep Schedule, created (or updated to the current hour length) at worker start:
 * it fires when each hour's window closes (the end of the hour plus grace, plus a moment so that
 * the run's own clock is past the close). Idempotent: several workers starting together all end
 * with one schedule.
 */
export async function ensureSweepSchedule(client: Client, taskQueue: string, time: TimeSettings): Promise<void> {
  // Schedules keep whole seconds (a 780 ms offset fires at 0 ms, a whole hour early for the
  // close it is meant for): round the offset up, so a run is never before its window's close.
  const offset = Math.ceil((time.hourMs * time.graceHours + Math.min(1000, time.hourMs / 100)) / 1000) * 1000;
  const spec = { intervals: [{ every: time.hourMs, offset: offset % time.hourMs }] };
  const scheduleId = sweepScheduleId(taskQueue);
  try {
    await client.schedule.create({
      scheduleId,
      spec,
      action: { type: 'startWorkflow', workflowType: WORKFLOW_TYPE.sweep, taskQueue, args: [] },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: Math.max(time.hourMs, 60_000) },
    });
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(scheduleId).update((prev) => ({ ...prev, spec, action: { ...prev.action, type: 'startWorkflow', workflowType: WORKFLOW_TYPE.sweep, taskQueue, args: [] } }));
  }
}

/**
 * The worker's two connections, from the same settings: native for polling and for the hour
 * close's eager starts (createRemittanceWorker), a client Connection for schedules and signals.
 */
export async function connectTemporal(cfg: Pick<RemitConfig, 'temporal'>) {
  const connection = await connectNativeConnection(cfg.temporal);
  const c = await connectClient(cfg.temporal).catch(async (err: unknown) => {
    await connection.close();
    throw err;
  });
  return { connection, client: c.client, close: async () => { await c.close(); await connection.close(); } };
}
