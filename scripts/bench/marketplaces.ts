// Marketplace throughput benchmarks against the emulators, over real HTTP with the real clients.
// `npm run bench` collects the exported functions; running this file alone prints one JSON line.

import { startAwsEmulator } from '../emulators/aws';
import { createAwsMarketplace, awsGroupKey, type AwsMarketplaceClient } from '../../marketplaces/aws';
import { createBatcher, createInProcessRateLimiter } from '../../marketplaces/batcher';
import type { UsageRecord } from '../../marketplaces/types';
import { PRODUCTION_HOUR_MS, hourStart } from '../../domain/time';

export interface AwsBatchingBench {
  records: number;
  /** BatchMeterUsage calls the batched run needed. */
  calls: number;
  recordsPerCall: number;
  /** Batched run, wall clock from first submission to last outcome (includes the first burst). */
  recordsPerSecond: number;
  /** One record per call, same limiter, over `baselineRecords` records. */
  baselineRecordsPerSecond: number;
  baselineRecords: number;
  baselineCalls: number;
  /**
   * Steady state, past the first second's burst of `rateLimitPerSecond` calls:
   * (calls after the burst) / (their arrival span) x records per call.
   */
  sustainedRecordsPerSecond: number;
  baselineSustainedRecordsPerSecond: number;
  elapsedMs: number;
  baselineElapsedMs: number;
  rateLimitPerSecond: number;
  /** What AWS allows at most: 25 records x 10 calls a second. */
  ceilingRecordsPerSecond: number;
}

const REGION = 'us-east-1';
const DIMENSIONS = ['four_vcpu_hour', 'control_plane', 'managed_node', 'infrastructure', 'vCPU_hours'];

function makeRecords(n: number, offset: number, timestampMs: number): UsageRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const k = offset + i;
    return {
      recordId: `bench-${k}`,
      customer: { marketplace: 'aws', productCode: 'bench-product', customerAwsAccountId: String(200_000_000_000 + Math.floor(k / DIMENSIONS.length)) },
      dimension: DIMENSIONS[k % DIMENSIONS.length] as string,
      quantity: 1 + (k % 100),
      timestampMs,
    };
  });
}

async function run(client: AwsMarketplaceClient, records: UsageRecord[], maxBatchSize: number, rateLimitPerSecond: number): Promise<number> {
  const batcher = createBatcher({
    client,
    groupKey: (r) => awsGroupKey(r, REGION),
    lingerMs: 20,
    rateLimiter: createInProcessRateLimiter({ callsPerSecond: rateLimitPerSecond }),
    isExpired: (r) => client.isExpired(r),
    maxBatchSize,
  });
  const started = performance.now();
  const outcomes = await Promise.all(records.map((r) => batcher.submit(r)));
  const elapsed = performance.now() - started;
  const failed = outcomes.filter((o) => o.kind !== 'accepted');
  if (failed.length > 0) throw new Error(`${failed.length} records were not accepted, e.g. ${JSON.stringify(failed[0])}`);
  return elapsed;
}

/** Calls a second after the initial burst, from the emulator's arrival times. */
function sustainedCallsPerSecond(arrivals: number[], burst: number): number {
  const at = [...arrivals].sort((a, b) => a - b);
  if (at.length <= burst) return NaN;
  const spanMs = (at[at.length - 1] as number) - (at[0] as number);
  return spanMs > 0 ? ((at.length - burst) / spanMs) * 1000 : NaN;
}

const round = (v: number, digits = 1): number => Math.round(v * 10 ** digits) / 10 ** digits;

/**
 * Records a second through the batcher against the AWS emulator's 10 calls/s limit, compared
 * with one record per call. The baseline runs on fewer records (default 50): at 10 records a
 * second, 500 would take most of a minute to say the same thing.
 */
export async function benchAwsBatching(opts: { records?: number; baselineRecords?: number; rateLimitPerSecond?: number } = {}): Promise<AwsBatchingBench> {
  const n = opts.records ?? 500;
  const baselineN = opts.baselineRecords ?? Math.min(n, 50);
  const rate = opts.rateLimitPerSecond ?? 10;
  const hourMs = PRODUCTION_HOUR_MS;
  const emu = await startAwsEmulator({ hourMs, acceptanceHours: 6, rateLimitPerSecond: rate, dimensions: DIMENSIONS });
  const client = createAwsMarketplace({ endpoint: emu.url, region: REGION, credentials: { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench' }, acceptanceHours: 6, hourMs });
  try {
    const t = hourStart(Date.now(), hourMs);
    const elapsedMs = await run(client, makeRecords(n, 0, t), client.maxBatchSize, rate);
    const batchedCalls = emu.calls();
    emu.reset();
    const baselineElapsedMs = await run(client, makeRecords(baselineN, n, t), 1, rate);
    const baselineCalls = emu.calls();
    const throttled = [...batchedCalls, ...baselineCalls].filter((c) => c.outcome !== 'ok').length;
    if (throttled > 0) throw new Error(`${throttled} calls were refused by the emulator`);
    const recordsPerCall = n / batchedCalls.length;
    return {
      records: n,
      calls: batchedCalls.length,
      recordsPerCall: round(recordsPerCall, 2),
      recordsPerSecond: round((n / elapsedMs) * 1000),
      baselineRecordsPerSecond: round((baselineN / baselineElapsedMs) * 1000),
      baselineRecords: baselineN,
      baselineCalls: baselineCalls.length,
      sustainedRecordsPerSecond: round(sustainedCallsPerSecond(batchedCalls.map((c) => c.at), rate) * recordsPerCall),
      baselineSustainedRecordsPerSecond: round(sustainedCallsPerSecond(baselineCalls.map((c) => c.at), rate)),
      elapsedMs: Math.round(elapsedMs),
      baselineElapsedMs: Math.round(baselineElapsedMs),
      rateLimitPerSecond: rate,
      ceilingRecordsPerSecond: rate * client.maxBatchSize,
    };
  } finally {
    client.close();
    await emu.close();
  }
}

if (require.main === module) {
  benchAwsBatching().then(
    (r) => console.log(JSON.stringify({ awsBatching: r })),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
