// Azure batching benchmark: records a second through the batcher into batchUsageEvent calls of up
// to 25 events, against one event per call, over real HTTPS with real Entra tokens (emulators).
// Azure documents no rate limit for metering, so this measures what batching saves in round
// trips, TLS and token work. Running this file alone prints one JSON line.

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { startAzureEmulator, type AzureEmulator } from '../emulators/azure';
import { ensureLocalCerts } from '../emulators/certs';
import { startEntraEmulator } from '../emulators/entra';
import { createAzureMarketplace, type AzureMarketplaceClient } from '../../marketplaces/azure';
import { createBatcher, type RateLimiter } from '../../marketplaces/batcher';
import type { UsageRecord } from '../../marketplaces/types';
import { PRODUCTION_HOUR_MS, hourStart } from '../../domain/time';

export interface AzureBatchingBench {
  records: number;
  /** batchUsageEvent calls the batched run needed. */
  calls: number;
  recordsPerCall: number;
  /** Batched run, wall clock from first submission to last outcome. */
  recordsPerSecond: number;
  /** Same records, one event per call. */
  baselineRecordsPerSecond: number;
  baselineCalls: number;
  elapsedMs: number;
  baselineElapsedMs: number;
}

const TENANT = 'bench-tenant';
const APP = { clientId: 'bench-client', clientSecret: 'bench-secret' };
const DIMENSIONS = ['four_vcpu_hour', 'control_plane'];
// Azure has no documented metering rate limit: nothing to wait for.
const unlimited: RateLimiter = { acquire: async () => undefined };

function makeRecords(n: number, offset: number, timestampMs: number): UsageRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const k = offset + i;
    return {
      recordId: `bench-${k}`,
      customer: { marketplace: 'azure', resourceId: `bench-resource-${Math.floor(k / DIMENSIONS.length)}`, planId: 'bench-plan' },
      dimension: DIMENSIONS[k % DIMENSIONS.length] as string,
      quantity: 1 + (k % 100),
      timestampMs,
    };
  });
}

async function run(client: AzureMarketplaceClient, emu: AzureEmulator, records: UsageRecord[], maxBatchSize: number): Promise<{ elapsedMs: number; calls: number }> {
  emu.reset();
  const batcher = createBatcher({ client, groupKey: () => 'azure', lingerMs: 20, rateLimiter: unlimited, isExpired: (r) => client.isExpired(r), maxBatchSize });
  const started = performance.now();
  const outcomes = await Promise.all(records.map((r) => batcher.submit(r)));
  const elapsedMs = performance.now() - started;
  const failed = outcomes.filter((o) => o.kind !== 'accepted');
  if (failed.length > 0) throw new Error(`${failed.length} events were not accepted, e.g. ${JSON.stringify(failed[0])}`);
  if (emu.records().length !== records.length) throw new Error(`the emulator holds ${emu.records().length} events for ${records.length} sent`);
  return { elapsedMs, calls: emu.calls().filter((c) => c.operation === 'batchUsageEvent').length };
}

const round = (v: number, digits = 1): number => Math.round(v * 10 ** digits) / 10 ** digits;

export async function benchAzureBatching(opts: { records?: number } = {}): Promise<AzureBatchingBench> {
  const n = opts.records ?? 1000;
  const hourMs = PRODUCTION_HOUR_MS;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'remit-bench-certs-'));
  const certs = await ensureLocalCerts(dir);
  const entra = await startEntraEmulator({ certPem: certs.certPem, keyPem: certs.keyPem, tenantId: TENANT, clients: [APP] });
  const emu = await startAzureEmulator({ certPem: certs.certPem, keyPem: certs.keyPem, hourMs, acceptanceHours: 24, tenantId: TENANT, dimensions: DIMENSIONS });
  const client = createAzureMarketplace({ endpoint: emu.url, authorityHost: entra.url, tenantId: TENANT, ...APP, caPem: certs.caPem, hourMs, acceptanceHours: 24 });
  try {
    const t = hourStart(Date.now(), hourMs) - hourMs;
    // Warm up the token, the connection pool and the JIT so neither run pays for them alone.
    await run(client, emu, makeRecords(250, 10 * n, t), client.maxBatchSize);
    await run(client, emu, makeRecords(100, 11 * n, t), 1);
    const batched = await run(client, emu, makeRecords(n, 0, t), client.maxBatchSize);
    const baseline = await run(client, emu, makeRecords(n, n, t), 1);
    return {
      records: n,
      calls: batched.calls,
      recordsPerCall: round(n / batched.calls, 2),
      recordsPerSecond: round((n / batched.elapsedMs) * 1000),
      baselineRecordsPerSecond: round((n / baseline.elapsedMs) * 1000),
      baselineCalls: baseline.calls,
      elapsedMs: Math.round(batched.elapsedMs),
      baselineElapsedMs: Math.round(baseline.elapsedMs),
    };
  } finally {
    await client.close();
    await emu.close();
    await entra.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  benchAzureBatching().then(
    (r) => console.log(JSON.stringify({ azureBatching: r })),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
