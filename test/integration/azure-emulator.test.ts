// The Azure Marketplace emulator's rules and faults, driven over real HTTPS with real Entra tokens
// (@azure/identity's ClientSecretCredential against the Entra emulator) and real undici requests,
// and the classification our Azure client gives each answer. An "hour" is 1 s here, so the 24-hour
// window is 24 s; a skewable clock shared by emulator and client moves time past it.

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { hourStart } from '../../domain/time';
import { ensureLocalCerts } from '../../scripts/emulators/certs';
import { issueToken, MARKETPLACE_RESOURCE, startEntraEmulator } from '../../scripts/emulators/entra';
import type { SendOutcome } from '../../marketplaces/types';
import type { AzureMarketplaceClient } from '../../marketplaces/azure';
import { APP, OTHER_APP, PLAN, TENANT, admin, azureRecord, emulatorCalls, emulatorRecords, newResource, raw, startAzureStack, token, type AzureStack } from '../../scripts/lib/azure-stack';

const HOUR = 1000;
const WINDOW_HOURS = 24;
const API = '?api-version=2018-08-31';

let stack: AzureStack;
let azure: AzureMarketplaceClient;
/** Believes the window is far longer than the emulator's, so it sends what ours would hold back. */
let lax: AzureMarketplaceClient;
let goodToken: string;
let skewMs = 0;
const clock = () => Date.now() + skewMs;

/** Start of the hour slot `back` hours ago. */
function slot(back = 1): number {
  return hourStart(clock(), HOUR) - back * HOUR;
}

function assertKind(o: SendOutcome | undefined, kind: SendOutcome['kind'], code?: string): void {
  assert.ok(o, 'no outcome');
  assert.equal(o.kind, kind, JSON.stringify(o));
  if (code) assert.equal('code' in o ? o.code : undefined, code, JSON.stringify(o));
}

function wire(resource: string, fields: Partial<{ quantity: number; dimension: string; effectiveStartTime: string; planId: string }> = {}) {
  return { resourceId: resource, quantity: 1, dimension: 'control_plane', effectiveStartTime: new Date(slot()).toISOString(), planId: PLAN, ...fields };
}

before(async () => {
  stack = await startAzureStack({ hourMs: HOUR, acceptanceHours: WINDOW_HOURS, now: clock });
  azure = stack.client({ now: clock, requestTimeoutMs: 500 });
  lax = stack.client({ now: clock, acceptanceHours: 100_000, requestTimeoutMs: 500 });
  goodToken = await token(stack);
});

after(async () => {
  await stack.close();
});

beforeEach(async () => {
  skewMs = 0;
  await admin(stack, 'POST', '/_emulator/reset');
});

void describe('local certificates', () => {
  void test('one CA per directory, reused, with a server certificate for localhost and 127.0.0.1 signed by it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'remit-certs-test-'));
    try {
      const [a, b] = await Promise.all([ensureLocalCerts(dir), ensureLocalCerts(dir)]);
      assert.equal(a.caPem, b.caPem, 'concurrent callers must agree on one CA');
      const again = await ensureLocalCerts(dir);
      assert.equal(again.certPem, a.certPem, 'made once, then read back');
      assert.equal(again.caFile, path.join(dir, 'ca.pem'));
      const ca = new X509Certificate(a.caPem);
      const cert = new X509Certificate(a.certPem);
      assert.ok(ca.ca);
      assert.ok(cert.verify(ca.publicKey));
      assert.equal(cert.checkHost('localhost'), 'localhost');
      assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

void describe('Entra emulator', () => {
  void test('serves what MSAL calls: the openid configuration, then the client-credentials token', async () => {
    stack.entra.reset();
    const t = await token(stack);
    const calls = stack.entra.calls().map((c) => `${c.method} ${c.path} ${c.status}`);
    assert.deepEqual(calls, [`GET /${TENANT}/v2.0/.well-known/openid-configuration 200`, `POST /${TENANT}/oauth2/v2.0/token 200`]);
    const claims = JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    assert.equal(claims.aud, MARKETPLACE_RESOURCE);
    assert.equal(claims.tid, TENANT);
    assert.equal(claims.appid, APP.clientId);
    assert.ok(!JSON.stringify(stack.entra.calls()).includes(APP.clientSecret), 'the call log must not hold the secret');
  });

  void test('a wrong client secret is refused, and our client calls it terminal without sending anything', async () => {
    const wrong = stack.client({ clientSecret: 'not-the-secret' });
    const [o] = await wrong.send([azureRecord({ resource: newResource(), timestampMs: slot() })]);
    assertKind(o, 'terminal', 'marketplace_rejected');
    assert.match((o as { reason: string }).reason, /Entra refused/);
    assert.ok(!(o as { reason: string }).reason.includes('not-the-secret'), 'the reason must not echo the secret');
    assert.equal((await emulatorCalls(stack)).length, 0);
  });

  void test('an unreachable Entra is retryable: nothing was sent', async () => {
    const down = stack.client({ authorityHost: 'https://127.0.0.1:1' });
    const [o] = await down.send([azureRecord({ resource: newResource(), timestampMs: slot() })]);
    assertKind(o, 'retryable', 'marketplace_unavailable');
  });
});

void describe('authentication at the metering API', () => {
  void test('no token, a foreign token, a token for another audience or an expired one: 403 Forbidden', async () => {
    const body = { request: [wire(newResource())] };
    const none = await raw(stack, 'POST', `/api/batchUsageEvent${API}`, { body });
    assert.equal(none.status, 403);
    assert.equal(none.body.code, 'Forbidden');

    const now = Math.floor(Date.now() / 1000);
    const claims = { aud: MARKETPLACE_RESOURCE, iss: `https://sts.windows.net/${TENANT}/`, tid: TENANT, appid: APP.clientId, azp: APP.clientId, sub: APP.clientId, oid: APP.clientId, idtyp: 'app' as const, ver: '1.0' as const, iat: now, nbf: now, exp: now + 600, jti: 'x' };
    const foreign = await raw(stack, 'POST', `/api/batchUsageEvent${API}`, { body, token: issueToken(claims, 'some-other-signing-key') });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.body.code, 'Forbidden');

    const otherAudience = await token(stack, APP, 'https://management.azure.com/.default');
    assert.equal((await raw(stack, 'POST', `/api/batchUsageEvent${API}`, { body, token: otherAudience })).status, 403);

    const expired = issueToken({ ...claims, exp: now - 10 }, 'remit-local-entra-emulator-signing-key');
    assert.equal((await raw(stack, 'POST', `/api/batchUsageEvent${API}`, { body, token: expired })).status, 403);

    assert.equal((await raw(stack, 'GET', `/api/usageEvents${API}&usageStartDate=2026-01-01`)).status, 403);
    assert.equal((await emulatorRecords(stack)).length, 0);
  });

  void test('a token from another Entra (another signing key) is refused even fresh: terminal after one retry with a new token', async () => {
    const otherEntra = await startEntraEmulator({ certPem: stack.certs.certPem, keyPem: stack.certs.keyPem, tenantId: TENANT, clients: [APP], tokenSecret: 'another-entra' });
    try {
      const c = stack.client({ authorityHost: otherEntra.url });
      const [o] = await c.send([azureRecord({ resource: newResource(), timestampMs: slot() })]);
      assertKind(o, 'terminal', 'marketplace_rejected');
      assert.match((o as { reason: string }).reason, /403/);
      const calls = await emulatorCalls(stack);
      assert.equal(calls.length, 2, 'one retry with a fresh token, no more');
      assert.ok(calls.every((c) => c.httpStatus === 403));
      assert.equal(otherEntra.calls().filter((c) => c.path.endsWith('/token')).length, 2, 'the retry used a newly issued token');
    } finally {
      await otherEntra.close();
    }
  });

  void test('x-ms-requestid and x-ms-correlationid are echoed, or made when absent', async () => {
    const r = await raw(stack, 'POST', `/api/usageEvent${API}`, { body: wire(newResource()), token: goodToken, headers: { 'x-ms-requestid': 'req-1', 'x-ms-correlationid': 'corr-1' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-ms-requestid'], 'req-1');
    assert.equal(r.headers['x-ms-correlationid'], 'corr-1');
    const made = await raw(stack, 'POST', `/api/usageEvent${API}`, { body: wire(newResource()), token: goodToken });
    assert.match(String(made.headers['x-ms-requestid']), /^[0-9a-f-]{36}$/);
    assert.match(String(made.headers['x-ms-correlationid']), /^[0-9a-f-]{36}$/);
  });

  void test('the api-version is required', async () => {
    const r = await raw(stack, 'POST', '/api/usageEvent', { body: wire(newResource()), token: goodToken });
    assert.equal(r.status, 400);
  });
});

void describe('batch shape', () => {
  void test('26 events or none: 400 BadArgument, nothing stored', async () => {
    const events = Array.from({ length: 26 }, () => wire(newResource()));
    const big = await raw(stack, 'POST', `/api/batchUsageEvent${API}`, { body: { request: events }, token: goodToken });
    assert.equal(big.status, 400);
    assert.equal(big.body.code, 'BadArgument');
    assert.equal(big.body.target, 'batchUsageEventRequest');
    assert.match(String(big.body.message), /more than 25/);
    const empty = await raw(stack, 'POST', `/api/batchUsageEvent${API}`, { body: { request: [] }, token: goodToken });
    assert.equal(empty.status, 400);
    assert.equal(empty.body.code, 'BadArgument');
    const bare = await raw(stack, 'POST', `/api/batchUsageEvent${API}`, { body: [wire(newResource())], token: goodToken });
    assert.equal(bare.status, 400, 'a bare array without the request wrapper is refused');
    const ok = await raw<{ count: number }>(stack, 'POST', `/api/batchUsageEvent${API}`, { body: { request: events.slice(0, 25) }, token: goodToken });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.count, 25);
    assert.equal((await emulatorRecords(stack)).length, 25);
  });

  void test('our client never builds a call of more than 25 events', async () => {
    const resource = newResource();
    const records = Array.from({ length: 26 }, (_, i) => azureRecord({ resource, timestampMs: slot(i + 1) }));
    await assert.rejects(azure.send(records), /at most 25/);
    assert.equal(azure.maxBatchSize, 25);
  });
});

void describe('accepted events and duplicates', () => {
  void test('accepted events carry the usageEventId that the emulator lists as receipt', async () => {
    const resource = newResource();
    const records = [azureRecord({ resource, timestampMs: slot(1), quantity: 3 }), azureRecord({ resource, timestampMs: slot(2) }), azureRecord({ resource, dimension: 'four_vcpu_hour', timestampMs: slot(1), quantity: 7 })];
    const outcomes = await azure.send(records);
    const stored = await emulatorRecords(stack);
    assert.equal(stored.length, 3);
    outcomes.forEach((o, i) => {
      assertKind(o, 'accepted');
      const rec = stored.find((s) => s.receiptId === (o as { receiptId: string }).receiptId);
      assert.ok(rec, 'receipt is the stored usageEventId');
      assert.equal(rec.quantity, records[i]!.quantity);
      assert.equal(rec.dimension, records[i]!.dimension);
      assert.equal(rec.timestampMs, records[i]!.timestampMs);
      assert.equal(rec.customer, resource);
    });
    const calls = await emulatorCalls(stack);
    assert.equal(calls.length, 1, 'one batchUsageEvent call for the three');
    assert.equal(calls[0]!.operation, 'batchUsageEvent');
  });

  void test('single endpoint: 200 Accepted, then 409 Conflict with the accepted event, even for an identical re-send', async () => {
    const event = wire(newResource(), { quantity: 5 });
    const first = await raw(stack, 'POST', `/api/usageEvent${API}`, { body: event, token: goodToken });
    assert.equal(first.status, 200);
    assert.equal(first.body.status, 'Accepted');
    assert.match(String(first.body.messageTime), /\.\d{7}Z$/);
    const again = await raw<{ code: string; additionalInfo: { acceptedMessage: Record<string, unknown> } }>(stack, 'POST', `/api/usageEvent${API}`, { body: event, token: goodToken });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'Conflict');
    assert.equal(again.body.additionalInfo.acceptedMessage.usageEventId, first.body.usageEventId);
    assert.equal(again.body.additionalInfo.acceptedMessage.quantity, 5);
    assert.equal(again.body.additionalInfo.acceptedMessage.status, 'Duplicate');
    const other = await raw<{ additionalInfo: { acceptedMessage: Record<string, unknown> } }>(stack, 'POST', `/api/usageEvent${API}`, { body: { ...event, quantity: 9 }, token: goodToken });
    assert.equal(other.status, 409);
    assert.equal(other.body.additionalInfo.acceptedMessage.quantity, 5, 'the first write wins');
    assert.equal((await emulatorRecords(stack)).length, 1);
  });

  void test('batch: Duplicate with the accepted event, and the same key twice in one batch keeps the first', async () => {
    const resource = newResource();
    const at = new Date(slot()).toISOString();
    // A later minute of the same hour is the same slot.
    const sameHour = new Date(slot() + HOUR / 2).toISOString();
    const r = await raw<{ result: Record<string, unknown>[] }>(stack, 'POST', `/api/batchUsageEvent${API}`, {
      body: { request: [wire(resource, { effectiveStartTime: at, quantity: 2 }), wire(resource, { effectiveStartTime: sameHour, quantity: 3 })] },
      token: goodToken,
    });
    assert.equal(r.status, 200);
    const [a, b] = r.body.result;
    assert.equal(a!.status, 'Accepted');
    assert.equal(b!.status, 'Duplicate');
    assert.equal(b!.messageTime, '0001-01-01T00:00:00');
    assert.equal(b!.usageEventId, undefined);
    const accepted = (b!.error as { additionalInfo: { acceptedMessage: Record<string, unknown> } }).additionalInfo.acceptedMessage;
    assert.equal(accepted.usageEventId, a!.usageEventId);
    assert.equal(accepted.quantity, 2);
    const records = await emulatorRecords(stack);
    assert.equal(records.length, 1);
    assert.equal(records[0]!.quantity, 2);
  });

  void test('a duplicate with our quantity is ours (success); another quantity is terminal with the accepted quantity in the reason', async () => {
    const resource = newResource();
    const rec = azureRecord({ resource, timestampMs: slot(), quantity: 4 });
    const [first] = await azure.send([rec]);
    assertKind(first, 'accepted');
    const [again] = await azure.send([rec]);
    assertKind(again, 'accepted');
    assert.equal((again as { receiptId: string }).receiptId, (first as { receiptId: string }).receiptId, 'the accepted event is the receipt');
    const [different] = await azure.send([{ ...rec, quantity: 6 }]);
    assertKind(different, 'terminal', 'marketplace_duplicate_record');
    assert.match((different as { reason: string }).reason, /quantity 4 \(ours 6\)/);
    assertKind(await azure.resolve({ ...rec, quantity: 6 }), 'terminal', 'marketplace_duplicate_record');
    assert.equal((await emulatorRecords(stack)).length, 1);
  });

  void test('an ARM resource id goes as resourceUri and is deduplicated like any resource', async () => {
    const uri = `/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Solutions/applications/${newResource()}`;
    const rec = azureRecord({ resource: uri, timestampMs: slot() });
    assertKind((await azure.send([rec]))[0], 'accepted');
    assertKind((await azure.send([rec]))[0], 'accepted');
    const records = await emulatorRecords(stack);
    assert.equal(records.length, 1);
    assert.equal(records[0]!.resourceUri, uri);
    assert.equal(records[0]!.resourceId, undefined);
    assert.equal((await azure.lookup(rec)).found, true, 'the read-back finds it by its URI');
  });
});

void describe('the acceptance window', () => {
  void test('the emulator refuses events older than the window with Expired, relative to hourMs', async () => {
    const resource = newResource();
    const r = await raw<{ result: Record<string, unknown>[] }>(stack, 'POST', `/api/batchUsageEvent${API}`, {
      body: { request: [wire(resource, { effectiveStartTime: new Date(slot(WINDOW_HOURS + 2)).toISOString() }), wire(resource, { effectiveStartTime: new Date(slot(WINDOW_HOURS - 2)).toISOString() })] },
      token: goodToken,
    });
    assert.deepEqual(r.body.result.map((x) => x.status), ['Expired', 'Accepted']);
    const single = await raw(stack, 'POST', `/api/usageEvent${API}`, { body: wire(resource, { effectiveStartTime: new Date(slot(WINDOW_HOURS + 3)).toISOString() }), token: goodToken });
    assert.equal(single.status, 400);
  });

  void test('Azure saying Expired is terminal window-expired when the read-back shows nothing recorded', async () => {
    const [o] = await lax.send([azureRecord({ resource: newResource(), timestampMs: slot(WINDOW_HOURS + 2) })]);
    assertKind(o, 'terminal', 'marketplace_window_expired');
    const ops = (await emulatorCalls(stack)).map((c) => c.operation);
    assert.deepEqual(ops, ['batchUsageEvent', 'usageEvents'], 'the read-back checked that no earlier send landed');
  });

  void test('our client keeps a stale event out of the batch and does not sink the others', async () => {
    const resource = newResource();
    const outcomes = await azure.send([azureRecord({ resource, timestampMs: slot(WINDOW_HOURS + 1) }), azureRecord({ resource, timestampMs: slot(2) })]);
    assertKind(outcomes[0], 'terminal', 'marketplace_window_expired');
    assertKind(outcomes[1], 'accepted');
    const batch = (await emulatorCalls(stack)).filter((c) => c.operation === 'batchUsageEvent');
    assert.equal(batch.length, 1);
    assert.equal(batch[0]!.eventCount, 1);
  });

  void test('an event recorded before the window closed resolves as accepted by read-back, never as expired', async () => {
    const rec = azureRecord({ resource: newResource(), timestampMs: slot(1), quantity: 2 });
    await admin(stack, 'POST', '/_emulator/faults', { kind: 'lost-response' });
    assertKind((await azure.send([rec]))[0], 'ambiguous');
    skewMs = (WINDOW_HOURS + 2) * HOUR;
    const o = await azure.resolve(rec);
    assertKind(o, 'accepted');
    assert.equal((await emulatorRecords(stack)).length, 1);
    // Another quantity for that hour is a duplicate, not an expiry to re-bill.
    assertKind(await azure.resolve({ ...rec, quantity: 3 }), 'terminal', 'marketplace_duplicate_record');
  });
});

void describe('per-event statuses', () => {
  void test('each rejection maps to its error code', async () => {
    const notFound = newResource();
    const notAuthorized = newResource();
    const suspended = newResource();
    const unsubscribed = newResource();
    const failing = newResource();
    const otherPlan = newResource();
    await admin(stack, 'POST', '/_emulator/resources', { resource: notFound, state: 'Unknown' });
    await admin(stack, 'POST', '/_emulator/resources', { resource: notAuthorized, state: 'Subscribed', clientId: OTHER_APP.clientId });
    await admin(stack, 'POST', '/_emulator/resources', { resource: suspended, state: 'Suspended' });
    await admin(stack, 'POST', '/_emulator/resources', { resource: unsubscribed, state: 'Unsubscribed' });
    await admin(stack, 'POST', '/_emulator/resources', { resource: failing, state: 'Failing' });
    await admin(stack, 'POST', '/_emulator/resources', { resource: otherPlan, state: 'Subscribed', planId: 'plan-silver' });
    const t = slot();
    const cases: [ReturnType<typeof azureRecord>, SendOutcome['kind'], string | undefined][] = [
      [azureRecord({ resource: notFound, timestampMs: t }), 'terminal', 'marketplace_customer_not_subscribed'],
      [azureRecord({ resource: notAuthorized, timestampMs: t }), 'terminal', 'subscription_not_found'],
      [azureRecord({ resource: suspended, timestampMs: t }), 'terminal', 'subscription_terminated'],
      [azureRecord({ resource: unsubscribed, timestampMs: t }), 'terminal', 'subscription_terminated'],
      [azureRecord({ resource: failing, timestampMs: t }), 'retryable', 'marketplace_unavailable'],
      [azureRecord({ resource: otherPlan, timestampMs: t }), 'terminal', 'marketplace_rejected'],
      [azureRecord({ resource: newResource(), dimension: 'managed_node', timestampMs: t }), 'terminal', 'unsupported_metric'],
      [azureRecord({ resource: newResource(), timestampMs: t }), 'accepted', undefined],
    ];
    const outcomes = await azure.send(cases.map(([r]) => r));
    cases.forEach(([, kind, code], i) => assertKind(outcomes[i], kind, code));
    // The single endpoint (resolve) says the same.
    for (const [r, kind, code] of cases) {
      if (kind !== 'accepted') assertKind(await azure.resolve(r), kind, code);
    }
    assert.equal((await emulatorRecords(stack)).length, 1);

    // The emulator's own statuses, on the wire.
    const r = await raw<{ result: { status: string }[] }>(stack, 'POST', `/api/batchUsageEvent${API}`, {
      body: { request: [wire(notFound), wire(notAuthorized), wire(suspended), wire(failing), wire(newResource(), { dimension: 'nope' }), wire(newResource(), { quantity: 0 }), { quantity: 1 }] },
      token: goodToken,
    });
    assert.deepEqual(r.body.result.map((x) => x.status), ['ResourceNotFound', 'ResourceNotAuthorized', 'ResourceNotActive', 'Error', 'InvalidDimension', 'InvalidQuantity', 'BadArgument']);
  });

  void test('a quantity of 0 is never sent (Azure takes > 0 only)', async () => {
    const [o] = await azure.send([azureRecord({ resource: newResource(), timestampMs: slot(), quantity: 0 })]);
    assertKind(o, 'terminal', 'marketplace_rejected');
    assert.equal((await emulatorCalls(stack)).length, 0);
  });

  void test('known dimensions are configurable', async () => {
    const custom = await startAzureStack({ hourMs: HOUR, acceptanceHours: WINDOW_HOURS, dimensions: ['managed_node'] });
    try {
      const c = custom.client();
      const t = hourStart(Date.now(), HOUR) - HOUR;
      const out = await c.send([azureRecord({ resource: newResource(), dimension: 'managed_node', timestampMs: t }), azureRecord({ resource: newResource(), dimension: 'control_plane', timestampMs: t })]);
      assertKind(out[0], 'accepted');
      assertKind(out[1], 'terminal', 'unsupported_metric');
    } finally {
      await custom.close();
    }
  });
});

void describe('faults', () => {
  void test('throttle: 429 with Retry-After, retryable rate limit, nothing stored', async () => {
    await admin(stack, 'POST', '/_emulator/faults', { kind: 'throttle' });
    const [o] = await azure.send([azureRecord({ resource: newResource(), timestampMs: slot() })]);
    assertKind(o, 'retryable', 'marketplace_rate_limit');
    assert.equal((o as { retryAfterMs?: number }).retryAfterMs, 1000);
    assert.equal((await emulatorRecords(stack)).length, 0);
    const calls = await emulatorCalls(stack);
    assert.equal(calls[0]!.httpStatus, 429);
  });

  void test('server-error: 500 then 503, retryable unavailable, nothing stored', async () => {
    await admin(stack, 'POST', '/_emulator/faults', { kind: 'server-error', count: 2 });
    const rec = azureRecord({ resource: newResource(), timestampMs: slot() });
    assertKind((await azure.send([rec]))[0], 'retryable', 'marketplace_unavailable');
    assertKind(await azure.resolve(rec), 'retryable', 'marketplace_unavailable');
    assert.deepEqual((await emulatorCalls(stack)).map((c) => c.httpStatus), [500, 503]);
    assert.equal((await emulatorRecords(stack)).length, 0);
    assertKind(await azure.resolve(rec), 'accepted');
  });

  void test('timeout: ambiguous, nothing stored; resolve sends it once and it is accepted', async () => {
    await admin(stack, 'POST', '/_emulator/faults', { kind: 'timeout' });
    const rec = azureRecord({ resource: newResource(), timestampMs: slot(), quantity: 3 });
    const [o] = await azure.send([rec]);
    assertKind(o, 'ambiguous');
    assert.equal((await emulatorRecords(stack)).length, 0);
    const resolved = await azure.resolve(rec);
    assertKind(resolved, 'accepted');
    const records = await emulatorRecords(stack);
    assert.equal(records.length, 1);
    assert.equal(records[0]!.receiptId, (resolved as { receiptId: string }).receiptId);
  });

  void test('lost-response: stored, answer lost; after resolve exactly one accepted event and a success outcome', async () => {
    const resource = newResource();
    await admin(stack, 'POST', '/_emulator/faults', { kind: 'lost-response', match: { customer: resource } });
    const rec = azureRecord({ resource, timestampMs: slot(), quantity: 5 });
    const [o] = await azure.send([rec]);
    assertKind(o, 'ambiguous');
    const stored = await emulatorRecords(stack);
    assert.equal(stored.length, 1, 'the emulator recorded it before dropping the connection');
    const resolved = await azure.resolve(rec);
    assertKind(resolved, 'accepted');
    assert.equal((resolved as { receiptId: string }).receiptId, stored[0]!.receiptId, 'the receipt is the event Azure already held');
    // Resolving again (a crash after resolve) is still the same single event.
    assertKind(await azure.resolve(rec), 'accepted');
    const records = await emulatorRecords(stack);
    assert.equal(records.length, 1, 'never a double bill');
    assert.equal(records[0]!.quantity, 5);
  });

  void test('lost-response on a whole batch: every event resolves to exactly one accepted event', async () => {
    await admin(stack, 'POST', '/_emulator/faults', { kind: 'lost-response' });
    const resource = newResource();
    const recs = [1, 2, 3].map((h) => azureRecord({ resource, timestampMs: slot(h), quantity: h }));
    const out = await azure.send(recs);
    out.forEach((o) => assertKind(o, 'ambiguous'));
    for (const r of recs) assertKind(await azure.resolve(r), 'accepted');
    const records = await emulatorRecords(stack);
    assert.deepEqual(records.map((r) => r.quantity).sort(), [1, 2, 3]);
  });

  void test('not-subscribed: ResourceNotFound for the matching events only', async () => {
    const a = newResource();
    const b = newResource();
    await admin(stack, 'POST', '/_emulator/faults', { kind: 'not-subscribed', count: 5, match: { customer: a } });
    const out = await azure.send([azureRecord({ resource: a, timestampMs: slot() }), azureRecord({ resource: b, timestampMs: slot() }), azureRecord({ resource: a, dimension: 'four_vcpu_hour', timestampMs: slot() })]);
    assertKind(out[0], 'terminal', 'marketplace_customer_not_subscribed');
    assertKind(out[1], 'accepted');
    assertKind(out[2], 'terminal', 'marketplace_customer_not_subscribed');
  });

  void test('expired: Expired status for the matching dimension only', async () => {
    const resource = newResource();
    await admin(stack, 'POST', '/_emulator/faults', { kind: 'expired', match: { dimension: 'four_vcpu_hour' } });
    const out = await azure.send([azureRecord({ resource, timestampMs: slot() }), azureRecord({ resource, dimension: 'four_vcpu_hour', timestampMs: slot() })]);
    assertKind(out[0], 'accepted');
    assertKind(out[1], 'terminal', 'marketplace_window_expired');
  });

  void test('a fault with durationMs hits every matching call until it runs out', async () => {
    await admin(stack, 'POST', '/_emulator/faults', { kind: 'throttle', durationMs: 300 });
    const rec = azureRecord({ resource: newResource(), timestampMs: slot() });
    assertKind((await azure.send([rec]))[0], 'retryable', 'marketplace_rate_limit');
    assertKind(await azure.resolve(rec), 'retryable', 'marketplace_rate_limit');
    await new Promise((r) => setTimeout(r, 350));
    assertKind(await azure.resolve(rec), 'accepted');
  });

  void test('the admin API lists, clears and refuses faults', async () => {
    assert.equal((await admin(stack, 'POST', '/_emulator/faults', { kind: 'unprocessed' })).status, 400, 'AWS-only');
    assert.equal((await admin(stack, 'POST', '/_emulator/faults', { kind: 'nonsense' })).status, 400);
    await admin(stack, 'POST', '/_emulator/faults', [{ kind: 'throttle', count: 3 }, { kind: 'timeout' }]);
    assert.equal((await admin<{ faults: unknown[] }>(stack, 'GET', '/_emulator/faults')).body.faults.length, 2);
    await admin(stack, 'DELETE', '/_emulator/faults');
    assert.equal((await admin<{ faults: unknown[] }>(stack, 'GET', '/_emulator/faults')).body.faults.length, 0);
    assertKind((await azure.send([azureRecord({ resource: newResource(), timestampMs: slot() })]))[0], 'accepted');
  });
});

void describe('transport failures', () => {
  void test('connection refused: retryable, nothing sent', async () => {
    const c = stack.client({ endpoint: 'https://127.0.0.1:1' });
    assertKind((await c.send([azureRecord({ resource: newResource(), timestampMs: slot() })]))[0], 'retryable', 'marketplace_unavailable');
  });

  void test('an untrusted certificate fails the handshake: retryable, nothing sent (no CA, no trust)', async () => {
    const c = stack.client({ caPem: undefined });
    const [o] = await c.send([azureRecord({ resource: newResource(), timestampMs: slot() })]);
    assertKind(o, 'retryable', 'marketplace_unavailable');
    assert.equal((await emulatorCalls(stack)).length, 0);
  });
});

void describe('read-back and admin', () => {
  void test('usageEvents aggregates what was recorded per day, resource and dimension; lookup reads one hour', async () => {
    const resource = newResource();
    // Hours fixed once: with 1-second hours, slot() read later could already be the next hour.
    const [h1, h2, h3] = [slot(1), slot(2), slot(3)];
    const recs = [azureRecord({ resource, timestampMs: h1, quantity: 2 }), azureRecord({ resource, timestampMs: h2, quantity: 3 }), azureRecord({ resource, dimension: 'four_vcpu_hour', timestampMs: h1, quantity: 7 })];
    (await azure.send(recs)).forEach((o) => assertKind(o, 'accepted'));
    const day = new Date(h1).toISOString().slice(0, 10);
    const rows = await raw<Record<string, unknown>[]>(stack, 'GET', `/api/usageEvents${API}&usageStartDate=${day}`, { token: goodToken });
    assert.equal(rows.status, 200);
    const mine = rows.body.filter((r) => r.usageResourceId === resource);
    // Two days only if the test runs across UTC midnight; the totals hold either way.
    const total = (dim: string) => mine.filter((r) => r.dimension === dim).reduce((n, r) => n + Number(r.submittedQuantity), 0);
    assert.equal(total('control_plane'), 5);
    assert.equal(total('four_vcpu_hour'), 7);
    assert.ok(mine.every((r) => r.reconStatus === 'Accepted' && r.planId === PLAN));

    const viaClient = await azure.usageEvents({ startMs: h2, dimension: 'control_plane' });
    assert.equal(viaClient.filter((r) => r.usageResourceId === resource).reduce((n, r) => n + r.submittedCount, 0), 2);

    const found = await azure.lookup(recs[1]!);
    assert.deepEqual({ found: found.found, quantity: found.found === true ? found.quantity : undefined }, { found: true, quantity: 3 });
    assert.deepEqual(await azure.lookup(azureRecord({ resource, timestampMs: h3 })), { found: false });
    assert.equal((await raw(stack, 'GET', `/api/usageEvents${API}`, { token: goodToken })).status, 400, 'usageStartDate is required');
  });

  void test('calls are logged with request ids; reset forgets records, calls and faults', async () => {
    await azure.send([azureRecord({ resource: newResource(), timestampMs: slot() })]);
    await admin(stack, 'POST', '/_emulator/faults', { kind: 'throttle' });
    const calls = await emulatorCalls(stack);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.clientId, APP.clientId);
    assert.deepEqual(calls[0]!.statuses, { Accepted: 1 });
    assert.match(calls[0]!.requestId, /^[0-9a-f-]{36}$/);
    await admin(stack, 'POST', '/_emulator/reset');
    assert.equal((await emulatorRecords(stack)).length, 0);
    assert.equal((await emulatorCalls(stack)).length, 0);
    assert.equal((await admin<{ faults: unknown[] }>(stack, 'GET', '/_emulator/faults')).body.faults.length, 0);
  });
});
