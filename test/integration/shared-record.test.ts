// The workflow is the marketplace record: keys that differ only by org, SLA or usage but bill the
// same marketplace customer and dimension go out as ONE record per hour whose quantity is the sum
// of their bills (each computed by the billing rules on its own), on the real stack. Before, each
// key sent its own record for the hour and the marketplace rejected all but the first.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PLAN, newResource } from '../../scripts/lib/azure-stack';
import { eventually, startTestStack, type TestStack } from '../../scripts/lib/stack-harness';

const HOUR_MS = 3000;
let stack: TestStack;

before(async () => {
  stack = await startTestStack({ hourMs: HOUR_MS, graceHours: 0.25 });
});
after(async () => stack?.stop());

const KEYS = [
  { org: 'a', sla: 'Premium', usage: 'Production' },
  { org: 'a', sla: 'Standard', usage: 'Development/Test' },
  { org: 'b', sla: 'Premium', usage: 'Development/Test' },
  { org: 'b', sla: 'Standard', usage: 'Production' },
];

async function finished(orgs: string[]) {
  return eventually(async () => {
    const items = [];
    for (const org of orgs) items.push(...((await stack.request('GET', `/v1/remittances?orgId=${org}`)).body.items as any[]));
    return items.length === KEYS.length && items.every((i) => !['Pending', 'Sending'].includes(i.status)) ? items : undefined;
  }, 40_000, 'the four remittances to finish');
}

/** Post one tally per key at the start of a fresh hour, so that all four share one remittance hour. */
async function postAtHourStart(tallies: (hour: string) => unknown[]) {
  await new Promise((r) => setTimeout(r, stack.currentHourMs() + HOUR_MS - Date.now() + 20));
  const hour = stack.currentHourMs();
  const r = await stack.request('POST', '/v1/tallies', { tallies: tallies(new Date(hour).toISOString()) }, stack.tokens.ingest);
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return hour;
}

async function workflowOrgs(workflowId: string): Promise<string[]> {
  const desc = await stack.client.workflow.getHandle(workflowId).describe();
  return [...((desc.typedSearchAttributes.get({ name: 'OrgId', type: 'KEYWORD_LIST' } as never) as string[] | undefined) ?? [])].sort();
}

describe('one record per marketplace customer, dimension and hour', () => {
  it('AWS: four keys of one customer (two orgs, two SLAs, two usages) go out as one record of the summed quantity', async () => {
    const tag = randomUUID().slice(0, 8);
    const account = String(100000000000 + Math.floor(Math.random() * 899999999999));
    const orgs = [`org-${tag}-a`, `org-${tag}-b`];
    // vCPUs at billing factor 1, no contract needed: 2.2 -> 3, 1 -> 1, 4.5 -> 5, 0.1 -> 1: each key rounds up on its own.
    const values = [2.2, 1, 4.5, 0.1];
    const hour = await postAtHourStart((h) =>
      KEYS.map((k, i) => ({ orgId: `org-${tag}-${k.org}`, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: k.sla, usage: k.usage, billingProvider: 'aws', billingAccountId: account, hour: h, value: values[i] })),
    );
    const items = await finished(orgs);
    assert.deepEqual(items.map((i) => i.status), ['Succeeded', 'Succeeded', 'Succeeded', 'Succeeded'], JSON.stringify(items.map((i) => [i.status, i.reason])));
    assert.deepEqual(items.map((i) => i.quantity).sort(), [1, 1, 3, 5]);
    assert.equal(new Set(items.map((i) => i.recordId)).size, 1, 'all four keys travel in one record');
    assert.equal(new Set(items.map((i) => i.workflowId)).size, 1, 'one workflow for the record');

    const records = stack.aws.records().filter((r) => r.customer === account);
    assert.equal(records.length, 1, 'exactly one record reached AWS');
    assert.equal(records[0]!.quantity, 10);
    assert.equal(records[0]!.dimension, 'vCPU_hours');
    assert.equal(records[0]!.timestampMs, hour);
    assert.ok(items.every((i) => i.receiptId === records[0]!.receiptId));
    assert.ok(!stack.aws.calls().some((c: any) => JSON.stringify(c).includes('DuplicateRecord')), 'no duplicate rejection');
    assert.ok(items[0].workflowId.startsWith(`remittance/aws/${account}/`), items[0].workflowId);
    assert.deepEqual(await workflowOrgs(items[0].workflowId), orgs, 'OrgId lists every org the record carries');
    assert.deepEqual((await stack.audit()).violations, []);
  });

  it('Azure: four keys of one resource and dimension go out as one usage event of the summed quantity', async () => {
    const tag = randomUUID().slice(0, 8);
    const account = `azure-${tag}`;
    const orgs = [`org-${tag}-a`, `org-${tag}-b`];
    const resource = newResource();
    const monthStart = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1)).toISOString();
    for (const orgId of orgs) {
      const r = await stack.request('PUT', `/v1/contracts/c-${orgId}`, { orgId, billingProvider: 'azure', billingAccountId: account, productTag: 'rosa', startDate: monthStart, azure: { resourceId: resource, planId: PLAN }, metrics: [] }, stack.tokens.ingest);
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    // rosa Instance-hours at billing factor 1: 1.5 -> 2, 2 -> 2, 0.5 -> 1, 3 -> 3.
    const values = [1.5, 2, 0.5, 3];
    await postAtHourStart((h) =>
      KEYS.map((k, i) => ({ orgId: `org-${tag}-${k.org}`, productTag: 'rosa', metric: 'Instance-hours', sla: k.sla, usage: k.usage, billingProvider: 'azure', billingAccountId: account, hour: h, value: values[i] })),
    );
    const items = await finished(orgs);
    assert.deepEqual(items.map((i) => i.status), ['Succeeded', 'Succeeded', 'Succeeded', 'Succeeded'], JSON.stringify(items.map((i) => [i.status, i.reason])));
    assert.equal(new Set(items.map((i) => i.recordId)).size, 1, 'all four keys travel in one record');
    const events = stack.azure.azure.records().filter((r) => r.customer === resource);
    assert.equal(events.length, 1, 'exactly one usage event reached Azure');
    assert.equal(events[0]!.quantity, 8);
    assert.equal(events[0]!.dimension, 'control_plane');
    assert.ok(items.every((i) => i.receiptId === events[0]!.receiptId));
    assert.deepEqual(await workflowOrgs(items[0].workflowId), orgs);
    assert.deepEqual((await stack.audit()).violations, []);
  });
});
