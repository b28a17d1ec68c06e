// Configuration from the environment, with production defaults. A variable that is set wins
// over every default, including the local stack's. Documented in README.md and .env.example.

import type { Marketplace } from '../domain/key';
import { PRODUCTION_HOUR_MS } from '../domain/time';
import { DEFAULT_MAX_USAGE_AGE_DAYS } from '../domain/tally';
import { DEFAULT_PARK_AFTER_REJECTIONS } from '../domain/parking';
import { temporalConnectionFromEnv, type TemporalConnectionSettings } from './temporal';
import { DEFAULT_TASK_QUEUE } from '../workflows/definitions';

/** The time settings, one shape for the ledger, the workers, the API, the gateway and the emulators. */
export interface TimeSettings {
  /** Length of one "hour" in ms (REMIT_HOUR_SECONDS x 1000). Scales every window below. */
  hourMs: number;
  /** Grace after the end of a remittance hour before its window closes, in hours. */
  graceHours: number;
  /** Per marketplace: records older than this many hours are rejected (REMIT_AWS_ / REMIT_AZURE_ACCEPTANCE_HOURS). */
  acceptanceHours: Record<Marketplace, number>;
  /** Tallies older than this many (real, unscaled) days are refused; domain/tally.ts's default when absent. */
  maxUsageAgeDays?: number;
}

export interface RemitConfig {
  databaseUrl: string | undefined;
  temporalAddress: string;
  temporalNamespace: string;
  /** Everything needed to connect (address, namespace, TLS, API key): lib/temporal-connection.ts. */
  temporal: TemporalConnectionSettings;
  taskQueue: string;
  apiPort: number;
  apiHost: string;
  ingestToken: string | undefined;
  operatorToken: string | undefined;
  /** Token for PUT /v1/contracts; unset: the ingest token has that role. */
  contractsToken: string | undefined;
  /** When set, GET /metrics requires it (Prometheus' scrape `authorization`). */
  metricsToken: string | undefined;
  /** Bounds of one reset / recalculate / retry request unless it says `force: true`. */
  operationMaxHours: number;
  operationMaxIds: number;
  awsMeteringEndpoint: string | undefined;
  awsRegion: string;
  azureMeteringEndpoint: string | undefined;
  azureAuthorityHost: string | undefined;
  azureTenantId: string;
  azureClientId: string;
  azureClientSecret: string | undefined;
  /** PEM file of a CA to trust for the Entra/Azure emulators (local stack only). */
  extraCaCertFile: string | undefined;
  catalogPath: string | undefined;
  /** Terminal rejections in a row of the same kind that park a key; 0 never parks (db/parking.ts). */
  parkAfterRejections: number;
  logLevel: string;
  time: TimeSettings;
}

function num(env: NodeJS.ProcessEnv, name: string, def: number, opts: { min?: number; integer?: boolean } = {}): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const v = Number(raw);
  if (!Number.isFinite(v) || (opts.integer && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min)) {
    throw new Error(`${name} must be a${opts.integer ? 'n integer' : ' number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}, got ${JSON.stringify(raw)}`);
  }
  return v;
}

export function timeSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): TimeSettings {
  const hourSeconds = num(env, 'REMIT_HOUR_SECONDS', PRODUCTION_HOUR_MS / 1000, { min: 1 });
  return {
    hourMs: Math.round(hourSeconds * 1000),
    graceHours: num(env, 'REMIT_GRACE_HOURS', 1 / 6, { min: 0 }),
    acceptanceHours: { aws: num(env, 'REMIT_AWS_ACCEPTANCE_HOURS', 6, { min: 1 }), azure: num(env, 'REMIT_AZURE_ACCEPTANCE_HOURS', 24, { min: 1 }) },
    maxUsageAgeDays: num(env, 'REMIT_MAX_USAGE_AGE_DAYS', DEFAULT_MAX_USAGE_AGE_DAYS, { min: 1 }),
  };
}

/** REMIT_PARK_AFTER_REJECTIONS, checked by loadConfig at start-up and read by db/parking.ts. */
export function parkAfterRejectionsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  return num(env, 'REMIT_PARK_AFTER_REJECTIONS', DEFAULT_PARK_AFTER_REJECTIONS, { min: 0, integer: true });
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): RemitConfig {
  const temporal = temporalConnectionFromEnv(env);
  return {
    databaseUrl: env.DATABASE_URL || undefined,
    temporalAddress: temporal.address,
    temporalNamespace: temporal.namespace,
    temporal,
    taskQueue: env.REMIT_TASK_QUEUE || DEFAULT_TASK_QUEUE,
    apiPort: num(env, 'REMIT_API_PORT', 8080, { min: 0, integer: true }),
    apiHost: env.REMIT_API_HOST || '127.0.0.1',
    ingestToken: env.REMIT_INGEST_TOKEN || undefined,
    operatorToken: env.REMIT_OPERATOR_TOKEN || undefined,
    contractsToken: env.REMIT_CONTRACTS_TOKEN || undefined,
    metricsToken: env.REMIT_METRICS_TOKEN || undefined,
    operationMaxHours: num(env, 'REMIT_OPERATION_MAX_HOURS', 168, { min: 1 }),
    operationMaxIds: num(env, 'REMIT_OPERATION_MAX_IDS', 100, { min: 1, integer: true }),
    awsMeteringEndpoint: env.AWS_METERING_ENDPOINT || undefined,
    awsRegion: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    azureMeteringEndpoint: env.AZURE_METERING_ENDPOINT || undefined,
    azureAuthorityHost: env.AZURE_AUTHORITY_HOST || undefined,
    azureTenantId: env.AZURE_TENANT_ID || 'remit-tenant',
    azureClientId: env.AZURE_CLIENT_ID || 'remit-client',
    azureClientSecret: env.AZURE_CLIENT_SECRET || undefined,
    extraCaCertFile: env.REMIT_EXTRA_CA_CERT_FILE || undefined,
    catalogPath: env.REMIT_CATALOG_PATH || undefined,
    parkAfterRejections: parkAfterRejectionsFromEnv(env),
    logLevel: env.LOG_LEVEL || 'info',
    time: timeSettingsFromEnv(env),
  };
}
