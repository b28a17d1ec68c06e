// Resolves (every send attempt after a retryable or lost answer) go through the marketplace's
// rate limiter like batched sends do: under throttling, unthrottled one-record calls per waiting
// record made AWS throttle harder and left lost answers unconfirmed until their deadline.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gatewayOf } from '../../marketplaces';
import type { Batcher } from '../../marketplaces/batcher';
import type { MarketplaceClient, SendOutcome, UsageRecord } from '../../marketplaces/types';

const record: UsageRecord = {
  recordId: 'r-1',
  customer: { marketplace: 'aws', productCode: 'p', customerAwsAccountId: '123456789012' },
  dimension: 'vCPU_hours',
  quantity: 3,
  timestampMs: Date.UTC(2026, 10, 25, 10),
};

function lane(events: string[], admit?: () => Promise<void | (() => void)>) {
  const client: MarketplaceClient = {
    marketplace: 'aws',
    maxBatchSize: 25,
    async send() {
      return [];
    },
    async resolve(): Promise<SendOutcome> {
      events.push('resolve');
      return { kind: 'accepted', receiptId: 'm-1' };
    },
  };
  return { client, batcher: { submit: async () => ({ kind: 'accepted', receiptId: 'x' }) } as unknown as Batcher, admit };
}

describe('gateway resolve', () => {
  it('is admitted by the rate limiter before the call and released after it', async () => {
    const events: string[] = [];
    const g = gatewayOf({ aws: lane(events, async () => (events.push('admit'), () => events.push('release'))) });
    assert.deepEqual(await g.resolve(record), { kind: 'accepted', receiptId: 'm-1' });
    assert.deepEqual(events, ['admit', 'resolve', 'release']);
  });

  it('sends nothing and answers retryable when the rate limiter fails', async () => {
    const events: string[] = [];
    const g = gatewayOf({ aws: lane(events, async () => Promise.reject(new Error('database down'))) });
    const out = await g.resolve(record);
    assert.equal(out.kind, 'retryable');
    assert.match((out as { reason: string }).reason, /rate limiter failed: database down/);
    assert.deepEqual(events, []);
  });

  it('an unconfigured marketplace still fails visibly', async () => {
    const out = await gatewayOf({}).resolve(record);
    assert.equal(out.kind, 'terminal');
  });
});
