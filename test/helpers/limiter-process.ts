// One "worker process" for the cross-process rate-limit test (test/integration/marketplace-scale):
// its own database pool, AWS client, batcher and PostgreSQL rate limiter, exactly what a worker
// builds; only the database and the marketplace are shared with the other process.
//
// Input: one JSON line in REMIT_LIMITER_JOB ({ databaseUrl, endpoint, accountStart, count, hourMs,
// timestampMs, seller }). It prints `ready`, waits for a line on stdin (so both processes send at
// the same moment), submits its records and prints one JSON line: the outcome kinds.

import { createInterface } from 'node:readline';
import { openDatabase } from '../../db/client';
import { createPgRateLimiter } from '../../marketplaces/rate-limiter';
import { awsGroupKey, createAwsMarketplace } from '../../marketplaces/aws';
import { createBatcher } from '../../marketplaces/batcher';
import type { UsageRecord } from '../../marketplaces/types';

interface Job {
  databaseUrl: string;
  endpoint: string;
  accountStart: number;
  count: number;
  hourMs: number;
  timestampMs: number;
  seller: string;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.env.REMIT_LIMITER_JOB ?? '') as Job;
  const db = openDatabase(job.databaseUrl, { max: 4 });
  const client = createAwsMarketplace({ endpoint: job.endpoint, region: 'us-east-1', acceptanceHours: 6, hourMs: job.hourMs, credentials: { accessKeyId: job.seller, secretAccessKey: 'x' } });
  // Calls of 2 records on purpose: many calls, so the shared limit is what paces them.
  const batcher = createBatcher({
    client,
    groupKey: (r) => awsGroupKey(r, 'us-east-1'),
    rateKey: () => `${job.seller}|us-east-1`,
    lingerMs: 5,
    maxBatchSize: 2,
    rateLimiter: createPgRateLimiter(db, { callsPerSecond: 10 }),
    isExpired: () => false,
  });
  const records: UsageRecord[] = Array.from({ length: job.count }, (_, i) => ({
    recordId: `p${process.pid}-${i}`,
    customer: { marketplace: 'aws', productCode: 'shared', customerAwsAccountId: String(job.accountStart + i) },
    dimension: 'vCPU_hours',
    quantity: 1,
    timestampMs: job.timestampMs,
  }));
  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin });
  await new Promise<void>((resolve) => lines.once('line', () => resolve()));
  lines.close();
  const outcomes = await Promise.all(records.map((r) => batcher.submit(r)));
  process.stdout.write(`${JSON.stringify(outcomes.map((o) => o.kind))}\n`);
  client.close();
  await db.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
