// The record of one remittance hour (domain/remittance.ts): the per-month decisions of
// domain/billing.ts folded into the single record the hour sends or records.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadCatalog } from '../../config/catalog';
import type { Contract } from '../../domain/contracts';
import type { RemittanceKey } from '../../domain/key';
import { decideRemittance } from '../../domain/remittance';

const catalog = loadCatalog(undefined, {});
const ACCOUNT = '111122223333';

function ansibleContract(contractId: string, startDate: string, licenseId: string): Contract {
  return {
    contractId,
    orgId: 'org-1',
    billingProvider: 'aws',
    billingAccountId: ACCOUNT,
    productTag: 'ansible-aap-managed',
    startDate,
    endDate: null,
    licenseId,
    aws: { productCode: 'ansible-code', customerAwsAccountId: ACCOUNT, licenseArn: null },
    azure: null,
    metrics: [{ dimension: 'managed_node', value: 1 }],
  };
}

void test('a gratis record carries the license of the newest licensed contract (issue 9, 3)', () => {
  const key: RemittanceKey = { billingProvider: 'aws', billingAccountId: ACCOUNT, orgId: 'org-1', productTag: 'ansible-aap-managed', metric: 'Managed-nodes', sla: 'Premium', usage: 'Production' };
  // Contracts from the 10th and the 20th of January, each covering 1 managed node: MTD 3 on the
  // 25th leaves 1 due, free because every contract starts after the 1st.
  const contracts = [ansibleContract('c-10', '2026-01-10T00:00:00.000Z', 'jan-10'), ansibleContract('c-20', '2026-01-20T00:00:00.000Z', 'jan-20')];
  const d = decideRemittance({ key, catalog, contracts, periods: [{ period: '2026-01', evaluatedAtMs: Date.parse('2026-01-25T12:00:00Z'), mtd: '3', earlier: [] }], remittanceHourMs: Date.parse('2026-01-25T12:00:00Z') });
  assert.equal(d.status, 'Gratis', d.reason ?? '');
  assert.equal(d.bill, 1);
  assert.equal(d.licenseId, 'jan-20');
  assert.equal(d.customer, null, 'a gratis record is never sent');
});
