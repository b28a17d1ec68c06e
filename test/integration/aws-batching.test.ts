// Coalescing and rate limiting against the AWS emulator with its real 10 calls/s limit: many
// concurrent submissions go out in few full calls, never faster than AWS allows, and every
// submitter gets its own record's outcome.

import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { startAwsEmulator, type AwsEmulator } from '../../scripts/emulators/aws';
import { awsGroupKey, createAwsMarketplace, type AwsMarketplaceClient } from '../../marketplaces/aws';
import { createBatcher, createInProcessRateLimiter, type Batcher } from '../../marketplaces/batcher';
import type { SendOutcome, UsageRecord } from '../../marketplaces/types';
import { hourStart } from '../../domain/time';
import { REGION, SELLER, admin, awsRecord, emulatorCalls, emulatorRecords, newCustomer } from '../helpers/aws';

// A 3 s "hour" gives an 18 s window: wide enough for the 1,000-record run (about 4.5 s of
// rate-limited calls), narrow enough to make stale records cheap to build.
const HOUR = 3000;
const DIMENSIONS = ['four_vcpu_hour', 'control_plane', 'managed_node', 'infrastructure'];

let emu: AwsEmulator;
let aws: AwsMarketplaceClient;

function batcher(extra: { client?: AwsMarketplaceClient; groupKey?: (r: UsageRecord) => string } = {}): Batcher {
  const client = extra.client ?? aws;
  return createBatcher({
    client,
    groupKey: extra.groupKey ?? ((r) => awsGroupKey(r, REGION)),
    rateKey: () => `${SELLER.accessKeyId}|${REGION}`,
    lingerMs: 20,
    rateLimiter: createInProcessRateLimiter({ callsPerSecond: 10 }),
    isExpired: (r) => client.isExpired(r),
  });
}

before(async () => {
  emu = await startAwsEmulator({ hourMs: HOUR, acceptanceHours: 6 });
  aws = createAwsMarketplace({ endpoint: emu.url, region: REGION, credentials: SELLER, acceptanceHours: 6, hourMs: HOUR, requestTimeoutMs: 2000 });
});

after(async () => {
  aws.close();
  await emu.close();
});

beforeEach(async () => {
  await admin(emu, 'POST', '/_emulator/reset');
});

void test('1,000 concurrent submissions: at most 40 calls of up to 25, never over 10 calls a second, each outcome its own', async () => {
  const t = hourStart(Date.now(), HOUR);
  const customers = Array.from({ length: 250 }, () => newCustomer());
  const unsubscribed = [customers[3], customers[100], customers[249]] as string[];
  for (const customer of unsubscribed) {
    await admin(emu, 'POST', '/_emulator/faults', { kind: 'not-subscribed', match: { customer }, durationMs: 120_000 });
  }
  const records = customers.flatMap((customer, c) => DIMENSIONS.map((dimension, d) => awsRecord({ customer, dimension, quantity: c * 10 + d + 1, timestampMs: t })));
  const stale = Array.from({ length: 5 }, () => awsRecord({ customer: newCustomer(), timestampMs: t - 7 * HOUR }));
  const b = batcher();

  const outcomes = await Promise.all([...records, ...stale].map((r) => b.submit(r)));

  // Stale records were answered without being sent.
  outcomes.slice(records.length).forEach((o) => assert.equal(o.kind === 'terminal' && o.code, 'marketplace_window_expired'));

  const calls = await emulatorCalls(emu);
  assert.ok(calls.length <= 40, `${calls.length} calls`);
  assert.ok(calls.every((c) => c.recordCount >= 1 && c.recordCount <= 25));
  assert.equal(calls.reduce((n, c) => n + c.recordCount, 0), records.length);
  assert.ok(calls.every((c) => c.outcome === 'ok'), JSON.stringify(calls.filter((c) => c.outcome !== 'ok')));
  const at = calls.map((c) => c.at).sort((x, y) => x - y);
  for (let i = 0; i + 10 < at.length; i++) {
    const span = (at[i + 10] as number) - (at[i] as number);
    assert.ok(span >= 1000, `calls ${i}..${i + 10} arrived within ${span.toFixed(1)} ms`);
  }

  const stored = await emulatorRecords(emu);
  const byKey = new Map(stored.map((s) => [`${s.customer}|${s.dimension}`, s]));
  records.forEach((r, i) => {
    const o = outcomes[i] as SendOutcome;
    const customer = r.customer.marketplace === 'aws' ? r.customer.customerAwsAccountId : '';
    const s = byKey.get(`${customer}|${r.dimension}`);
    if (unsubscribed.includes(customer)) {
      assert.equal(o.kind === 'terminal' && o.code, 'marketplace_customer_not_subscribed', JSON.stringify(o));
      assert.equal(s, undefined);
    } else {
      assert.equal(o.kind, 'accepted', JSON.stringify(o));
      assert.equal(s?.quantity, r.quantity);
      assert.equal(o.kind === 'accepted' && o.receiptId, s?.receiptId);
    }
  });
  assert.equal(stored.length, records.length - unsubscribed.length * DIMENSIONS.length);
});

void test('lost response: after resolve, exactly one accepted record per submission and no duplicate', async () => {
  const t = hourStart(Date.now(), HOUR);
  const victim = newCustomer();
  await admin(emu, 'POST', '/_emulator/faults', { kind: 'lost-response', match: { customer: victim } });
  const records = [awsRecord({ customer: victim, quantity: 7, timestampMs: t }), ...Array.from({ length: 4 }, (_, i) => awsRecord({ customer: newCustomer(), quantity: i + 1, timestampMs: t }))];
  const b = batcher();
  const outcomes = await Promise.all(records.map((r) => b.submit(r)));
  // They shared one call, whose answer was lost: nobody knows, so nobody may claim success.
  outcomes.forEach((o) => assert.equal(o.kind, 'ambiguous', JSON.stringify(o)));
  assert.equal((await emulatorCalls(emu)).length, 1);

  const resolved = await Promise.all(records.map((r) => aws.resolve(r)));
  const stored = await emulatorRecords(emu);
  assert.equal(stored.length, records.length);
  records.forEach((r, i) => {
    const o = resolved[i] as SendOutcome;
    assert.equal(o.kind, 'accepted', JSON.stringify(o));
    const customer = r.customer.marketplace === 'aws' ? r.customer.customerAwsAccountId : '';
    const mine = stored.filter((s) => s.customer === customer && s.dimension === r.dimension);
    assert.equal(mine.length, 1);
    assert.equal(mine[0]?.quantity, r.quantity);
    assert.equal(o.kind === 'accepted' && o.receiptId, mine[0]?.receiptId);
  });
  assert.ok((await emulatorCalls(emu)).every((c) => c.duplicates === 0));
});

void test('a whole batch rejected as stale (our clock disagreed) is re-sent record by record, so only the stale one fails', async () => {
  // This client thinks the window is much longer than the emulator's, as with clock skew.
  const skewed = createAwsMarketplace({ endpoint: emu.url, region: REGION, credentials: SELLER, acceptanceHours: 100, hourMs: HOUR });
  try {
    const t = hourStart(Date.now(), HOUR);
    const fresh = Array.from({ length: 3 }, () => awsRecord({ customer: newCustomer(), timestampMs: t }));
    const stale = awsRecord({ customer: newCustomer(), timestampMs: t - 7 * HOUR });
    const b = batcher({ client: skewed });
    const outcomes = await Promise.all([...fresh, stale].map((r) => b.submit(r)));
    outcomes.slice(0, 3).forEach((o) => assert.equal(o.kind, 'accepted', JSON.stringify(o)));
    assert.equal(outcomes[3]?.kind === 'terminal' && outcomes[3].code, 'marketplace_window_expired');
    const calls = await emulatorCalls(emu);
    assert.deepEqual(calls.map((c) => c.recordCount), [4, 1, 1, 1, 1]);
    assert.equal((await emulatorRecords(emu)).length, 3);
  } finally {
    skewed.close();
  }
});

void test('when a whole call throws, every record in it gets the classified outcome', async () => {
  const t = hourStart(Date.now(), HOUR);
  // A group key that wrongly mixes product codes makes the client refuse the call.
  const b = batcher({ groupKey: () => 'everything' });
  const outcomes = await Promise.all([awsRecord({ customer: newCustomer(), timestampMs: t }), awsRecord({ customer: newCustomer(), productCode: 'other', timestampMs: t })].map((r) => b.submit(r)));
  outcomes.forEach((o) => {
    assert.equal(o.kind, 'ambiguous');
    assert.match((o as { reason: string }).reason, /share a product code/);
  });
  assert.deepEqual(await emulatorCalls(emu), []);
});

void test('submissions trickling in share calls after the linger time', async () => {
  const t = hourStart(Date.now(), HOUR);
  const b = batcher();
  const pending: Promise<SendOutcome>[] = [];
  for (let i = 0; i < 10; i++) {
    pending.push(b.submit(awsRecord({ customer: newCustomer(), timestampMs: t })));
    await new Promise((r) => setTimeout(r, 1));
  }
  (await Promise.all(pending)).forEach((o) => assert.equal(o.kind, 'accepted'));
  await b.drain();
  const calls = await emulatorCalls(emu);
  assert.ok(calls.length <= 3, `${calls.length} calls for 10 records`);
});

void test('a limiter that hands back no release function (e.g. a shared one) works the same', async () => {
  const t = hourStart(Date.now(), HOUR);
  let acquired = 0;
  const b = createBatcher({
    client: aws,
    groupKey: (r) => awsGroupKey(r, REGION),
    lingerMs: 5,
    rateLimiter: {
      acquire: async () => {
        acquired += 1;
      },
    },
    isExpired: (r) => aws.isExpired(r),
  });
  const outcomes = await Promise.all(Array.from({ length: 30 }, () => b.submit(awsRecord({ customer: newCustomer(), timestampMs: t }))));
  outcomes.forEach((o) => assert.equal(o.kind, 'accepted'));
  assert.equal(acquired, 2);
  assert.deepEqual((await emulatorCalls(emu)).map((c) => c.recordCount), [25, 5]);
});
