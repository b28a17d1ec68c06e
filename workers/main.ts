// `node --import tsx workers/main.ts`: one remittance worker process (the local stack runs it;
// production runs as many as needed). Applies migrations, ensures the sweep schedule, runs.

import { loadConfig, timeSettings } from '../config/env';
import { openDatabase } from '../db/client';
import { migrate } from '../db/migrate';
import { loadCatalog } from '../domain/catalog';
import { createLogger } from '../lib/log';
import { untilReady } from '../lib/retry';
import { createMarketplaceGateway } from '../marketplaces';
import { connectTemporal, createRemittanceWorker, ensureSweepSchedule } from './worker';

async function main() {
  const cfg = loadConfig();
  const log = createLogger('worker', cfg.logLevel);
  if (!cfg.databaseUrl) throw new Error('DATABASE_URL is required for the worker (the local stack sets it)');
  const databaseUrl = cfg.databaseUrl;
  await untilReady('the database', () => migrate(databaseUrl), log);
  const database = openDatabase(cfg.databaseUrl, { applicationName: 'remit-worker', max: 60 });
  const catalog = loadCatalog(cfg.catalogPath);
  const time = timeSettings(cfg.time);
  const temporal = await untilReady('Temporal', () => connectTemporal(cfg), log);
  const marketplaces = await createMarketplaceGateway(cfg, log);
  const worker = await createRemittanceWorker({ ...temporal, namespace: cfg.temporalNamespace, taskQueue: cfg.taskQueue, database, catalog, time, marketplaces, log });
  await untilReady('Temporal schedules', () => ensureSweepSchedule(temporal.client, cfg.taskQueue, time), log);
  log.info({ taskQueue: cfg.taskQueue, temporal: cfg.temporalAddress, hourSeconds: time.hourMs / 1000 }, 'worker started');
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
