// Pieces shared by `npm start` (scripts/stack.ts) and `npm run cluster` (scripts/cluster.ts):
// port picking, readiness probes, the tokens, and the marketplace and usage-source emulators
// run under the supervisor.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { writePrivateFile } from './private-file';
import net from 'node:net';
import path from 'node:path';
import type { Supervisor } from './supervisor';

export const ROOT = path.resolve(__dirname, '..', '..');
export const TSX = ['--import', 'tsx'];

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer().once('error', () => resolve(false)).listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** `preferred` when free on 127.0.0.1, else one the OS picks. */
export async function pickPort(preferred: number): Promise<number> {
  if (await portFree(preferred)) return preferred;
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export async function httpReady(url: string): Promise<void> {
  const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
  if (r.status >= 500) throw new Error(`${url} answered ${r.status}`);
}

export async function tcpReady(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.end();
      resolve();
    });
    s.once('error', reject);
  });
}

/** The ingestion and operator tokens: from the environment, else kept in `<stateDir>/tokens.json` (0600), else new. */
export function tokens(stateDir: string): { ingest: string; operator: string } {
  const file = path.join(stateDir, 'tokens.json');
  const saved = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { ingest: string; operator: string }) : undefined;
  const t = {
    ingest: process.env.REMIT_INGEST_TOKEN || saved?.ingest || `ingest-${randomBytes(12).toString('hex')}`,
    operator: process.env.REMIT_OPERATOR_TOKEN || saved?.operator || `operator-${randomBytes(12).toString('hex')}`,
  };
  writePrivateFile(file, JSON.stringify(t, null, 2));
  return t;
}

export type Emulators = Record<string, { url: string; admin: string }>;

/**
 * The AWS, Azure + Entra and Prometheus emulators, each unless a real endpoint is configured;
 * adds to `serviceEnv` what the API and workers need to reach them.
 */
export async function startEmulators(sup: Supervisor, stateDir: string, serviceEnv: NodeJS.ProcessEnv, say: (m: string) => void): Promise<Emulators> {
  const env = process.env;
  const emulators: Emulators = {};
  if (!env.AWS_METERING_ENDPOINT) {
    const port = await pickPort(4566);
    const url = `http://127.0.0.1:${port}`;
    say(`Starting the AWS Marketplace Metering emulator on ${url} ...`);
    await sup.start({
      name: 'aws-emulator',
      command: process.execPath,
      args: [...TSX, path.join(ROOT, 'scripts', 'emulators', 'aws-main.ts')],
      env: { ...serviceEnv, REMIT_EMULATOR_PORT: String(port) },
      ready: () => httpReady(`${url}/_emulator/records`),
    });
    emulators.aws = { url, admin: `${url}/_emulator` };
    serviceEnv.AWS_METERING_ENDPOINT = url;
    serviceEnv.AWS_ACCESS_KEY_ID = env.AWS_ACCESS_KEY_ID || 'local-emulator';
    serviceEnv.AWS_SECRET_ACCESS_KEY = env.AWS_SECRET_ACCESS_KEY || 'local-emulator-secret';
  }
  if (!env.AZURE_METERING_ENDPOINT) {
    const azurePort = await pickPort(4567);
    const entraPort = await pickPort(4568);
    const url = `https://127.0.0.1:${azurePort}`;
    const entra = `https://127.0.0.1:${entraPort}`;
    const secret = env.AZURE_CLIENT_SECRET || `local-${randomBytes(8).toString('hex')}`;
    say(`Starting the Azure Marketplace Metering emulator on ${url} and the Entra emulator on ${entra} ...`);
    const certDir = path.join(stateDir, 'certs');
    await sup.start({
      name: 'azure-emulator',
      command: process.execPath,
      args: [...TSX, path.join(ROOT, 'scripts', 'emulators', 'azure-main.ts')],
      env: { ...serviceEnv, REMIT_AZURE_EMULATOR_PORT: String(azurePort), REMIT_ENTRA_EMULATOR_PORT: String(entraPort), REMIT_CERT_DIR: certDir, AZURE_CLIENT_SECRET: secret, AZURE_TENANT_ID: env.AZURE_TENANT_ID || 'remit-tenant', AZURE_CLIENT_ID: env.AZURE_CLIENT_ID || 'remit-client' },
      ready: () => tcpReady(azurePort),
    });
    emulators.azure = { url, admin: `${url}/_emulator` };
    emulators.entra = { url: entra, admin: `${entra}` };
    Object.assign(serviceEnv, { AZURE_METERING_ENDPOINT: url, AZURE_AUTHORITY_HOST: entra, AZURE_CLIENT_SECRET: secret, REMIT_EXTRA_CA_CERT_FILE: path.join(certDir, 'ca.pem') });
  }
  if (!env.REMIT_PROMETHEUS_URL) {
    const port = await pickPort(9090);
    const url = `http://127.0.0.1:${port}`;
    say(`Starting the Prometheus emulator (the usage source the hourly pull reads) on ${url} ...`);
    await sup.start({
      name: 'prometheus-emulator',
      command: process.execPath,
      args: [...TSX, path.join(ROOT, 'scripts', 'emulators', 'prometheus-main.ts')],
      env: { ...serviceEnv, REMIT_PROMETHEUS_EMULATOR_PORT: String(port) },
      ready: () => httpReady(`${url}/_emulator/queries`),
    });
    emulators.prometheus = { url, admin: `${url}/_emulator` };
    serviceEnv.REMIT_PROMETHEUS_URL = url;
  }
  return emulators;
}
