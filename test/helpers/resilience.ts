// What the failure and operator stories on the real stack share (test/integration/resilience*.test.ts,
// operator-actions.test.ts).

import assert from 'node:assert/strict';
import type { TestStack } from '../../scripts/lib/stack-harness';

export function tally(stack: TestStack, orgId: string, account: string, value: number, hourMs = stack.currentHourMs()) {
  return {
    orgId,
    productTag: 'rhel-for-x86-els-payg-addon',
    metric: 'vCPUs',
    sla: 'Premium',
    usage: 'Production',
    billingProvider: 'aws',
    billingAccountId: account,
    hour: new Date(hourMs).toISOString(),
    value,
  };
}

export const newAccount = () => String(100000000000 + Math.floor(Math.random() * 899999999999));

export async function remittances(stack: TestStack, orgId: string): Promise<any[]> {
  const r = await stack.request('GET', `/v1/remittances?orgId=${orgId}`);
  assert.equal(r.status, 200);
  return r.body.items;
}

export const settled = (items: any[]) => items.length > 0 && items.every((i) => !['Pending', 'Sending'].includes(i.status));

export async function assertAuditClean(stack: TestStack) {
  const report = await stack.audit();
  const ledger = report.violations.length ? (await stack.database.pool.query('SELECT m.id, m.status, m.receipt_id, m.quantity, r.status AS r_status, r.bill FROM marketplace_records m LEFT JOIN remittances r ON r.record_id = m.id')).rows : [];
  assert.deepEqual(report.violations, [], `remit audit must pass; records: ${JSON.stringify(ledger)}`);
}

export async function fault(stack: TestStack, spec: unknown) {
  const r = await fetch(`${stack.aws.url}/_emulator/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec) });
  assert.equal(r.status, 200, await r.text());
}

/** AWS answers again: every queued fault is dropped, or only this customer's (other stories' stay). */
export async function clearFaults(stack: TestStack, customer?: string) {
  const body = customer === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ customer }) };
  const r = await fetch(`${stack.aws.url}/_emulator/faults`, { method: 'DELETE', ...body });
  assert.equal(r.status, 200, `AWS answers again: ${await r.text()}`);
}
