// The AWS emulator's rules and faults, driven by the real SDK client over real HTTP, and the
// classification our AWS client gives each answer. An "hour" is 1 s here, so the 6-hour window
// is 6 s.

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchMeterUsageCommand, type MarketplaceMeteringClient } from '@aws-sdk/client-marketplace-metering';
import { startAwsEmulator, type AwsEmulator } from '../../scripts/emulators/aws';
import { createAwsMarketplace, type AwsMarketplaceClient } from '../../marketplaces/aws';
import type { SendOutcome } from '../../marketplaces/types';
import { hourStart } from '../../domain/time';
import { PRODUCT, REGION, SELLER, admin, awsRecord, emulatorCalls, emulatorRecords, newCustomer, rawPost, rawSdk, sigV4Header } from '../helpers/aws';

const HOUR = 1000;
const UNSUBSCRIBED = '999999999999';
const LICENSE = 'arn:aws:license-manager::123456789012:license:l-0123456789abcdef';

let emu: AwsEmulator;
let aws: AwsMarketplaceClient;
/** Believes the window is far longer than the emulator's, so it sends what ours would hold back. */
let lax: AwsMarketplaceClient;
let raw: MarketplaceMeteringClient;

/** Start of the hour slot `back` hours ago. */
function slot(back = 1): number {
  return hourStart(Date.now(), HOUR) - back * HOUR;
}

function client(extra: Partial<Parameters<typeof createAwsMarketplace>[0]> = {}): AwsMarketplaceClient {
  return createAwsMarketplace({ endpoint: emu.url, region: REGION, credentials: SELLER, acceptanceHours: 6, hourMs: HOUR, requestTimeoutMs: 1000, ...extra });
}

function assertKind(o: SendOutcome | undefined, kind: SendOutcome['kind'], code?: string): void {
  assert.ok(o, 'no outcome');
  assert.equal(o.kind, kind, JSON.stringify(o));
  if (code) assert.equal('code' in o ? o.code : undefined, code, JSON.stringify(o));
}

async function rawError(cmd: BatchMeterUsageCommand, sdk = raw): Promise<{ name: string; status: number | undefined; message: string }> {
  try {
    await sdk.send(cmd);
  } catch (err) {
    const e = err as { name: string; message: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, status: e.$metadata?.httpStatusCode, message: e.message };
  }
  throw new Error('expected the call to fail');
}

before(async () => {
  emu = await startAwsEmulator({ hourMs: HOUR, acceptanceHours: 6, rateLimitPerSecond: 1000, productCodes: [PRODUCT, 'other-product'], unsubscribedCustomers: [UNSUBSCRIBED] });
  aws = client();
  lax = client({ acceptanceHours: 1000 });
  raw = rawSdk(emu.url);
});

after(async () => {
  aws.close();
  lax.close();
  raw.destroy();
  await emu.close();
});

beforeEach(async () => {
  assert.equal((await admin(emu, 'POST', '/_emulator/reset')).status, 200);
});

void describe('wire protocol', () => {
  void test('errors carry __type, message, x-amzn-ErrorType and x-amzn-RequestId', async () => {
    const body = JSON.stringify({ ProductCode: PRODUCT, UsageRecords: [] });
    const r = await rawPost(emu.url, { 'x-amz-target': 'AWSMPMeteringService.BatchMeterUsage' }, body);
    assert.equal(r.status, 400);
    assert.equal(r.body.__type, 'MissingAuthenticationTokenException');
    assert.equal(r.headers['x-amzn-errortype'], 'MissingAuthenticationTokenException');
    assert.ok(r.headers['x-amzn-requestid']);
    assert.equal(r.headers['content-type'], 'application/x-amz-json-1.1');
    assert.equal(typeof r.body.message, 'string');
  });

  void test('only BatchMeterUsage is served; the credential scope must name aws-marketplace', async () => {
    const meter = await rawPost(emu.url, { 'x-amz-target': 'AWSMPMeteringService.MeterUsage', authorization: sigV4Header() }, '{}');
    assert.equal(meter.status, 400);
    assert.equal(meter.body.__type, 'UnknownOperationException');
    const wrongService = await rawPost(emu.url, { 'x-amz-target': 'AWSMPMeteringService.BatchMeterUsage', authorization: sigV4Header(undefined, undefined, 's3') }, '{}');
    assert.equal(wrongService.status, 403);
    assert.equal(wrongService.body.__type, 'InvalidSignatureException');
  });

  void test('malformed JSON is a SerializationException', async () => {
    const r = await rawPost(emu.url, { 'x-amz-target': 'AWSMPMeteringService.BatchMeterUsage', authorization: sigV4Header() }, '{"UsageRecords": [');
    assert.equal(r.status, 400);
    assert.equal(r.body.__type, 'SerializationException');
  });

  void test('a body of 1 MB or more is rejected and nothing is stored', async () => {
    const record = { Timestamp: slot() / 1000, CustomerAWSAccountId: newCustomer(), Dimension: 'control_plane', Quantity: 1 };
    const big = JSON.stringify({ ProductCode: PRODUCT, UsageRecords: [record], Padding: 'x'.repeat(1024 * 1024) });
    const r = await rawPost(emu.url, { 'x-amz-target': 'AWSMPMeteringService.BatchMeterUsage', authorization: sigV4Header() }, big);
    assert.equal(r.status, 400);
    assert.equal(r.body.__type, 'ValidationException');
    assert.deepEqual(await emulatorRecords(emu), []);
    const small = await rawPost(emu.url, { 'x-amz-target': 'AWSMPMeteringService.BatchMeterUsage', authorization: sigV4Header() }, JSON.stringify({ ProductCode: PRODUCT, UsageRecords: [record] }));
    assert.equal(small.status, 200);
    assert.equal((small.body.Results as { Status: string }[])[0]?.Status, 'Success');
  });
});

void describe('records and hourly dedup', () => {
  void test('accepted records are listed with their receipt ids', async () => {
    const t = slot();
    const recs = [awsRecord({ customer: newCustomer(), quantity: 3, timestampMs: t }), awsRecord({ customer: newCustomer(), dimension: 'managed_node', quantity: 0, timestampMs: t })];
    const out = await aws.send(recs);
    out.forEach((o) => assertKind(o, 'accepted'));
    const stored = await emulatorRecords(emu);
    assert.equal(stored.length, 2);
    recs.forEach((r, i) => {
      const s = stored.find((x) => x.customer === (r.customer.marketplace === 'aws' && r.customer.customerAwsAccountId));
      assert.ok(s);
      assert.equal(s.receiptId, (out[i] as { receiptId: string }).receiptId);
      assert.equal(s.dimension, r.dimension);
      assert.equal(s.quantity, r.quantity);
      assert.equal(s.timestampMs, t);
      assert.equal(s.hour, new Date(t).toISOString());
      assert.equal(s.productCode, PRODUCT);
      assert.equal(s.account, SELLER.accessKeyId);
      assert.equal(s.region, REGION);
    });
  });

  void test('an identical re-send is Success with the same MeteringRecordId and stores nothing new', async () => {
    const r = awsRecord({ customer: newCustomer(), quantity: 5, timestampMs: slot() });
    const [first] = await aws.send([r]);
    const [again] = await aws.send([r]);
    assertKind(first, 'accepted');
    assert.deepEqual(again, first);
    assert.equal((await emulatorRecords(emu)).length, 1);
  });

  void test('a different quantity in the same hour is DuplicateRecord; the first quantity stays', async () => {
    const customer = newCustomer();
    const t = slot();
    const [first] = await aws.send([awsRecord({ customer, quantity: 5, timestampMs: t })]);
    // Same hour slot, another instant inside it: still the same (customer, dimension, hour).
    const [second] = await aws.send([awsRecord({ customer, quantity: 6, timestampMs: t + HOUR / 2 })]);
    assertKind(first, 'accepted');
    assertKind(second, 'terminal', 'marketplace_duplicate_record');
    const stored = await emulatorRecords(emu);
    assert.equal(stored.length, 1);
    assert.equal(stored[0]?.quantity, 5);
    // The next hour is a new record; another dimension in the same hour too.
    const [nextHour] = await aws.send([awsRecord({ customer, quantity: 6, timestampMs: t + HOUR })]);
    const [otherDim] = await aws.send([awsRecord({ customer, dimension: 'infrastructure', quantity: 6, timestampMs: t })]);
    assertKind(nextHour, 'accepted');
    assertKind(otherDim, 'accepted');
    assert.equal((await emulatorRecords(emu)).length, 3);
  });

  void test('within one call, a second record for the same hour is judged against the first', async () => {
    const customer = newCustomer();
    const t = slot();
    const out = await aws.send([awsRecord({ customer, quantity: 1, timestampMs: t }), awsRecord({ customer, quantity: 1, timestampMs: t }), awsRecord({ customer, quantity: 2, timestampMs: t })]);
    assertKind(out[0], 'accepted');
    assert.deepEqual(out[1], out[0]);
    assertKind(out[2], 'terminal', 'marketplace_duplicate_record');
    assert.equal((await emulatorRecords(emu)).length, 1);
  });
});

void describe('request rules', () => {
  function bmu(n: number, quantity: unknown = 1): BatchMeterUsageCommand {
    const t = new Date(slot());
    return new BatchMeterUsageCommand({
      ProductCode: PRODUCT,
      UsageRecords: Array.from({ length: n }, () => ({ Timestamp: t, CustomerAWSAccountId: newCustomer(), Dimension: 'control_plane', Quantity: quantity as number })),
    });
  }

  void test('1 to 25 records a call', async () => {
    assert.equal((await raw.send(bmu(25))).Results?.length, 25);
    for (const n of [0, 26]) {
      const e = await rawError(bmu(n));
      assert.equal(e.name, 'ValidationException');
      assert.equal(e.status, 400);
    }
    assert.equal((await emulatorRecords(emu)).length, 25);
    // Our client refuses to build an oversized call: that is a programming error.
    const t = slot();
    await assert.rejects(aws.send(Array.from({ length: 26 }, () => awsRecord({ customer: newCustomer(), timestampMs: t }))), /at most 25/);
  });

  void test('Quantity is an integer from 0 to 2147483647', async () => {
    assert.equal((await raw.send(bmu(1, 0))).Results?.[0]?.Status, 'Success');
    assert.equal((await raw.send(bmu(1, 2_147_483_647))).Results?.[0]?.Status, 'Success');
    assert.equal((await rawError(bmu(1, -1))).name, 'ValidationException');
    assert.equal((await rawError(bmu(1, 2_147_483_648))).name, 'ValidationException');
    assert.equal((await rawError(bmu(1, 1.5))).name, 'SerializationException');
    // Our client keeps such a record out of the call instead of letting it sink the batch.
    const t = slot();
    const callsBefore = (await emulatorCalls(emu)).length;
    const out = await aws.send([awsRecord({ customer: newCustomer(), quantity: 1.5, timestampMs: t }), awsRecord({ customer: newCustomer(), quantity: 2, timestampMs: t })]);
    assertKind(out[0], 'terminal', 'marketplace_rejected');
    assertKind(out[1], 'accepted');
    const calls = await emulatorCalls(emu);
    assert.equal(calls.length, callsBefore + 1);
    assert.equal(calls.at(-1)?.recordCount, 1);
  });

  void test('an unknown dimension rejects the whole batch; nothing is stored', async () => {
    const t = slot();
    const out = await aws.send([awsRecord({ customer: newCustomer(), timestampMs: t }), awsRecord({ customer: newCustomer(), dimension: 'gpu_hours', timestampMs: t })]);
    for (const o of out) {
      assertKind(o, 'terminal', 'marketplace_rejected');
      assert.match((o as { reason: string }).reason, /InvalidUsageDimensionException.*gpu_hours/);
    }
    assert.deepEqual(await emulatorRecords(emu), []);
  });

  void test('an unknown product code is rejected', async () => {
    const [o] = await aws.send([awsRecord({ customer: newCustomer(), productCode: 'prod-nope', timestampMs: slot() })]);
    assertKind(o, 'terminal', 'marketplace_rejected');
    assert.match((o as { reason: string }).reason, /InvalidProductCodeException/);
  });

  void test('a record older than the window rejects the whole batch: TimestampOutOfBounds, nothing stored', async () => {
    const fresh = awsRecord({ customer: newCustomer(), timestampMs: slot() });
    const stale = awsRecord({ customer: newCustomer(), timestampMs: slot(7) });
    const out = await lax.send([fresh, stale]);
    out.forEach((o) => assertKind(o, 'terminal', 'marketplace_window_expired'));
    assert.deepEqual(await emulatorRecords(emu), []);
    assert.equal((await emulatorCalls(emu)).at(-1)?.outcome, 'TimestampOutOfBoundsException');
    // Five hours back is inside the window.
    assertKind((await lax.send([awsRecord({ customer: newCustomer(), timestampMs: slot(5) })]))[0], 'accepted');
  });

  void test('a record in the future rejects the whole batch', async () => {
    const out = await lax.send([awsRecord({ customer: newCustomer(), timestampMs: slot() }), awsRecord({ customer: newCustomer(), timestampMs: slot(-2) })]);
    out.forEach((o) => assertKind(o, 'terminal', 'marketplace_window_expired'));
    assert.deepEqual(await emulatorRecords(emu), []);
  });

  void test('our client keeps a stale record out of the call, so it cannot sink the others', async () => {
    const out = await aws.send([awsRecord({ customer: newCustomer(), timestampMs: slot() }), awsRecord({ customer: newCustomer(), timestampMs: slot(7) })]);
    assertKind(out[0], 'accepted');
    assertKind(out[1], 'terminal', 'marketplace_window_expired');
    assert.equal((await emulatorCalls(emu)).at(-1)?.recordCount, 1);
  });

  void test('CustomerNotSubscribed is per record and not billed', async () => {
    const t = slot();
    const out = await aws.send([awsRecord({ customer: newCustomer(), timestampMs: t }), awsRecord({ customer: UNSUBSCRIBED, timestampMs: t })]);
    assertKind(out[0], 'accepted');
    assertKind(out[1], 'terminal', 'marketplace_customer_not_subscribed');
    const stored = await emulatorRecords(emu);
    assert.equal(stored.length, 1);
    assert.notEqual(stored[0]?.customer, UNSUBSCRIBED);
  });

  void test('LicenseArn records are sent without ProductCode and keyed by license', async () => {
    const customer = newCustomer();
    const r = awsRecord({ customer, licenseArn: LICENSE, quantity: 4, timestampMs: slot() });
    const [o] = await aws.send([r]);
    assertKind(o, 'accepted');
    const [s] = await emulatorRecords(emu);
    assert.equal(s?.licenseArn, LICENSE);
    assert.equal(s?.productCode, null);
    assert.deepEqual((await aws.send([r]))[0], o);
  });

  void test('ProductCode and LicenseArn records for one customer and hour are refused (AWS would bill twice)', async () => {
    const customer = newCustomer();
    const t = slot();
    assertKind((await aws.send([awsRecord({ customer, timestampMs: t })]))[0], 'accepted');
    const [o] = await aws.send([awsRecord({ customer, dimension: 'managed_node', licenseArn: LICENSE, timestampMs: t })]);
    assertKind(o, 'terminal', 'marketplace_rejected');
    assert.match((o as { reason: string }).reason, /bills twice/);
    // Another hour is fine.
    assertKind((await aws.send([awsRecord({ customer, dimension: 'managed_node', licenseArn: LICENSE, timestampMs: t - HOUR })]))[0], 'accepted');
    // Both in one request is refused outright.
    const e = await rawError(
      new BatchMeterUsageCommand({ ProductCode: PRODUCT, UsageRecords: [{ Timestamp: new Date(t), CustomerAWSAccountId: newCustomer(), LicenseArn: LICENSE, Dimension: 'control_plane', Quantity: 1 }] }),
    );
    assert.equal(e.name, 'ValidationException');
  });

  void test('an invalid LicenseArn is InvalidLicenseException, terminal', async () => {
    const [o] = await aws.send([awsRecord({ customer: newCustomer(), licenseArn: 'arn:nope', timestampMs: slot() })]);
    assertKind(o, 'terminal', 'marketplace_rejected');
    assert.match((o as { reason: string }).reason, /InvalidLicenseException/);
  });

  void test('a call mixing product codes or keyspaces is a programming error', async () => {
    const t = slot();
    await assert.rejects(aws.send([awsRecord({ customer: newCustomer(), timestampMs: t }), awsRecord({ customer: newCustomer(), productCode: 'other-product', timestampMs: t })]), /share a product code/);
    await assert.rejects(aws.send([awsRecord({ customer: newCustomer(), timestampMs: t }), awsRecord({ customer: newCustomer(), licenseArn: LICENSE, timestampMs: t })]), /LicenseArn/);
    assert.deepEqual(await emulatorCalls(emu), []);
  });
});

void describe('rate limit: 10 calls a second per account and region', () => {
  void test('the 11th call within a second is throttled; other accounts and regions are not', async () => {
    const strict = await startAwsEmulator({ hourMs: HOUR, acceptanceHours: 6 });
    const mk = (accessKeyId: string, region = REGION) => createAwsMarketplace({ endpoint: strict.url, region, credentials: { ...SELLER, accessKeyId }, acceptanceHours: 6, hourMs: HOUR });
    const a = mk('AKIDA');
    const b = mk('AKIDB');
    const aWest = mk('AKIDA', 'us-west-2');
    try {
      const t = slot();
      const one = () => [awsRecord({ customer: newCustomer(), timestampMs: t })];
      const results = (await Promise.all(Array.from({ length: 12 }, () => a.send(one())))).map((o) => o[0]);
      assert.equal(results.filter((o) => o?.kind === 'accepted').length, 10);
      const throttled = results.filter((o) => o?.kind !== 'accepted');
      assert.equal(throttled.length, 2);
      throttled.forEach((o) => assertKind(o, 'retryable', 'marketplace_rate_limit'));
      assertKind((await b.send(one()))[0], 'accepted');
      assertKind((await aWest.send(one()))[0], 'accepted');
      await new Promise((r) => setTimeout(r, 1050));
      assertKind((await a.send(one()))[0], 'accepted');
      const calls = strict.calls();
      assert.equal(calls.filter((c) => c.outcome === 'ThrottlingException').length, 2);
      assert.equal(strict.records().length, 13);
    } finally {
      a.close();
      b.close();
      aWest.close();
      await strict.close();
    }
  });
});

void describe('faults', () => {
  async function fault(spec: unknown): Promise<void> {
    const r = await admin(emu, 'POST', '/_emulator/faults', spec);
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }

  void test('throttle: retryable rate limit, nothing stored, then it passes', async () => {
    await fault({ kind: 'throttle' });
    const r = awsRecord({ customer: newCustomer(), timestampMs: slot() });
    assertKind((await aws.send([r]))[0], 'retryable', 'marketplace_rate_limit');
    assert.deepEqual(await emulatorRecords(emu), []);
    assertKind((await aws.send([r]))[0], 'accepted');
  });

  void test('server-error: retryable unavailable (HTTP 500), nothing stored', async () => {
    await fault({ kind: 'server-error', count: 2 });
    const r = awsRecord({ customer: newCustomer(), timestampMs: slot() });
    assertKind((await aws.send([r]))[0], 'retryable', 'marketplace_unavailable');
    assertKind((await aws.send([r]))[0], 'retryable', 'marketplace_unavailable');
    assertKind((await aws.send([r]))[0], 'accepted');
    const calls = await emulatorCalls(emu);
    assert.deepEqual(calls.map((c) => c.httpStatus), [500, 500, 200]);
  });

  void test('timeout: ambiguous, nothing stored; resolve records it once', async () => {
    await fault({ kind: 'timeout' });
    const r = awsRecord({ customer: newCustomer(), timestampMs: slot() });
    const [o] = await aws.send([r]);
    assertKind(o, 'ambiguous');
    // The emulator never answers: only the client's own request timeout (1000 ms here) ends the call.
    assert.match((o as { reason: string }).reason, /ETIMEDOUT.*configured 1000 ms requestTimeout/);
    assert.deepEqual(await emulatorRecords(emu), []);
    const resolved = await aws.resolve(r);
    assertKind(resolved, 'accepted');
    const stored = await emulatorRecords(emu);
    assert.equal(stored.length, 1);
    assert.equal(stored[0]?.receiptId, (resolved as { receiptId: string }).receiptId);
  });

  void test('lost-response: ambiguous, but stored; resolve finds the same receipt', async () => {
    await fault({ kind: 'lost-response' });
    const r = awsRecord({ customer: newCustomer(), quantity: 9, timestampMs: slot() });
    assertKind((await aws.send([r]))[0], 'ambiguous');
    const [stored] = await emulatorRecords(emu);
    assert.equal(stored?.quantity, 9);
    const resolved = await aws.resolve(r);
    assertKind(resolved, 'accepted');
    assert.equal((resolved as { receiptId: string }).receiptId, stored?.receiptId);
    assert.equal((await emulatorRecords(emu)).length, 1);
    assert.ok((await emulatorCalls(emu)).every((c) => c.duplicates === 0));
  });

  void test('not-subscribed: matching records only, terminal', async () => {
    const victim = newCustomer();
    await fault({ kind: 'not-subscribed', match: { customer: victim }, durationMs: 60_000 });
    const t = slot();
    const out = await aws.send([awsRecord({ customer: newCustomer(), timestampMs: t }), awsRecord({ customer: victim, timestampMs: t }), awsRecord({ customer: victim, dimension: 'managed_node', timestampMs: t })]);
    assertKind(out[0], 'accepted');
    assertKind(out[1], 'terminal', 'marketplace_customer_not_subscribed');
    assertKind(out[2], 'terminal', 'marketplace_customer_not_subscribed');
    assert.equal((await emulatorRecords(emu)).length, 1);
  });

  void test('unprocessed: matching records come back in UnprocessedRecords, retryable, not stored', async () => {
    await fault({ kind: 'unprocessed', match: { dimension: 'managed_node' } });
    const t = slot();
    const recs = [awsRecord({ customer: newCustomer(), timestampMs: t }), awsRecord({ customer: newCustomer(), dimension: 'managed_node', timestampMs: t })];
    const out = await aws.send(recs);
    assertKind(out[0], 'accepted');
    assertKind(out[1], 'retryable', 'marketplace_unavailable');
    assert.equal((await emulatorRecords(emu)).length, 1);
    const again = await aws.send(recs);
    assert.deepEqual(again[0], out[0]);
    assertKind(again[1], 'accepted');
    assert.equal((await emulatorRecords(emu)).length, 2);
  });

  void test('expired: TimestampOutOfBounds for the whole batch, terminal, nothing stored', async () => {
    await fault({ kind: 'expired' });
    const t = slot();
    const out = await aws.send([awsRecord({ customer: newCustomer(), timestampMs: t }), awsRecord({ customer: newCustomer(), timestampMs: t })]);
    out.forEach((o) => assertKind(o, 'terminal', 'marketplace_window_expired'));
    assert.deepEqual(await emulatorRecords(emu), []);
  });

  void test('a batch-level fault fires when any record of the call matches, and only then', async () => {
    const victim = newCustomer();
    await fault({ kind: 'server-error', match: { customer: victim } });
    const t = slot();
    assertKind((await aws.send([awsRecord({ customer: newCustomer(), timestampMs: t })]))[0], 'accepted');
    const out = await aws.send([awsRecord({ customer: newCustomer(), timestampMs: t }), awsRecord({ customer: victim, timestampMs: t })]);
    out.forEach((o) => assertKind(o, 'retryable', 'marketplace_unavailable'));
    assert.equal((await emulatorRecords(emu)).length, 1);
    assert.deepEqual((await admin<{ faults: unknown[] }>(emu, 'GET', '/_emulator/faults')).body.faults, []);
  });

  void test('admin API: bad faults are 400 with a message; DELETE clears; reset forgets everything', async () => {
    for (const bad of [{ kind: 'meteor' }, { kind: 'throttle', count: 0 }, { kind: 'throttle', match: 'x' }, 'not json']) {
      const r = await admin<{ error: string }>(emu, 'POST', '/_emulator/faults', bad);
      assert.equal(r.status, 400);
      assert.ok(r.body.error.length > 0);
    }
    await fault([{ kind: 'throttle', durationMs: 60_000 }, { kind: 'server-error' }]);
    assert.equal((await admin<{ faults: unknown[] }>(emu, 'GET', '/_emulator/faults')).body.faults.length, 2);
    assert.equal((await admin(emu, 'DELETE', '/_emulator/faults')).status, 200);
    assertKind((await aws.send([awsRecord({ customer: newCustomer(), timestampMs: slot() })]))[0], 'accepted');
    assert.equal((await emulatorRecords(emu)).length, 1);
    assert.equal((await emulatorCalls(emu)).length, 1);
    await admin(emu, 'POST', '/_emulator/reset');
    assert.deepEqual(await emulatorRecords(emu), []);
    assert.deepEqual(await emulatorCalls(emu), []);
  });
});

void describe('client classification outside the emulator rules', () => {
  void test('nothing listening: retryable unavailable (nothing was sent)', async () => {
    const closed = await startAwsEmulator({ hourMs: HOUR, acceptanceHours: 6 });
    const url = closed.url;
    await closed.close();
    const c = createAwsMarketplace({ endpoint: url, region: REGION, credentials: SELLER, acceptanceHours: 6, hourMs: HOUR });
    try {
      assertKind((await c.send([awsRecord({ customer: newCustomer(), timestampMs: slot() })]))[0], 'retryable', 'marketplace_unavailable');
    } finally {
      c.close();
    }
  });

  void test('resolve after the window closed cannot confirm anything: ambiguous, not a terminal failure', async () => {
    const later = client({ now: () => Date.now() + 10 * HOUR });
    try {
      const o = await later.resolve(awsRecord({ customer: newCustomer(), timestampMs: slot() }));
      assertKind(o, 'ambiguous');
      assert.match((o as { reason: string }).reason, /window has closed/);
    } finally {
      later.close();
    }
  });
});
