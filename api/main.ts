// `node --import tsx api/main.ts`: the HTTP API process. Applies migrations at start-up.

import { loadConfig } from '../config/env';
import { openDatabase } from '../db/client';
import { migrate } from '../db/migrate';
import { loadCatalog } from '../config/catalog';
import { createLogger } from '../lib/log';
import { connectClient, describeTemporal } from '../lib/temporal-connection';
import { untilReady } from '../lib/retry';
import { buildApi } from './app';

async function main() {
  const cfg = loadConfig();
  const log = createLogger('api', cfg.logLevel);
  if (!cfg.databaseUrl) throw new Error('DATABASE_URL is required for the API (the local stack sets it)');
  if (!cfg.ingestToken || !cfg.operatorToken) throw new Error('REMIT_INGEST_TOKEN and REMIT_OPERATOR_TOKEN are required');
  if (cfg.ingestToken === cfg.operatorToken) throw new Error('REMIT_INGEST_TOKEN and REMIT_OPERATOR_TOKEN must differ');
  if (cfg.contractsToken === cfg.operatorToken) throw new Error('REMIT_CONTRACTS_TOKEN and REMIT_OPERATOR_TOKEN must differ');
  if (cfg.metricsToken && [cfg.ingestToken, cfg.operatorToken, cfg.contractsToken].includes(cfg.metricsToken)) throw new Error('REMIT_METRICS_TOKEN must differ from the other tokens: whoever scrapes metrics must not be able to change anything');
  const databaseUrl = cfg.databaseUrl;
  await untilReady('the database', () => migrate(databaseUrl), log);
  const database = openDatabase(cfg.databaseUrl, { applicationName: 'remit-api', max: 20 });
  const { client, connection } = await untilReady(`Temporal at ${describeTemporal(cfg.temporal)}`, () => connectClient(cfg.temporal), log);
  const app = await buildApi({
    database,
    catalog: loadCatalog(cfg.catalogPath),
    time: cfg.time,
    temporal: { client, taskQueue: cfg.taskQueue },
    tokens: { ingest: cfg.ingestToken, operator: cfg.operatorToken, contracts: cfg.contractsToken, metrics: cfg.metricsToken },
    operationLimits: { maxHours: cfg.operationMaxHours, maxIds: cfg.operationMaxIds },
    log,
  });
  const address = await app.listen({ port: cfg.apiPort, host: cfg.apiHost });
  log.info({ address }, 'API listening');
  const stop = async () => {
    await app.close();
    await connection.close();
    await database.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
