// The marketplace's limits at scale, through the whole product: 1,000 remittances of one hour
// (1,000 workflows on the real Temporal server, the ledger in PostgreSQL) reach AWS in at most
// 40 calls of up to 25 records, never more than 10 calls in any second, each remittance with its
// own result. And the limit holds across worker processes (the limiter's window is in PostgreSQL).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { openDatabase, type Database } from '../../db/client';
import { createPgRateLimiter } from '../../marketplaces/rate-limiter';
import { awsGroupKey, createAwsMarketplace } from '../../marketplaces/aws';
import { createBatcher } from '../../marketplaces/batcher';
import type { UsageRecord } from '../../marketplaces/types';
import type { AwsEmulatorCall } from '../../scripts/emulators/aws';
import { eventually, pastPreviousClose, startTestStack, type TestStack } from '../../scripts/lib/stack-harness';

/** Most calls that arrived within any one-second window. */
function peakPerSecond(calls: AwsEmulatorCall[]): number {
  const at = calls.map((c) => c.at).sort((a, b) => a - b);
  let peak = 0;
  for (let i = 0, j = 0; i < at.length; i++) {
    while (at[i]! - at[j]! >= 1000) j++;
    peak = Math.max(peak, i - j + 1);
  }
  return peak;
}

describe('marketplace limits at scale', () => {
  // 20-second hours: 1,000 workflows are started well within one hour, so all 1,000 remittances
  // close together and compete for the marketplace at once.
  const HOUR_MS = 20_000;
  let stack: TestStack;
  before(async () => {
    stack = await startTestStack({ hourMs: HOUR_MS, graceHours: 0.1, awsAcceptanceHours: 6 });
  });
  after(async () => stack?.stop());

  it('1,000 concurrent remittances: at most 40 calls of up to 25 records, never above 10 calls a second, each its own result', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    // Start right after an hour begins, so every workflow belongs to the same hour.
    const hour = await pastPreviousClose(stack, HOUR_MS / 2);
    const accounts = Array.from({ length: 1000 }, (_, i) => String(500000000000 + i));
    const tallies = accounts.map((acct, i) => ({
      orgId, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production',
      billingProvider: 'aws', billingAccountId: acct, hour: new Date(hour).toISOString(), value: (i % 7) + 1,
    }));
    const r = await stack.request('POST', '/v1/tallies', { tallies }, stack.tokens.ingest);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.ok(Date.now() < hour + HOUR_MS, 'all stored within the hour: one close computes them all');

    const rows = await eventually(async () => {
      const q = await stack.database.pool.query<{ status: string; bill: number; receipt: string | null; customer: any }>(
        `SELECT status, bill, receipt_id AS receipt, customer FROM remittances WHERE org_id = $1`, [orgId]);
      return q.rows.length === 1000 && q.rows.every((x) => x.status === 'Succeeded') ? q.rows : undefined;
    }, 180_000, '1,000 succeeded remittances');

    const records = stack.aws.records().filter((x) => accounts.includes(x.customer));
    assert.equal(records.length, 1000);
    const byReceipt = new Map(records.map((x) => [x.receiptId, x]));
    for (const row of rows) {
      const rec = byReceipt.get(row.receipt!);
      assert.ok(rec, 'each remittance has its own accepted record');
      assert.equal(rec.quantity, row.bill);
      assert.equal(rec.customer, row.customer.customerAwsAccountId);
    }
    const calls = stack.aws.calls().filter((c) => c.at >= hour);
    const sending = calls.filter((c) => c.outcome === 'ok');
    assert.ok(sending.length <= 40, `${sending.length} calls: ${JSON.stringify(sending.map((c) => [Math.round(c.at - hour), c.recordCount]))}`);
    assert.ok(sending.every((c) => c.recordCount <= 25));
    assert.equal(calls.filter((c) => c.outcome !== 'ok').length, 0, 'never throttled');
    assert.ok(peakPerSecond(calls) <= 10, `peak ${peakPerSecond(calls)} calls in one second`);
  });
});

describe('the rate limit across worker processes', () => {
  let stack: TestStack;
  const pools: Database[] = [];
  before(async () => {
    stack = await startTestStack({ hourMs: 3000 });
  });
  after(async () => {
    for (const p of pools) await p.close();
    await stack?.stop();
  });

  it('two workers sharing the PostgreSQL limiter never exceed 10 calls in any second together', async () => {
    const start = Date.now();
    // Two "workers": separate pools, clients and batchers; only the database is shared.
    const workers = [0, 1].map(() => {
      const db = openDatabase(stack.config.databaseUrl!, { max: 4 });
      pools.push(db);
      const client = createAwsMarketplace({ endpoint: stack.aws.url, region: 'us-east-1', acceptanceHours: 6, hourMs: 3000, credentials: { accessKeyId: 'shared-seller', secretAccessKey: 'x' } });
      return createBatcher({ client, groupKey: (r) => awsGroupKey(r, 'us-east-1'), rateKey: () => 'shared-seller|us-east-1', lingerMs: 5, maxBatchSize: 2, rateLimiter: createPgRateLimiter(db, { callsPerSecond: 10 }), isExpired: () => false });
    });
    const hour = stack.currentHourMs();
    // Small batches on purpose: 120 records in calls of 2 = 60 calls, 3 seconds' worth at the limit.
    const records: UsageRecord[] = Array.from({ length: 120 }, (_, i) => ({
      recordId: `r${i}`, customer: { marketplace: 'aws', productCode: 'shared', customerAwsAccountId: String(600000000000 + i) }, dimension: 'vCPU_hours', quantity: 1, timestampMs: hour,
    }));
    const outcomes = await Promise.all(records.map((rec, i) => workers[i % 2]!.submit(rec)));
    assert.ok(outcomes.every((o) => o.kind === 'accepted'), JSON.stringify(outcomes.find((o) => o.kind !== 'accepted')));
    const calls = stack.aws.calls().filter((c) => c.at >= start && c.account === 'shared-seller');
    assert.ok(calls.length >= 60);
    assert.equal(calls.filter((c) => c.outcome !== 'ok').length, 0, 'never throttled');
    assert.ok(peakPerSecond(calls) <= 10, `peak ${peakPerSecond(calls)}`);
    assert.ok(Date.now() - start >= 4500, 'the limit really held them back');
  });
});
