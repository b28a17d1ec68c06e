// What each AWS Marketplace Metering answer means for a record (marketplaces/aws-classify.ts),
// without a server: the emulator tests (test/integration/aws-emulator.test.ts) drive the same
// rules through the real SDK.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyError, classifyResults } from '../../marketplaces/aws-classify';
import type { SendOutcome, UsageRecord } from '../../marketplaces/types';

const AT = Date.UTC(2026, 10, 25, 10);
const codeOf = (o: SendOutcome) => ('code' in o ? `${o.kind}:${o.code}` : o.kind);
const sdkError = (name: string, httpStatusCode?: number, extra: Record<string, unknown> = {}) =>
  Object.assign(new Error(`${name} happened`), { name, ...(httpStatusCode ? { $metadata: { httpStatusCode } } : {}), ...extra });

function rec(account: string, dimension = 'vCPU_hours'): UsageRecord {
  return { recordId: `r-${account}`, customer: { marketplace: 'aws', productCode: 'p', customerAwsAccountId: account }, dimension, quantity: 2, timestampMs: AT };
}
const wire = (r: UsageRecord) => ({ CustomerAWSAccountId: r.customer.marketplace === 'aws' ? r.customer.customerAwsAccountId : '', Dimension: r.dimension, Quantity: r.quantity, Timestamp: new Date(r.timestampMs) });

describe('AWS call-level errors', () => {
  it('throttling waits, a stale batch is expired, 5xx retries, a 4xx says what to fix; nothing billed on any', () => {
    assert.equal(codeOf(classifyError(sdkError('ThrottlingException', 400))), 'retryable:marketplace_rate_limit');
    assert.equal(codeOf(classifyError(sdkError('TimestampOutOfBoundsException', 400))), 'terminal:marketplace_window_expired');
    assert.equal(codeOf(classifyError(sdkError('InternalServiceErrorException', 500))), 'retryable:marketplace_unavailable');
    const dim = classifyError(sdkError('InvalidUsageDimensionException', 400));
    assert.equal(codeOf(dim), 'terminal:marketplace_rejected');
    assert.match(dim.kind === 'terminal' ? dim.reason : '', /dimension is not defined/);
  });

  it('not connecting is retried as unsent; a call sent without a readable answer is ambiguous', () => {
    assert.equal(codeOf(classifyError(sdkError('Error', undefined, { code: 'ECONNREFUSED' }))), 'retryable:marketplace_unavailable');
    assert.equal(codeOf(classifyError(sdkError('CredentialsProviderError'))), 'retryable:marketplace_unavailable');
    assert.equal(codeOf(classifyError(sdkError('TimeoutError', undefined, { code: 'ETIMEDOUT' }))), 'ambiguous');
  });
});

describe('AWS per-record results', () => {
  it('matched by customer, dimension and hour whatever the order; unprocessed retried; a missing one ambiguous', () => {
    const [a, b, c, d] = [rec('111'), rec('222'), rec('333'), rec('444')];
    const out = classifyResults(
      [a!, b!, c!, d!],
      [
        { UsageRecord: wire(c!), Status: 'DuplicateRecord', MeteringRecordId: 'm-c' },
        { UsageRecord: wire(a!), Status: 'Success', MeteringRecordId: 'm-a' },
        { UsageRecord: wire(d!), Status: 'CustomerNotSubscribed', MeteringRecordId: 'm-d' },
      ],
      [],
    );
    assert.deepEqual(out.map(codeOf), ['accepted', 'ambiguous', 'terminal:marketplace_duplicate_record', 'terminal:marketplace_customer_not_subscribed']);
    assert.equal(out[0]!.kind === 'accepted' && out[0]!.receiptId, 'm-a');
    assert.deepEqual(classifyResults([a!], [], [wire(a!)]).map(codeOf), ['retryable:marketplace_unavailable']);
    assert.deepEqual(classifyResults([a!], [{ UsageRecord: wire(a!), Status: 'Success' }], []).map(codeOf), ['ambiguous']);
  });
});
