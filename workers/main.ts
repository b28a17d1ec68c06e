// `node --import tsx workers/main.ts`: one remittance worker process (the local stack runs it;
// production runs as many as needed). Applies migrations, ensures the sweep schedule, runs.

import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import { loadConfig } from '../config/env';
import { openDatabase } from '../db/client';
import { migrate } from '../db/migrate';
import { loadCatalog } from '../config/catalog';
import { createLogger } from '../lib/log';
import { describeTemporal } from '../lib/temporal-connection';
import { untilReady } from '../lib/retry';
import { createMarketplaceGateway } from '../marketplaces';
import { connectTemporal, createRemittanceWorker, ensureSweepSchedule } from './worker';
import { deleteUsagePullSchedule, ensureUsagePullSchedule } from './usage-pull-schedule';

/**
 * Temporal's runtime: its logs (workflow, activity, SDK and core) through our pino logger, and
 * its metrics (temporal_activity_execution_failed, temporal_workflow_task_schedule_to_start_latency,
 * ...) on a Prometheus endpoint when REMIT_WORKER_METRICS_PORT is set, on the address
 * REMIT_WORKER_METRICS_HOST (default 127.0.0.1, loopback only; 0.0.0.0 or the pod's address so
 * that a Prometheus on another host can scrape it).
 */
function installRuntime(log: ReturnType<typeof createLogger>, metricsPort: string | undefined, metricsHost = '127.0.0.1') {
  const level = (log.level === 'debug' || log.level === 'trace' ? 'DEBUG' : log.level === 'warn' ? 'WARN' : log.level === 'error' ? 'ERROR' : 'INFO') as LogLevel;
  const temporalLog = log.child({ component: 'temporal' });
  Runtime.install({
    logger: new DefaultLogger(level, (e) => {
      const fn = e.level === 'ERROR' ? 'error' : e.level === 'WARN' ? 'warn' : e.level === 'INFO' ? 'info' : 'debug';
      temporalLog[fn](e.meta ?? {}, e.message);
    }),
    // Loopback unless REMIT_WORKER_METRICS_HOST says otherwise (a container: 0.0.0.0, scraped on its private network).
    ...(metricsPort ? { telemetryOptions: { metrics: { prometheus: { bindAddress: `${metricsHost.includes(':') ? `[${metricsHost}]` : metricsHost}:${metricsPort}` } } } } : {}),
  });
}

async function main() {
  const cfg = loadConfig();
  const log = createLogger('worker', cfg.logLevel);
  installRuntime(log, process.env.REMIT_WORKER_METRICS_PORT, process.env.REMIT_WORKER_METRICS_HOST || undefined);
  if (!cfg.databaseUrl) throw new Error('DATABASE_URL is required for the worker (the local stack sets it)');
  const databaseUrl = cfg.databaseUrl;
  await untilReady('the database', () => migrate(databaseUrl), log);
  const database = openDatabase(cfg.databaseUrl, { applicationName: 'remit-worker', max: 60 });
  const catalog = loadCatalog(cfg.catalogPath);
  const time = cfg.time;
  const temporal = await untilReady(`Temporal at ${describeTemporal(cfg.temporal)}`, () => connectTemporal(cfg), log);
  const marketplaces = await createMarketplaceGateway(cfg, log, { database });
  // A bundle built at image build time (scripts/bundle-workflows.ts); unset: bundle workflows/ now.
  const bundlePath = process.env.REMIT_WORKFLOW_BUNDLE_PATH;
  const workflowBundle = bundlePath ? { codePath: bundlePath } : undefined;
  const worker = await createRemittanceWorker({ ...temporal, namespace: cfg.temporalNamespace, taskQueue: cfg.taskQueue, database, catalog, time, marketplaces, log, workflowBundle });
  await untilReady('Temporal schedules', () => ensureSweepSchedule(temporal.client, cfg.taskQueue, time), log);
  // Pull usage from Prometheus hourly when configured; without it, a schedule left from an
  // earlier configuration would start runs no worker can serve.
  if (process.env.REMIT_PROMETHEUS_URL) await untilReady('the usage pull schedule', () => ensureUsagePullSchedule(temporal.client, cfg.taskQueue, time), log);
  else await deleteUsagePullSchedule(temporal.client, cfg.taskQueue).catch(() => undefined);
  log.info({ taskQueue: cfg.taskQueue, temporal: describeTemporal(cfg.temporal), hourSeconds: time.hourMs / 1000 }, 'worker started');
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => worker.shutdown());
  await worker.run();
  await marketplaces.close();
  await temporal.close();
  await database.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
