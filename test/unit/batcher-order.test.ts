import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createBatcher, insertByDeadline } from '../../marketplaces/batcher';
import type { MarketplaceClient, UsageRecord } from '../../marketplaces/types';

const rec = (id: string, timestampMs: number): UsageRecord => ({
  recordId: id,
  customer: { marketplace: 'aws', productCode: 'p', customerAwsAccountId: '111122223333' },
  dimension: 'd',
  quantity: 1,
  timestampMs,
});

describe('deadline-first sending', () => {
  it('orders a queue by hour, oldest first, keeping arrival order within an hour', () => {
    const q: { record: UsageRecord }[] = [];
    for (const [id, t] of [['a', 3], ['b', 1], ['c', 2], ['d', 1], ['e', 3]] as const) insertByDeadline(q, { record: rec(id, t) });
    assert.deepEqual(q.map((e) => e.record.recordId), ['b', 'd', 'c', 'a', 'e']);
  });

  it('sends the records closest to their deadline in the first call when there is a backlog', async () => {
    const calls: string[][] = [];
    const client: MarketplaceClient = {
      marketplace: 'aws',
      maxBatchSize: 2,
      async send(records) {
        calls.push(records.map((r) => r.recordId));
        return records.map((r) => ({ kind: 'accepted' as const, receiptId: r.recordId }));
      },
      async resolve() {
        return { kind: 'ambiguous' as const, reason: 'unused' };
      },
    };
    // One call at a time: the first call's slot is taken, the rest queue up behind it.
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let first = true;
    const batcher = createBatcher({
      client,
      groupKey: () => 'g',
      lingerMs: 1,
      isExpired: () => false,
      rateLimiter: {
        acquire: () => (first ? ((first = false), Promise.resolve()) : gate),
      },
    });
    const done = [batcher.submit(rec('new-1', 300)), batcher.submit(rec('new-2', 300))];
    await new Promise((r) => setTimeout(r, 20));
    done.push(batcher.submit(rec('newer', 400)), batcher.submit(rec('old', 100)), batcher.submit(rec('middle', 200)));
    await new Promise((r) => setTimeout(r, 20));
    release();
    await Promise.all(done);
    await batcher.drain();
    assert.deepEqual(calls[0], ['new-1', 'new-2']);
    assert.deepEqual(calls[1], ['old', 'middle'], 'the oldest hours go first');
  });
});
