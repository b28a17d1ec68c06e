// Contract stories on the real stack with scaled hours and the hourly sweep running: a contract
// that arrives three hours after the usage, a contract with committed amounts added mid-month,
// and usage stored by an API that died before it could start a workflow. Each ends with
// `remit audit` clean.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { storeTallies } from '../../db/tallies';
import type { RemittanceKey } from '../../domain/key';
import { eventually, startTestStack, type TestStack } from '../../scripts/lib/stack-harness';

const HOUR_MS = 2000;
let stack: TestStack;

before(async () => {
  stack = await startTestStack({ hourMs: HOUR_MS, graceHours: 0.25, awsAcceptanceHours: 10, sweep: true });
});
after(async () => stack?.stop());

const monthStart = () => {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)).toISOString();
};

function rosa(orgId: string, account: string, value: number, hourMs = stack.currentHourMs()) {
  return { orgId, productTag: 'rosa', metric: 'Cores', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: account, hour: new Date(hourMs).toISOString(), value };
}

async function putContract(id: string, orgId: string, account: string, startDate: string, metrics: Array<{ dimension: string; value: number }> = []) {
  const r = await stack.request('PUT', `/v1/contracts/${id}`, {
    orgId, billingProvider: 'aws', billingAccountId: account, productTag: 'rosa', startDate,
    aws: { productCode: 'rosa-hcp', customerAwsAccountId: account }, metrics,
  }, stack.tokens.ingest);
  assert.ok(r.status === 200 || r.status === 201, JSON.stringify(r.body));
  return r.body;
}

async function remittances(orgId: string): Promise<any[]> {
  return (await stack.request('GET', `/v1/remittances?orgId=${orgId}`)).body.items;
}

const settled = (items: any[]) => items.length > 0 && items.every((i) => !['Pending', 'Sending'].includes(i.status));
const billedTo = (account: string) => stack.aws.records().filter((r) => r.customer === account).reduce((s, r) => s + r.quantity, 0);
const account = () => String(700000000000 + Math.floor(Math.random() * 99999999999));

describe('contracts that come late or change mid-month', () => {
  it('a contract that arrives three hours after the usage: waiting, visible, then billed once with nothing lost', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const acct = account();
    assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [rosa(orgId, acct, 10)] }, stack.tokens.ingest)).status, 202);
    const [waiting] = await eventually(async () => {
      const all = await remittances(orgId);
      return all.length === 1 && all[0].status === 'WaitingForContract' ? all : undefined;
    }, 20_000, 'the waiting remittance');
    assert.match(waiting.reason, /contract/);
    // Three hours pass with no contract: nothing is sent, nothing is dropped.
    await new Promise((r) => setTimeout(r, 3 * HOUR_MS));
    assert.equal(billedTo(acct), 0);
    assert.ok((await remittances(orgId)).every((i) => i.status === 'WaitingForContract' || i.status === 'NothingDue'));

    await putContract(`c-${randomUUID().slice(0, 8)}`, orgId, acct, monthStart());
    const items = await eventually(async () => {
      const all = await remittances(orgId);
      return all.some((i) => i.status === 'Succeeded') && settled(all) ? all : undefined;
    }, 30_000, 'the billing after the contract arrived');
    assert.equal(billedTo(acct), 3, 'ceil(10 Cores x 0.25) = 3, billed once');
    assert.equal(items.filter((i) => i.status === 'Succeeded').length, 1);
    const first = items.find((i) => i.id === waiting.id);
    assert.ok(first.rebilledBy, 'the waiting hour says which remittance billed it');
    assert.deepEqual((await stack.audit()).violations, []);
  });

  it('a contract with committed amounts added mid-month covers usage from then on, and nothing is credited back', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const acct = account();
    await putContract(`c-${randomUUID().slice(0, 8)}`, orgId, acct, monthStart());
    assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [rosa(orgId, acct, 8)] }, stack.tokens.ingest)).status, 202);
    await eventually(async () => (await remittances(orgId)).find((i) => i.status === 'Succeeded'), 20_000, 'the first billing');
    assert.equal(billedTo(acct), 2, '8 Cores = 2 four_vcpu_hour, no coverage yet');

    // Mid-month (now), a second contract commits 5 four_vcpu_hour (20 Cores).
    await putContract(`c-${randomUUID().slice(0, 8)}`, orgId, acct, new Date(stack.currentHourMs()).toISOString(), [{ dimension: 'four_vcpu_hour', value: 5 }]);
    // Usage grows to 8 + 16 = 24 Cores = 6 units; 5 are covered; 2 already billed: nothing more
    // is due (never negative), then at 8 + 16 + 12 = 36 Cores = 9 units, 9 - 5 - 2 = 2 more.
    const next = stack.currentHourMs() + HOUR_MS;
    await new Promise((r) => setTimeout(r, next - Date.now() + 20));
    assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [rosa(orgId, acct, 16)] }, stack.tokens.ingest)).status, 202);
    await eventually(async () => {
      const all = await remittances(orgId);
      return all.length >= 2 && settled(all) ? all : undefined;
    }, 20_000, 'the covered hour');
    assert.equal(billedTo(acct), 2, 'covered usage is not billed and nothing is credited back');
    const later = stack.currentHourMs() + HOUR_MS;
    await new Promise((r) => setTimeout(r, later - Date.now() + 20));
    assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [rosa(orgId, acct, 12)] }, stack.tokens.ingest)).status, 202);
    await eventually(async () => (billedTo(acct) === 4 && settled(await remittances(orgId)) ? true : undefined), 20_000, 'the usage above the coverage to be billed');
    assert.deepEqual((await stack.audit()).violations, []);
  });

  it('usage stored by an API that died before starting a workflow is billed by the hourly sweep', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const acct = account();
    const key: RemittanceKey = { billingProvider: 'aws', billingAccountId: acct, orgId, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production' };
    // What POST /v1/tallies commits before it talks to Temporal, and nothing after.
    await storeTallies(stack.database, [{ key, hourMs: stack.currentHourMs(), value: '5' }]);
    const [done] = await eventually(async () => {
      const all = await remittances(orgId);
      return all.length === 1 && all[0].status === 'Succeeded' ? all : undefined;
    }, 30_000, 'the sweep to bill it');
    assert.equal(done.quantity, 5);
    assert.equal(billedTo(acct), 5);
    assert.deepEqual((await stack.audit()).violations, []);
  });
});
