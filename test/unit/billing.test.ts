import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { claimFor, computeRemittance, countsAsRemitted, MAX_BILL, owedBillingUnits, remittedBillingUnits, type EarlierRemittance, type RemittanceDecision, type RemittanceInput } from '../../domain/billing';
import { lookupMetric, parseCatalog, type CatalogMetric } from '../../domain/catalog';
import { loadCatalog } from '../../config/catalog';
import type { Contract } from '../../domain/contracts';
import { Decimal } from '../../domain/decimal';
import { NOT_REMITTED, REMITTANCE_STATUSES, type RemittanceStatus } from '../../domain/lifecycle';

const catalog = loadCatalog(undefined, {});
function entry(productTag: string, metric: string): CatalogMetric {
  const e = lookupMetric(catalog, productTag, metric);
  assert.ok(e, `${productTag}/${metric} in the catalog`);
  return e;
}
const CORES = entry('rosa', 'Cores'); // bf 0.25
const IH = entry('rosa', 'Instance-hours'); // bf 1
const RHEL = entry('rhel-for-x86-els-payg-addon', 'vCPUs'); // bf 1, no contract needed
const NODES = entry('ansible-aap-managed', 'Managed-nodes'); // gratis

function customEntry(bf: string, over: Record<string, unknown> = {}): CatalogMetric {
  const c = parseCatalog({ products: [{ productTag: 'p', contractEnabled: false, awsProductCode: 'code-p', metrics: [{ metric: 'Units', billingFactor: bf, dimensions: { aws: 'units', azure: 'units' }, gratis: false }], ...over }] });
  const e = lookupMetric(c, 'p', 'Units');
  assert.ok(e);
  return e;
}

const ACCOUNT = '111122223333';
const HOUR = Date.parse('2026-03-15T10:00:00Z');
const PERIOD = '2026-03';

let seq = 0;
function contract(over: Partial<Contract> = {}): Contract {
  seq++;
  return {
    contractId: `c-${String(seq).padStart(3, '0')}`,
    orgId: 'org-1',
    billingProvider: 'aws',
    billingAccountId: ACCOUNT,
    productTag: 'rosa',
    startDate: '2026-01-01T00:00:00.000Z',
    endDate: null,
    licenseId: null,
    aws: { productCode: 'rosa-code', customerAwsAccountId: '999988887777', licenseArn: null },
    azure: null,
    metrics: [],
    ...over,
  };
}

function compute(over: Partial<RemittanceInput> & { entry: CatalogMetric }): RemittanceDecision {
  return computeRemittance({
    marketplace: 'aws',
    billingAccountId: ACCOUNT,
    period: PERIOD,
    mtd: '0',
    evaluatedAtMs: HOUR,
    contracts: over.entry.contractEnabled ? [contract({ productTag: over.entry.productTag })] : [],
    earlier: [],
    ...over,
  });
}

/**
 * billing.md states "remitted" in metric units. An earlier remittance that claimed `claim` metric
 * units billed claim x bf units; when that is not whole, the claim was made under another billing
 * factor (a catalog change), and only the stored claim can say so.
 */
function remitted(claim: string, bf: string, status: RemittanceStatus = 'Succeeded'): EarlierRemittance {
  const units = Decimal.parse(claim).mul(Decimal.parse(bf));
  return units.isInteger() ? { status, bill: units.toString(), claim } : { status, bill: claim, claim };
}

function billOf(d: RemittanceDecision): { bill: number; claim: string } {
  assert.ok(d.kind === 'bill' || d.kind === 'gratis', `expected a bill, got ${JSON.stringify(d)}`);
  return { bill: d.bill, claim: d.claim };
}

// ---------------------------------------------------------------------------------------------
// The worked examples of billing.md.

void test('E1: Instance-hours, contract without metrics, MTD 0.0003, remitted 0 -> bill 1, claim 1', () => {
  assert.deepEqual(billOf(compute({ entry: IH, mtd: '0.0003' })), { bill: 1, claim: '1' });
});

void test('E2: Instance-hours, MTD 4.4, remitted 3.0 -> bill 2, claim 2', () => {
  assert.deepEqual(billOf(compute({ entry: IH, mtd: '4.4', earlier: [remitted('3.0', '1')] })), { bill: 2, claim: '2' });
});

void test('E3: Cores, MTD 1064.104, remitted 996 -> bill 18, claim 72', () => {
  assert.deepEqual(billOf(compute({ entry: CORES, mtd: '1064.104', earlier: [remitted('996', '0.25')] })), { bill: 18, claim: '72' });
});

void test('E4: Instance-hours, MTD 0.05, remitted 1.0 -> nothing to bill', () => {
  const d = compute({ entry: IH, mtd: '0.05', earlier: [remitted('1.0', '1')] });
  assert.equal(d.kind, 'nothing_due');
});

void test('E5: Cores, MTD 16, remitted 6 -> bill 3, claim 12', () => {
  // 6 Cores is 1.5 four_vcpu_hour: a claim made when the factor was 1 (one record of 6).
  const earlier = [remitted('6', '0.25')];
  assert.deepEqual(earlier, [{ status: 'Succeeded', bill: '6', claim: '6' }]);
  assert.deepEqual(billOf(compute({ entry: CORES, mtd: '16', earlier })), { bill: 3, claim: '12' });
});

void test('E6: Cores, contract four_vcpu_hour = 8, MTD 80, remitted 0 -> bill 12, claim 48', () => {
  const contracts = [contract({ metrics: [{ dimension: 'four_vcpu_hour', value: 8 }] })];
  const d = compute({ entry: CORES, mtd: '80', contracts });
  assert.deepEqual(billOf(d), { bill: 12, claim: '48' });
  assert.equal(d.kind === 'bill' && d.basis.coverage, '8');
});

void test('E7: Cores, contract covers 1, MTD 8 -> bill 1', () => {
  const contracts = [contract({ metrics: [{ dimension: 'four_vcpu_hour', value: 1 }] })];
  assert.equal(billOf(compute({ entry: CORES, mtd: '8', contracts })).bill, 1);
});

void test('E8: rhel addon, earlier 1 succeeded, 5 pending, 10 failed, 30 failed -> counted as remitted: 6', () => {
  const earlier: EarlierRemittance[] = [
    { status: 'Succeeded', bill: 1 },
    { status: 'Pending', bill: 5 },
    { status: 'Failed', bill: 10 },
    { status: 'Failed', bill: 30 },
  ];
  assert.equal(remittedBillingUnits(earlier, RHEL.billingFactor).toString(), '6');
  const d = compute({ entry: RHEL, mtd: '46', earlier });
  assert.equal(d.kind === 'bill' && d.basis.remitted, '6');
  assert.equal(billOf(d).bill, 40, 'the failed 40 is billed again');
});

void test('E9: rhel addon, earlier 10 succeeded, MTD now 6 -> nothing to bill, month total stays 10', () => {
  const earlier: EarlierRemittance[] = [{ status: 'Succeeded', bill: 10 }];
  const d = compute({ entry: RHEL, mtd: '6', earlier });
  assert.equal(d.kind, 'nothing_due');
  assert.equal(remittedBillingUnits(earlier, '1').toString(), '10');
});

void test('E10: rhel addon, earlier 10 failed, MTD now 6 -> bill 6', () => {
  assert.deepEqual(billOf(compute({ entry: RHEL, mtd: '6', earlier: [{ status: 'Failed', bill: 10 }] })), { bill: 6, claim: '6' });
});

void test('E11: Cores MTD 10, then 16, then 23 in one remittance hour -> one record of 6 (= ceil(23 x 0.25))', () => {
  // The hour's record is computed from the hour's last MTD...
  const once = compute({ entry: CORES, mtd: '23' });
  assert.equal(billOf(once).bill, 6);
  assert.equal(BigInt(billOf(once).bill), owedBillingUnits('23', '0.25'));
  // ...and computing after each tally, counting the hour's earlier amounts, adds up to the same
  // record: 3 + 1 + 2.
  const earlier: EarlierRemittance[] = [];
  const steps: number[] = [];
  for (const mtd of ['10', '16', '23']) {
    const d = compute({ entry: CORES, mtd, earlier });
    steps.push(billOf(d).bill);
    earlier.push({ status: 'Pending', bill: billOf(d).bill, claim: billOf(d).claim });
  }
  assert.deepEqual(steps, [3, 1, 2]);
  assert.equal(steps.reduce((a, b) => a + b, 0), 6);
});

void test('E12: rosa, contract-enabled, no contract at all -> nothing billed, no record, usage kept for later', () => {
  const waiting = compute({ entry: CORES, mtd: '40', contracts: [] });
  assert.equal(waiting.kind, 'waiting_for_contract');
  assert.ok(waiting.kind === 'waiting_for_contract' && /needs an active aws contract/.test(waiting.reason));
  // Once a contract exists, the whole month so far is billed, with its coverage.
  const later = Date.parse('2026-03-20T10:00:00Z');
  const contracts = [contract({ startDate: '2026-03-18T00:00:00.000Z', metrics: [{ dimension: 'four_vcpu_hour', value: 2 }] })];
  assert.equal(compute({ entry: CORES, mtd: '40', contracts, evaluatedAtMs: HOUR }).kind, 'waiting_for_contract', 'not active yet on the 15th');
  assert.equal(billOf(compute({ entry: CORES, mtd: '48', contracts, evaluatedAtMs: later })).bill, 10, '48 x 0.25 - 2');
});

void test('E13: Instance-hours, coverage 10, MTD 4 -> nothing to bill', () => {
  const d = compute({ entry: IH, mtd: '4', contracts: [contract({ metrics: [{ dimension: 'control_plane', value: 10 }] })] });
  assert.equal(d.kind, 'nothing_due');
  assert.ok(d.kind === 'nothing_due' && /within the contract coverage of 10/.test(d.reason), JSON.stringify(d));
});

void test('E14: Instance-hours, coverage 3, MTD 4 -> bill 1', () => {
  assert.equal(billOf(compute({ entry: IH, mtd: '4', contracts: [contract({ metrics: [{ dimension: 'control_plane', value: 3 }] })] })).bill, 1);
});

void test('E15: Cores, contract on four_vcpu_hour = 10 (40 Cores), MTD 4 -> nothing to bill (coverage by dimension)', () => {
  const contracts = [contract({ metrics: [{ dimension: 'four_vcpu_hour', value: 10 }] })];
  assert.equal(compute({ entry: CORES, mtd: '4', contracts }).kind, 'nothing_due');
  // The same contract covers nothing of Instance-hours (control_plane).
  assert.equal(billOf(compute({ entry: IH, mtd: '4', contracts })).bill, 4);
});

void test('E16: open-ended 100, ending at month end 25, starting next month 5, ended last month 10 -> coverage 125', () => {
  const dim = 'four_vcpu_hour';
  const contracts = [
    contract({ startDate: '2026-01-01T00:00:00.000Z', metrics: [{ dimension: dim, value: 100 }] }),
    contract({ startDate: '2026-02-01T00:00:00.000Z', endDate: '2026-04-01T00:00:00.000Z', metrics: [{ dimension: dim, value: 25 }] }),
    contract({ startDate: '2026-04-01T00:00:00.000Z', metrics: [{ dimension: dim, value: 5 }] }),
    contract({ startDate: '2025-12-01T00:00:00.000Z', endDate: '2026-03-01T00:00:00.000Z', metrics: [{ dimension: dim, value: 10 }] }),
  ];
  const d = compute({ entry: CORES, mtd: '520', contracts }); // 130 units
  assert.equal(d.kind === 'bill' && d.basis.coverage, '125');
  assert.equal(billOf(d).bill, 5);
});

// ---------------------------------------------------------------------------------------------
// Edge cases.

void test('month boundary: the evaluated hour must lie in the period; late tallies bill the previous month', () => {
  const lastHourOfMarch = Date.parse('2026-03-31T23:00:00Z');
  assert.throws(() => compute({ entry: RHEL, mtd: '1', evaluatedAtMs: Date.parse('2026-04-01T00:00:00Z') }), /not in period 2026-03/);
  // A late March tally arriving in April: March's MTD against March's remittances only.
  const march = compute({ entry: RHEL, mtd: '12.5', evaluatedAtMs: lastHourOfMarch, earlier: [{ status: 'Succeeded', bill: 12 }] });
  assert.deepEqual(billOf(march), { bill: 1, claim: '1' });
  // April starts from zero whatever March remitted.
  const april = computeRemittance({ entry: RHEL, marketplace: 'aws', billingAccountId: ACCOUNT, period: '2026-04', mtd: '0.5', evaluatedAtMs: Date.parse('2026-04-01T00:00:00Z'), contracts: [], earlier: [] });
  assert.deepEqual(billOf(april), { bill: 1, claim: '1' });
});

void test('contract ending mid-month: covered before, waiting after (no contract, no billing)', () => {
  const contracts = [contract({ startDate: '2026-02-01T00:00:00.000Z', endDate: '2026-03-15T00:00:00.000Z', metrics: [{ dimension: 'control_plane', value: 5 }] })];
  assert.equal(billOf(compute({ entry: IH, mtd: '7', contracts, evaluatedAtMs: Date.parse('2026-03-14T23:00:00Z') })).bill, 2);
  const after = compute({ entry: IH, mtd: '9', contracts, evaluatedAtMs: Date.parse('2026-03-15T00:00:00Z') });
  assert.equal(after.kind, 'waiting_for_contract');
  assert.ok(after.kind === 'waiting_for_contract' && /1 contract\(s\) are not active at 2026-03-15T00:00:00.000Z/.test(after.reason));
});

void test('contract starting mid-month: its coverage applies to the whole month-to-date', () => {
  const contracts = [contract({ startDate: '2026-03-10T00:00:00.000Z', metrics: [{ dimension: 'control_plane', value: 100 }] })];
  assert.equal(compute({ entry: IH, mtd: '90', contracts, evaluatedAtMs: Date.parse('2026-03-09T00:00:00Z') }).kind, 'waiting_for_contract');
  assert.equal(compute({ entry: IH, mtd: '99', contracts, evaluatedAtMs: Date.parse('2026-03-10T00:00:00Z') }).kind, 'nothing_due');
  assert.equal(billOf(compute({ entry: IH, mtd: '100.5', contracts })).bill, 1);
});

void test('billing factor 0.5: each step bills up to ceil(MTD x 0.5) in total', () => {
  const half = customEntry('0.5');
  const earlier: EarlierRemittance[] = [];
  const seen: Array<[string, number, string]> = [];
  for (const mtd of ['1', '2', '3', '3.1', '5', '5', '8.01']) {
    const d = compute({ entry: half, mtd, earlier });
    const bill = d.kind === 'bill' ? d.bill : 0;
    if (d.kind === 'bill') earlier.push({ status: 'Succeeded', bill: d.bill, claim: d.claim });
    seen.push([mtd, bill, d.kind === 'bill' ? d.claim : '-']);
    const total = earlier.reduce((a, e) => a + Number(e.bill), 0);
    assert.equal(BigInt(total), owedBillingUnits(mtd, '0.5'), `after MTD ${mtd}`);
  }
  assert.deepEqual(seen, [['1', 1, '2'], ['2', 0, '-'], ['3', 1, '2'], ['3.1', 0, '-'], ['5', 1, '2'], ['5', 0, '-'], ['8.01', 2, '4']]);
});

void test('billing factor 0.25: fractions carried inside claims, never billed twice', () => {
  const earlier: EarlierRemittance[] = [];
  const bills: number[] = [];
  for (const mtd of ['1', '4', '4.0001', '7.9', '8', '13', '100']) {
    const d = compute({ entry: CORES, mtd, earlier });
    const bill = d.kind === 'bill' ? d.bill : 0;
    if (d.kind === 'bill') earlier.push({ status: 'Succeeded', bill: d.bill, claim: d.claim });
    bills.push(bill);
  }
  assert.deepEqual(bills, [1, 0, 1, 0, 0, 2, 21]);
  assert.equal(bills.reduce((a, b) => a + b, 0), Number(owedBillingUnits('100', '0.25')));
});

void test('gratis: a gratis metric in the month its contracts start is recorded, not sent', () => {
  const mid = contract({ productTag: 'ansible-aap-managed', startDate: '2026-03-05T00:00:00.000Z', licenseId: 'lic-1' });
  const d = compute({ entry: NODES, mtd: '7.5', contracts: [mid] });
  assert.equal(d.kind, 'gratis');
  assert.deepEqual(billOf(d), { bill: 8, claim: '8' });
  assert.equal(d.kind === 'gratis' && d.licenseId, 'lic-1');
  // Counted as remitted: more usage later in the month is gratis again, only for the difference.
  const next = compute({ entry: NODES, mtd: '9', contracts: [mid], earlier: [{ status: 'Gratis', bill: 8 }] });
  assert.equal(next.kind, 'gratis');
  assert.equal(billOf(next).bill, 1);
  // Next month the same contract is not new: billed.
  const april = computeRemittance({ entry: NODES, marketplace: 'aws', billingAccountId: ACCOUNT, period: '2026-04', mtd: '3', evaluatedAtMs: Date.parse('2026-04-02T00:00:00Z'), contracts: [mid], earlier: [] });
  assert.equal(april.kind, 'bill');
});

void test('gratis with mixed contract starts: one contract from before the month makes it billable', () => {
  const mid = contract({ productTag: 'ansible-aap-managed', startDate: '2026-03-05T00:00:00.000Z' });
  const before = contract({ productTag: 'ansible-aap-managed', startDate: '2026-02-27T00:00:00.000Z' });
  const atMidnight = contract({ productTag: 'ansible-aap-managed', startDate: '2026-03-01T00:00:00.000Z' });
  const endedBefore = contract({ productTag: 'ansible-aap-managed', startDate: '2026-01-01T00:00:00.000Z', endDate: '2026-03-02T00:00:00.000Z' });
  assert.equal(compute({ entry: NODES, mtd: '3', contracts: [mid, before] }).kind, 'bill');
  assert.equal(compute({ entry: NODES, mtd: '3', contracts: [atMidnight] }).kind, 'bill', '00:00 on the 1st is not strictly after');
  assert.equal(compute({ entry: NODES, mtd: '3', contracts: [mid, endedBefore] }).kind, 'gratis', 'only active contracts count');
  // A metric that is not gratis is billed even under a brand-new contract.
  const ih = entry('ansible-aap-managed', 'Instance-hours');
  assert.equal(compute({ entry: ih, mtd: '3', contracts: [mid] }).kind, 'bill');
});

void test('license: newest start, ties to the smaller license id; its contract supplies the identifiers', () => {
  const a = contract({ contractId: 'a', startDate: '2026-02-01T00:00:00.000Z', licenseId: 'lic-b', aws: { productCode: 'pc', customerAwsAccountId: '1', licenseArn: 'arn-b' } });
  const b = contract({ contractId: 'b', startDate: '2026-02-01T00:00:00.000Z', licenseId: 'lic-a', aws: { productCode: 'pc', customerAwsAccountId: '1', licenseArn: 'arn-a' } });
  const older = contract({ contractId: 'o', startDate: '2026-01-01T00:00:00.000Z', licenseId: 'lic-0' });
  const unlicensedNewest = contract({ contractId: 'n', startDate: '2026-03-01T00:00:00.000Z' });
  for (const contracts of [[a, b, older, unlicensedNewest], [unlicensedNewest, older, b, a]]) {
    const d = compute({ entry: IH, mtd: '2', contracts });
    assert.ok(d.kind === 'bill');
    assert.equal(d.licenseId, 'lic-a');
    assert.equal(d.contractId, 'b');
    assert.deepEqual(d.target, { marketplace: 'aws', productCode: 'pc', customerAwsAccountId: '1', licenseArn: 'arn-a' });
    assert.equal(d.targetProblem, null);
  }
  const noLicense = compute({ entry: IH, mtd: '2', contracts: [unlicensedNewest, contract({ contractId: 'm', startDate: '2026-02-01T00:00:00.000Z' })] });
  assert.ok(noLicense.kind === 'bill');
  assert.equal(noLicense.licenseId, null);
  assert.equal(noLicense.contractId, 'n', 'newest active contract supplies the identifiers');
});

void test('Azure: identifiers from the contract; metrics without an Azure dimension are unsupported', () => {
  const az = contract({ billingProvider: 'azure', aws: null, azure: { resourceId: 'res-1', planId: 'plan-1' } });
  const d = compute({ entry: IH, marketplace: 'azure', mtd: '3', contracts: [az] });
  assert.ok(d.kind === 'bill');
  assert.deepEqual(d.target, { marketplace: 'azure', resourceId: 'res-1', planId: 'plan-1' });
  assert.equal(d.dimension, 'control_plane');
  const rhel = compute({ entry: RHEL, marketplace: 'azure', mtd: '3' });
  assert.deepEqual(rhel.kind === 'unsupported_metric' && rhel.errorCode, 'unsupported_metric');
  assert.equal(compute({ entry: NODES, marketplace: 'azure', mtd: '3', contracts: [az] }).kind, 'unsupported_metric');
  // A non-contract product on Azure without a contract is owed all the same, but has no resource
  // id to send to: billed, with the problem stated for the send to fail on.
  const noTarget = compute({ entry: customEntry('1'), marketplace: 'azure', mtd: '3' });
  assert.ok(noTarget.kind === 'bill');
  assert.equal(noTarget.bill, 3);
  assert.equal(noTarget.target, null);
  assert.match(noTarget.targetProblem ?? '', /Azure resource id and plan id/);
});

void test('non-contract product: no coverage; identifiers from a contract if any, else billing account + catalog product code', () => {
  const withCode = customEntry('1');
  const d = compute({ entry: withCode, mtd: '3' });
  assert.ok(d.kind === 'bill');
  assert.deepEqual(d.target, { marketplace: 'aws', productCode: 'code-p', customerAwsAccountId: ACCOUNT, licenseArn: null });
  assert.equal(d.targetProblem, null);
  assert.equal(d.contractId, null);
  // A catalog naming no product code: billed all the same, the gap stated.
  const noCode = compute({ entry: { ...withCode, awsProductCode: null }, mtd: '3' });
  assert.ok(noCode.kind === 'bill');
  assert.equal(noCode.bill, 3);
  assert.equal(noCode.target, null);
  assert.match(noCode.targetProblem ?? '', /awsProductCode/);
  // With a contract: its identifiers, but its committed amounts do not cover a non-contract product.
  const c = contract({ productTag: RHEL.productTag, metrics: [{ dimension: 'vCPU_hours', value: 100 }], aws: { productCode: 'rhel-code', customerAwsAccountId: '444455556666' } });
  const billed = compute({ entry: RHEL, mtd: '3', contracts: [c] });
  assert.ok(billed.kind === 'bill');
  assert.equal(billed.bill, 3);
  assert.equal(billed.basis.coverage, '0');
  assert.deepEqual(billed.target, { marketplace: 'aws', productCode: 'rhel-code', customerAwsAccountId: '444455556666', licenseArn: null });
});

void test('contracts of another marketplace, product or billing account are ignored', () => {
  const others = [
    contract({ billingProvider: 'azure', metrics: [{ dimension: 'control_plane', value: 100 }] }),
    contract({ productTag: 'ansible-aap-managed', metrics: [{ dimension: 'control_plane', value: 100 }] }),
    contract({ billingAccountId: 'other', metrics: [{ dimension: 'control_plane', value: 100 }] }),
  ];
  assert.equal(compute({ entry: IH, mtd: '3', contracts: others }).kind, 'waiting_for_contract');
  assert.equal(billOf(compute({ entry: IH, mtd: '3', contracts: [...others, contract()] })).bill, 3);
});

void test('coverage larger than usage bills nothing, and the excess is not banked against later usage beyond it', () => {
  const contracts = [contract({ metrics: [{ dimension: 'control_plane', value: 50 }] })];
  assert.equal(compute({ entry: IH, mtd: '49.9', contracts }).kind, 'nothing_due');
  assert.equal(compute({ entry: IH, mtd: '50', contracts }).kind, 'nothing_due');
  assert.equal(billOf(compute({ entry: IH, mtd: '50.0001', contracts })).bill, 1);
});

void test('decreasing usage is never credited', () => {
  const earlier: EarlierRemittance[] = [{ status: 'Succeeded', bill: 10 }];
  for (const mtd of ['9.99', '5', '0']) {
    const d = compute({ entry: IH, mtd, earlier });
    assert.equal(d.kind, 'nothing_due', mtd);
  }
  // Usage climbing back bills only beyond what was remitted.
  assert.equal(billOf(compute({ entry: IH, mtd: '10.5', earlier })).bill, 1);
});

void test('failed, expired and voided amounts are billed again; pending, sending, succeeded, gratis and unconfirmed are not', () => {
  for (const status of NOT_REMITTED) {
    assert.equal(billOf(compute({ entry: IH, mtd: '4', earlier: [{ status, bill: 4 }] })).bill, 4, status);
    assert.equal(countsAsRemitted({ status }), false, status);
  }
  for (const status of ['Pending', 'Sending', 'Succeeded', 'Gratis', 'Unconfirmed', 'NothingDue', 'WaitingForContract'] as const) {
    assert.equal(compute({ entry: IH, mtd: '4', earlier: [{ status, bill: 4 }] }).kind, 'nothing_due', status);
    assert.equal(countsAsRemitted({ status }), true, status);
  }
  // A gratis part counts whatever happens to the record it travels with.
  assert.equal(countsAsRemitted({ status: 'Failed', gratis: true }), true);
  // Partly failed: only the failed amount is billed again.
  const mixed: EarlierRemittance[] = [{ status: 'Succeeded', bill: 3 }, { status: 'Expired', bill: 2 }, { status: 'Voided', bill: 1 }];
  assert.equal(billOf(compute({ entry: IH, mtd: '6', earlier: mixed })).bill, 3);
});

void test('replayed or duplicate tallies bill nothing: idempotent by value', () => {
  const first = compute({ entry: CORES, mtd: '37.5' });
  const earlier: EarlierRemittance[] = [{ status: 'Succeeded', bill: billOf(first).bill, claim: billOf(first).claim }];
  for (let i = 0; i < 3; i++) assert.equal(compute({ entry: CORES, mtd: '37.5', earlier }).kind, 'nothing_due');
});

void test('large totals: 1e12 Cores is exact and capped per record; the rest is carried, then billed', () => {
  const d = compute({ entry: CORES, mtd: String(1e12) });
  assert.ok(d.kind === 'bill');
  assert.equal(d.basis.due, '250000000000');
  assert.equal(d.bill, MAX_BILL);
  assert.equal(d.carried, String(250000000000 - MAX_BILL));
  assert.equal(d.claim, String(MAX_BILL * 4));
  // An uncapped computation (e.g. a marketplace without the int32 limit) bills it all at once.
  const uncapped = compute({ entry: CORES, mtd: '1e12', maxBill: Number.MAX_SAFE_INTEGER });
  assert.equal(billOf(uncapped).bill, 250000000000);
  // Carried units go out in the following records until the month is complete.
  const earlier: EarlierRemittance[] = [];
  let total = 0;
  for (let i = 0; i < 200; i++) {
    const r = compute({ entry: CORES, mtd: '1000000000000.1', earlier });
    if (r.kind !== 'bill') break;
    earlier.push({ status: 'Succeeded', bill: r.bill, claim: r.claim });
    total += r.bill;
  }
  assert.equal(total, 250000000001);
});

void test('non-terminating reciprocal (bf 0.3333): bills stay exact, claims round up', () => {
  const third = customEntry('0.3333');
  const d1 = compute({ entry: third, mtd: '3' }); // 0.9999 -> 1
  assert.deepEqual(billOf(d1), { bill: 1, claim: '3.00030003000300030004' });
  assert.equal(claimFor(1, '0.3333').toString(), '3.00030003000300030004');
  const earlier: EarlierRemittance[] = [{ status: 'Succeeded', bill: 1, claim: billOf(d1).claim }];
  // 6 x 0.3333 = 1.9998 -> 2 in total, 1 more.
  assert.equal(billOf(compute({ entry: third, mtd: '6', earlier })).bill, 1);
  // 3.0003 Cores is exactly 1.00000 unit: nothing more due.
  assert.equal(compute({ entry: third, mtd: '3.0003', earlier }).kind, 'nothing_due');
  assert.equal(billOf(compute({ entry: third, mtd: '3.00031', earlier })).bill, 1);
});

void test('a billing factor changed mid-month: stored claims are re-valued at the current factor', () => {
  // Billed 8 units at factor 1 (claim 8); the catalog now says 0.5: 8 metric units are 4 units.
  const earlier: EarlierRemittance[] = [{ status: 'Succeeded', bill: 8, claim: '8' }];
  assert.equal(remittedBillingUnits(earlier, '0.5').toString(), '4');
  assert.equal(billOf(compute({ entry: customEntry('0.5'), mtd: '10', earlier })).bill, 1);
  // Without a stored claim the bill is taken as is.
  assert.equal(remittedBillingUnits([{ status: 'Succeeded', bill: 8 }], '0.5').toString(), '8');
});

void test('bad inputs are programming errors and throw', () => {
  assert.throws(() => compute({ entry: IH, mtd: '-1' }), /negative/);
  assert.throws(() => compute({ entry: IH, mtd: 'NaN' }), /not a decimal/);
  assert.throws(() => compute({ entry: IH, mtd: '1', earlier: [{ status: 'Succeeded', bill: -1 }] }), /negative bill/);
  assert.throws(() => compute({ entry: IH, mtd: '1', maxBill: 0 }), /maxBill/);
});

void test('nothing due reports why: remitted already, with the numbers', () => {
  const d = compute({ entry: CORES, mtd: '10', earlier: [{ status: 'Succeeded', bill: 3 }] });
  assert.ok(d.kind === 'nothing_due');
  assert.deepEqual(d.basis, { period: PERIOD, dimension: 'four_vcpu_hour', billingFactor: '0.25', mtd: '10', usage: '2.5', coverage: '0', remitted: '3', due: '0' });
  assert.match(d.reason, /owes 3 four_vcpu_hour \(usage 2.5, rounded up\) and 3 are already remitted/);
  const idle = compute({ entry: IH, mtd: '0' });
  assert.ok(idle.kind === 'nothing_due');
  assert.match(idle.reason, /no usage in 2026-03/);
});

// ---------------------------------------------------------------------------------------------
// The identity the engine rests on, checked against billing.md's formula in exact rationals.

type Q = { n: bigint; d: bigint }; // n/d, d > 0
const q = (n: bigint, d = 1n): Q => ({ n, d });
const qSub = (a: Q, b: Q): Q => ({ n: a.n * b.d - b.n * a.d, d: a.d * b.d });
const qMul = (a: Q, b: Q): Q => ({ n: a.n * b.n, d: a.d * b.d });
const qDiv = (a: Q, b: Q): Q => (b.n < 0n ? { n: -a.n * b.d, d: a.d * -b.n } : { n: a.n * b.d, d: a.d * b.n });
const qMax0 = (a: Q): Q => (a.n < 0n ? q(0n) : a);
const qCeil = (a: Q): bigint => (a.n >= 0n ? (a.n + a.d - 1n) / a.d : -(-a.n / a.d));
const qOfDec = (s: string): Q => {
  const [i = '0', f = ''] = s.split('.');
  return { n: BigInt(i + f), d: 10n ** BigInt(f.length) };
};

void test('property: billing units equal billing.md in metric units (claims exact as rationals)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('1', '0.5', '0.25', '0.3333', '2', '0.125', '0.01'),
      fc.bigInt({ min: 0n, max: 10n ** 9n }).map((n) => Decimal.parse(`${n}e-3`).toString()),
      fc.bigInt({ min: 0n, max: 10n ** 6n }).map((n) => Decimal.parse(`${n}e-2`).toString()),
      fc.array(fc.record({ bill: fc.integer({ min: 0, max: 10_000 }), status: fc.constantFrom(...REMITTANCE_STATUSES) }), { maxLength: 6 }),
      (bf, mtd, coverage, earlier) => {
        const e = customEntry(bf, { contractEnabled: true });
        const contracts = [contract({ productTag: 'p', metrics: [{ dimension: 'units', value: coverage }] })];
        const d = computeRemittance({ entry: e, marketplace: 'aws', billingAccountId: ACCOUNT, period: PERIOD, mtd, evaluatedAtMs: HOUR, contracts, earlier });
        // billing.md literally: applicable = max(0, MTD - coverage/bf); remitted = sum of claims = bill/bf.
        const BF = qOfDec(bf);
        const applicable = qMax0(qSub(qOfDec(mtd), qDiv(qOfDec(coverage), BF)));
        let rem = q(0n);
        for (const r of earlier) if (!['Failed', 'Expired', 'Voided'].includes(r.status)) rem = { n: rem.n * BF.n + BigInt(r.bill) * BF.d * rem.d, d: rem.d * BF.n };
        const expected = qCeil(qMul(qSub(applicable, rem), BF));
        const want = expected > 0n ? expected : 0n;
        const got = d.kind === 'bill' ? BigInt(d.bill) : 0n;
        assert.equal(got, want, JSON.stringify({ bf, mtd, coverage, earlier, d }));
        if (d.kind === 'bill') {
          // claim = bill / bf: exact, or the smallest DIV_SCALE-digit decimal above it.
          const exact = qDiv(q(BigInt(d.bill)), BF);
          const claim = qOfDec(d.claim);
          assert.ok(claim.n * exact.d >= exact.n * claim.d);
          assert.ok(qSub(claim, exact).n * 10n ** 20n < qSub(claim, exact).d || claim.n * exact.d === exact.n * claim.d);
        }
      },
    ),
    { numRuns: 1000 },
  );
});
