// The production topology on one machine: a PostgreSQL server, the real Temporal server on it
// (ops/temporal/config.yaml, SQL advanced visibility, more than one history shard), remit's
// namespace and search attributes, the emulators, N remit workers and N remit API processes, all
// under the supervisor (a part that dies is restarted). `npm run cluster` keeps it running; the
// cluster proof drives it.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { temporalConnectionFromEnv, type TemporalConnectionSettings } from '../../config/temporal';
import { startPostgres, type PostgresServer } from './postgres';
import { freePort, type Log } from './proc';
import { httpReady, pickPort, ROOT, startEmulators, tokens, TSX, type Emulators } from './services';
import { Supervisor } from './supervisor';
import { ensureTemporalUi, temporalUiCommand } from './temporal-ui';
import { applyTemporalSchema, ensureTemporalServer, frontendAnswers, makeTemporalCerts, prepareNamespace, temporalServerCommand } from './temporal-server';

export interface ClusterOptions {
  stateDir: string;
  workers?: number;
  apis?: number;
  numHistoryShards?: number;
  /** Serve the frontend with mutual TLS (a local CA made under stateDir) and connect remit with it. */
  tls?: boolean;
  hourSeconds?: string;
  namespace?: string;
  /** Throwaway PostgreSQL (tuned for speed, removed at stop) instead of one kept under stateDir. */
  ephemeral?: boolean;
  /**
   * False: only PostgreSQL and the Temporal server (no emulators, workers or APIs), for a harness
   * that runs remit itself (`npm run chaos -- --cluster`). Default true.
   */
  remit?: boolean;
  /** The Temporal Web UI (scripts/lib/temporal-ui.ts, built into .tools/ when missing). Default false. */
  ui?: boolean;
  log: Log;
}

export interface Cluster {
  apis: string[];
  temporal: TemporalConnectionSettings;
  /** Environment the remit processes run with (and a CLI on this cluster needs). */
  serviceEnv: NodeJS.ProcessEnv;
  databaseUrl: string;
  emulators: Emulators;
  tokens: { ingest: string; operator: string };
  supervisor: Supervisor;
  postgres: PostgresServer;
  stackFile: string;
  /** The Temporal Web UI's URL, when it runs. */
  webUi?: string;
  /** Each worker's SDK metrics endpoint (worker-1 first). */
  workerMetrics: string[];
  /** Supervised process ids by name (temporal-server, worker-1, api-1, ...). */
  pids(): Record<string, number | undefined>;
  stop(): Promise<void>;
}

async function ensureDatabase(adminUrl: string, name: string): Promise<string> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    const exists = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount === 0) await c.query(`CREATE DATABASE "${name}"`);
  } finally {
    await c.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * The Web UI against the cluster's frontend, or undefined (with the reason said) when it cannot
 * be built here: the cluster runs without it rather than not at all.
 */
async function startWebUi(sup: Supervisor, stateDir: string, temporal: TemporalConnectionSettings, say: Log): Promise<string | undefined> {
  let binary: string;
  try {
    binary = await ensureTemporalUi(say);
  } catch (err) {
    say(`Temporal Web UI left out: ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
  const port = await pickPort(8233);
  const url = `http://127.0.0.1:${port}`;
  const cmd = temporalUiCommand({ binary, dir: path.join(stateDir, 'temporal-ui'), temporal, port });
  say(`Starting the Temporal Web UI on ${url} ...`);
  await sup.start({ name: 'temporal-ui', command: cmd.command, args: cmd.args, cwd: ROOT, ready: () => httpReady(`${url}/healthz`) });
  return url;
}

export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const say = o.log;
  mkdirSync(o.stateDir, { recursive: true });
  const stackFile = path.join(o.stateDir, 'local-stack.json');
  const state: Record<string, unknown> = { startedAt: new Date().toISOString(), stackPid: process.pid, kind: 'cluster' };
  const sup = new Supervisor(path.join(o.stateDir, 'logs'), say, () => {
    state.pids = sup.pids();
    writeFileSync(stackFile, JSON.stringify(state, null, 2), { mode: 0o600 });
  });
  let postgres: PostgresServer | undefined;
  const stop = async () => {
    await sup.stopAll();
    await postgres?.stop();
  };
  try {
    const binaries = await ensureTemporalServer(say);
    // Durable even when ephemeral: the cluster's chaos crashes it, and the Temporal server's state and
    // the ledger must survive that as in production.
    postgres = await startPostgres({ ...(o.ephemeral ? {} : { dataDir: path.join(o.stateDir, 'pgdata') }), durable: true, log: say });
    const pgUrl = new URL(postgres.url);
    const db = { host: pgUrl.hostname, port: Number(pgUrl.port), user: decodeURIComponent(pgUrl.username) };
    await applyTemporalSchema(binaries.sqlTool, db, say);
    const databaseUrl = await ensureDatabase(postgres.url, 'remit');

    // Temporal server
    const port = await pickPort(7233);
    const metricsPort = await freePort();
    const namespace = o.namespace ?? 'default';
    const temporalEnv: NodeJS.ProcessEnv = { TEMPORAL_ADDRESS: `127.0.0.1:${port}`, TEMPORAL_NAMESPACE: namespace };
    let tls;
    if (o.tls) {
      const certs = await makeTemporalCerts(path.join(o.stateDir, 'temporal-certs'));
      tls = { certFile: certs.serverCertFile, keyFile: certs.serverKeyFile, caFile: certs.caFile, serverName: certs.serverName, clientCaFile: certs.caFile, systemWorkerCertFile: certs.clientCertFile, systemWorkerKeyFile: certs.clientKeyFile };
      Object.assign(temporalEnv, { TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.caFile, TEMPORAL_TLS_SERVER_NAME: certs.serverName, TEMPORAL_TLS_CLIENT_CERT_PATH: certs.clientCertFile, TEMPORAL_TLS_CLIENT_KEY_PATH: certs.clientKeyFile });
    }
    const temporal = temporalConnectionFromEnv(temporalEnv);
    const cmd = await temporalServerCommand({ binaries, db, port, numHistoryShards: o.numHistoryShards ?? 4, tls, metricsAddress: `127.0.0.1:${metricsPort}` });
    say(`Starting the Temporal server (${binaries.server}, ${o.numHistoryShards ?? 4} history shards, PostgreSQL ${db.host}:${db.port}) on 127.0.0.1:${port}${o.tls ? ' with mutual TLS' : ''} ...`);
    await sup.start({ name: 'temporal-server', command: cmd.command, args: cmd.args, env: cmd.env, cwd: ROOT, ready: () => frontendAnswers(temporal) });
    await prepareNamespace(temporal, { log: say });
    const webUi = o.ui ? await startWebUi(sup, o.stateDir, temporal, say) : undefined;

    // Emulators, then the remit processes
    const remit = o.remit ?? true;
    const hourSeconds = o.hourSeconds ?? process.env.REMIT_HOUR_SECONDS ?? '3600';
    const serviceEnv: NodeJS.ProcessEnv = { REMIT_HOUR_SECONDS: hourSeconds };
    const emulators = remit ? await startEmulators(sup, o.stateDir, serviceEnv, say) : {};
    const t = tokens(o.stateDir);
    Object.assign(serviceEnv, temporalEnv, { DATABASE_URL: databaseUrl, REMIT_INGEST_TOKEN: t.ingest, REMIT_OPERATOR_TOKEN: t.operator });
    const workerMetrics: string[] = [];
    for (let i = 1; remit && i <= (o.workers ?? 2); i++) {
      const mport = await freePort();
      say(`Starting remit worker-${i} (SDK metrics on http://127.0.0.1:${mport}/metrics) ...`);
      await sup.start({ name: `worker-${i}`, command: process.execPath, args: [...TSX, path.join(ROOT, 'workers', 'main.ts')], env: { ...serviceEnv, REMIT_WORKER_METRICS_PORT: String(mport) } });
      workerMetrics.push(`http://127.0.0.1:${mport}/metrics`);
    }
    const apis: string[] = [];
    for (let i = 1; remit && i <= (o.apis ?? 2); i++) {
      const aport = await pickPort(8080 + i - 1);
      const url = `http://127.0.0.1:${aport}`;
      say(`Starting remit api-${i} on ${url} ...`);
      await sup.start({ name: `api-${i}`, command: process.execPath, args: [...TSX, path.join(ROOT, 'api', 'main.ts')], env: { ...serviceEnv, REMIT_API_PORT: String(aport) }, ready: () => httpReady(`${url}/healthz`) });
      apis.push(url);
    }
    Object.assign(state, {
      api: apis[0],
      apis,
      temporal: { address: temporal.address, namespace, webUi: webUi ?? null, metrics: `http://127.0.0.1:${metricsPort}/metrics`, tls: temporal.tls ?? null },
      database: databaseUrl,
      emulators,
      tokens: t,
      workerMetrics,
      hourSeconds: Number(hourSeconds),
      logs: path.join(o.stateDir, 'logs'),
      pids: sup.pids(),
    });
    writeFileSync(stackFile, JSON.stringify(state, null, 2), { mode: 0o600 });
    return { apis, temporal, serviceEnv, databaseUrl, emulators, tokens: t, supervisor: sup, postgres, stackFile, webUi, workerMetrics, pids: () => sup.pids(), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
