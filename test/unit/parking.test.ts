// When a key is parked (domain/parking.ts, issue 9, 5): after `threshold` terminal rejections in
// a row with the same error code.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { afterRejection, DEFAULT_PARK_AFTER_REJECTIONS, type RejectionCount } from '../../domain/parking';

function run(codes: string[], threshold = DEFAULT_PARK_AFTER_REJECTIONS): Array<RejectionCount & { park: boolean }> {
  let state: RejectionCount = { code: null, count: 0 };
  return codes.map((code) => {
    const next = afterRejection(state, code, threshold);
    state = next;
    return next;
  });
}

void test('the third rejection in a row with the same code parks the key (default threshold 3)', () => {
  assert.equal(DEFAULT_PARK_AFTER_REJECTIONS, 3);
  assert.deepEqual(run(['not_subscribed', 'not_subscribed', 'not_subscribed']).map((s) => [s.count, s.park]), [[1, false], [2, false], [3, true]]);
});

void test('another code starts a new run: rejections of different kinds never park', () => {
  assert.deepEqual(run(['not_subscribed', 'terminated', 'not_subscribed', 'not_subscribed']).map((s) => [s.code, s.count, s.park]), [
    ['not_subscribed', 1, false],
    ['terminated', 1, false],
    ['not_subscribed', 1, false],
    ['not_subscribed', 2, false],
  ]);
});

void test('duplicate-record rejections (our own keys colliding) never park', () => {
  assert.deepEqual(run(['marketplace_duplicate_record', 'marketplace_duplicate_record', 'marketplace_duplicate_record', 'marketplace_duplicate_record']).map((s) => s.park), [false, false, false, false]);
});

void test('the threshold is configurable; 0 never parks', () => {
  assert.deepEqual(run(['x'], 1).map((s) => s.park), [true]);
  assert.deepEqual(run(['x', 'x', 'x', 'x', 'x'], 0).map((s) => s.park), [false, false, false, false, false]);
});
