// Azure through the whole product: contract and tallies through the API, the hourly workflow,
// the real @azure/identity token flow and undici over HTTPS to the Azure and Entra emulators.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { eventually, startTestStack, type TestStack } from '../../scripts/lib/stack-harness';
import { PLAN, newResource } from '../../scripts/lib/azure-stack';

const HOUR_MS = 3000;
let stack: TestStack;

before(async () => {
  stack = await startTestStack({ hourMs: HOUR_MS, graceHours: 0.25 });
});
after(async () => stack?.stop());

async function contract(orgId: string, account: string, resourceId: string) {
  const now = new Date();
  const r = await stack.request('PUT', `/v1/contracts/c-${randomUUID().slice(0, 8)}`, {
    orgId,
    billingProvider: 'azure',
    billingAccountId: account,
    productTag: 'rosa',
    startDate: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString(),
    azure: { resourceId, planId: PLAN },
    metrics: [],
  }, stack.tokens.ingest);
  assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.body));
}

async function post(orgId: string, account: string, metric: string, value: number) {
  const r = await stack.request('POST', '/v1/tallies', {
    tallies: [{ orgId, productTag: 'rosa', metric, sla: 'Premium', usage: 'Production', billingProvider: 'azure', billingAccountId: account, hour: new Date(stack.currentHourMs()).toISOString(), value }],
  }, stack.tokens.ingest);
  assert.equal(r.status, 202, JSON.stringify(r.body));
}

async function finished(orgId: string) {
  return eventually(async () => {
    const r = await stack.request('GET', `/v1/remittances?orgId=${orgId}`);
    const items = r.body.items as any[];
    return items.length > 0 && items.every((i) => !['Pending', 'Sending'].includes(i.status)) ? items : undefined;
  }, 40_000, `remittances of ${orgId}`);
}

describe('Azure end to end', () => {
  it('bills rosa usage to Azure once, with an Entra token over HTTPS', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const account = `azure-acct-${randomUUID().slice(0, 8)}`;
    const resource = newResource();
    await contract(orgId, account, resource);
    await post(orgId, account, 'Cores', 10); // 10 Cores x 0.25 = 2.5 -> 3 four_vcpu_hour
    const [done] = await finished(orgId);
    assert.equal(done.status, 'Succeeded', done.reason);
    assert.equal(done.quantity, 3);
    const events = stack.azure.azure.records().filter((r) => r.customer === resource);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.quantity, 3);
    assert.equal(events[0]!.dimension, 'four_vcpu_hour');
    assert.equal(events[0]!.receiptId, done.receiptId);
    assert.deepEqual((await stack.audit()).violations, []);
  });

  it('a lost response ends with exactly one accepted event and a succeeded remittance', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const account = `azure-acct-${randomUUID().slice(0, 8)}`;
    const resource = newResource();
    await contract(orgId, account, resource);
    stack.azure.azure.faults.add({ kind: 'lost-response', count: 1, match: { customer: resource } });
    await post(orgId, account, 'Instance-hours', 2);
    const [done] = await finished(orgId);
    assert.equal(done.status, 'Succeeded', done.reason);
    const events = stack.azure.azure.records().filter((r) => r.customer === resource);
    assert.equal(events.length, 1, 'exactly one accepted event');
    assert.equal(events[0]!.quantity, 2);
    assert.ok(stack.azure.azure.calls().some((c: any) => String(c.outcome).includes('lost')), 'the answer really was lost');
    assert.deepEqual((await stack.audit()).violations, []);
  });

  it('usage of a metric with no Azure dimension fails visibly as unsupported_metric', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const account = `azure-acct-${randomUUID().slice(0, 8)}`;
    const r = await stack.request('POST', '/v1/tallies', {
      tallies: [{ orgId, productTag: 'ansible-aap-managed', metric: 'Instance-hours', sla: 'Premium', usage: 'Production', billingProvider: 'azure', billingAccountId: account, hour: new Date(stack.currentHourMs()).toISOString(), value: 1 }],
    }, stack.tokens.ingest);
    assert.equal(r.status, 202);
    const [done] = await finished(orgId);
    assert.equal(done.status, 'Failed');
    assert.equal(done.errorCode, 'unsupported_metric');
    assert.match(done.reason, /azure/i);
  });
});
