// What each Azure Marketplace Metering answer means for a record (marketplaces/azure-classify.ts),
// without a server: the rules that decide between billed, send again, ask the read-back and give
// up. The emulator tests (test/integration/azure-emulator.test.ts) drive the same rules over HTTPS.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  classifyDuplicate,
  classifyEvent,
  classifyHttp,
  classifyTokenError,
  classifyTransportError,
  classifyUsageEventAnswer,
  confirmedByReadBack,
  expiredOutcome,
  lookupFromRows,
  matchBatchResults,
  type AzureClassifyContext,
  type AzureUsageRow,
} from '../../marketplaces/azure-classify';
import { parseRetryAfter } from '../../marketplaces/azure-transport';
import type { SendOutcome, UsageRecord } from '../../marketplaces/types';

const HOUR = 3_600_000;
const ctx: AzureClassifyContext = { hourMs: HOUR, acceptanceHours: 24, clientId: 'app-1', tenantId: 'tenant-1' };
const AT = Date.UTC(2026, 10, 25, 10);

function rec(over: Partial<UsageRecord> = {}, resourceId = 'sub-1'): UsageRecord {
  return { recordId: 'r-1', customer: { marketplace: 'azure', resourceId, planId: 'plan-1' }, dimension: 'control_plane', quantity: 3, timestampMs: AT, ...over };
}

const accepted = (quantity: number, over: Record<string, unknown> = {}) => ({ usageEventId: 'ev-1', quantity, dimension: 'control_plane', resourceId: 'sub-1', effectiveStartTime: new Date(AT).toISOString(), ...over });
const codeOf = (o: SendOutcome | { kind: 'expired' }) => ('code' in o ? `${o.kind}:${o.code}` : o.kind);

describe('Azure duplicates', () => {
  it('a duplicate holding exactly our event is our earlier send: accepted with its event id', () => {
    const o = classifyDuplicate(rec(), accepted(3), HOUR);
    assert.deepEqual([o.kind, o.kind === 'accepted' && o.receiptId], ['accepted', 'ev-1']);
  });

  it('a duplicate with another quantity, dimension, resource or hour is a different event: terminal, never accepted', () => {
    for (const other of [accepted(4), accepted(3, { dimension: 'four_vcpu_hour' }), accepted(3, { resourceId: 'sub-2' }), accepted(3, { effectiveStartTime: new Date(AT + HOUR).toISOString() })]) {
      assert.equal(codeOf(classifyDuplicate(rec(), other, HOUR)), 'terminal:marketplace_duplicate_record', JSON.stringify(other));
    }
  });

  it('a duplicate that does not say what Azure accepted is ambiguous, and the read-back settles it', () => {
    const o = classifyDuplicate(rec(), undefined, HOUR);
    assert.equal(o.kind, 'ambiguous');
    assert.equal(confirmedByReadBack(rec(), { found: true, quantity: 3, receiptId: 'rb' }, o).kind, 'accepted');
    assert.equal(confirmedByReadBack(rec(), { found: true, quantity: 5, receiptId: 'rb' }, o), o);
    assert.equal(confirmedByReadBack(rec(), { found: false }, o), o);
  });
});

describe('Azure batch results', () => {
  it('per-event statuses: Accepted with an id, Expired to the read-back, rejections terminal, a generic Error retried', () => {
    const statuses = (status: string, extra: Record<string, unknown> = {}) => codeOf(classifyEvent(rec(), { status, ...extra }, ctx));
    assert.equal(statuses('Accepted', { usageEventId: 'ev-9' }), 'accepted');
    assert.equal(statuses('Accepted'), 'ambiguous');
    assert.equal(statuses('Expired'), 'expired');
    assert.equal(statuses('Duplicate', { error: { additionalInfo: { acceptedMessage: accepted(3) } } }), 'accepted');
    assert.equal(statuses('ResourceNotFound'), 'terminal:marketplace_customer_not_subscribed');
    assert.equal(statuses('ResourceNotAuthorized'), 'terminal:subscription_not_found');
    assert.equal(statuses('ResourceNotActive'), 'terminal:subscription_terminated');
    assert.equal(statuses('InvalidDimension'), 'terminal:unsupported_metric');
    assert.equal(statuses('Error'), 'retryable:marketplace_unavailable');
    assert.equal(statuses('SomethingNew'), 'terminal:unknown');
  });

  it('matches results to records by resource, dimension and hour, whatever their order; a missing one stays missing', () => {
    const a = rec({ recordId: 'a' }, 'sub-a');
    const b = rec({ recordId: 'b' }, 'sub-b');
    const c = rec({ recordId: 'c' }, 'sub-c');
    const result = (r: UsageRecord) => ({ status: 'Accepted', usageEventId: `ev-${r.recordId}`, resourceId: r.customer.marketplace === 'azure' ? r.customer.resourceId : '', dimension: r.dimension, effectiveStartTime: new Date(r.timestampMs).toISOString() });
    const matched = matchBatchResults([a, b, c], { count: 2, result: [result(c), result(a)] });
    assert.deepEqual(matched.map((m) => m?.usageEventId), ['ev-a', undefined, 'ev-c']);
  });
});

describe('Azure call-level answers', () => {
  it('429 waits (1 s when Azure does not say), 5xx retries, 401/403 names the app, other 4xx is terminal', () => {
    const t = classifyHttp(429, { code: 'TooManyRequests' }, undefined, ctx);
    assert.deepEqual([t.kind, t.kind === 'retryable' && t.retryAfterMs], ['retryable', 1_000]);
    assert.equal(codeOf(classifyHttp(503, {}, 2_000, ctx)), 'retryable:marketplace_unavailable');
    const denied = classifyHttp(403, { code: 'Forbidden' }, undefined, ctx);
    assert.equal(codeOf(denied), 'terminal:marketplace_rejected');
    assert.match(denied.kind === 'terminal' ? denied.reason : '', /client app-1, tenant tenant-1/);
    assert.equal(codeOf(classifyHttp(404, {}, undefined, ctx)), 'terminal:marketplace_rejected');
  });

  it('the single endpoint: 200 accepted, 409 a duplicate, 400 named by its details, 403 on the resource is not the token', () => {
    const single = (status: number, json: unknown) => codeOf(classifyUsageEventAnswer(rec(), status, json, undefined, ctx));
    assert.equal(single(200, { status: 'Accepted', usageEventId: 'ev-1' }), 'accepted');
    assert.equal(single(200, { status: 'Duplicate' }), 'ambiguous');
    assert.equal(single(409, { additionalInfo: { acceptedMessage: accepted(4) } }), 'terminal:marketplace_duplicate_record');
    assert.equal(single(400, { code: 'BadArgument', details: [{ code: 'Expired', message: 'Event has expired' }] }), 'expired');
    assert.equal(single(400, { code: 'BadArgument', details: [{ code: 'InvalidDimension', message: 'no such dimension' }] }), 'terminal:unsupported_metric');
    assert.equal(single(400, { code: 'BadArgument', message: 'The usage resource is not active (Suspended).' }), 'terminal:subscription_terminated');
    assert.equal(single(403, { code: 'Forbidden', message: 'Client is not authorized for this usage resource.' }), 'terminal:subscription_not_found');
    assert.equal(single(403, { code: 'Forbidden', message: 'token rejected' }), 'terminal:marketplace_rejected');
  });

  it('a refused app is terminal, a token service that does not answer is retried; not connecting is retried, a lost answer is ambiguous', () => {
    assert.equal(codeOf(classifyTokenError(new Error('AADSTS7000215: Invalid client secret provided. invalid_client'))), 'terminal:marketplace_rejected');
    assert.equal(codeOf(classifyTokenError(new Error('connect ECONNREFUSED'))), 'retryable:marketplace_unavailable');
    assert.equal(codeOf(classifyTransportError(Object.assign(new Error('fetch failed'), { cause: { code: 'ECONNREFUSED' } }), 'a batch')), 'retryable:marketplace_unavailable');
    assert.equal(codeOf(classifyTransportError(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }), 'a batch')), 'ambiguous');
  });

  it('Retry-After as seconds or as an HTTP date', () => {
    assert.equal(parseRetryAfter('2', 0), 2_000);
    assert.equal(parseRetryAfter(new Date(AT + 5_000).toUTCString(), AT), 5_000);
    assert.equal(parseRetryAfter(undefined, AT), undefined);
  });
});

describe('Azure read-back', () => {
  const row = (over: Partial<AzureUsageRow> = {}): AzureUsageRow => ({ usageDate: '2026-11-25T00:00:00Z', usageResourceId: 'sub-1', dimension: 'control_plane', submittedQuantity: 3, submittedCount: 1, ...over });

  it('one event of ours in the hour is found, none is not found, more cannot be told apart; other resources do not count', () => {
    assert.deepEqual(lookupFromRows(rec(), [row(), row({ usageResourceId: 'sub-2', submittedCount: 4 })]).found, true);
    assert.deepEqual(lookupFromRows(rec(), [row({ dimension: 'four_vcpu_hour' })]), { found: false });
    assert.equal(lookupFromRows(rec(), [row({ submittedCount: 2, submittedQuantity: 6 })]).found, 'unknown');
  });

  it('an hour past the window is expired only when Azure holds nothing for it', () => {
    assert.equal(codeOf(expiredOutcome(rec(), { found: false }, 'too old', ctx)), 'terminal:marketplace_window_expired');
    assert.equal(codeOf(expiredOutcome(rec(), { found: true, quantity: 3, receiptId: 'rb' }, 'too old', ctx)), 'accepted');
    assert.equal(codeOf(expiredOutcome(rec(), { found: true, quantity: 2, receiptId: 'rb' }, 'too old', ctx)), 'terminal:marketplace_duplicate_record');
    assert.equal(codeOf(expiredOutcome(rec(), { found: 'unknown', reason: 'no answer' }, 'too old', ctx)), 'ambiguous');
  });
});
