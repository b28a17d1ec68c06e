import { test } from 'node:test';
import assert from 'node:assert/strict';
import { activeContracts, coverageFor, isActiveAt, isGratis, licenseOf, parseContract, selectLicenseContract, selectTargetContract, validateContract, type Contract } from '../../domain/contracts';
import { parseInstant } from '../../domain/instant';
import { loadCatalog } from '../../config/catalog';

const T = (iso: string) => Date.parse(iso);

let seq = 0;
function contract(over: Partial<Contract> = {}): Contract {
  seq++;
  return {
    contractId: `c-${seq}`,
    orgId: 'org-1',
    billingProvider: 'aws',
    billingAccountId: 'acct-1',
    productTag: 'rosa',
    startDate: '2026-01-01T00:00:00.000Z',
    endDate: null,
    licenseId: null,
    aws: { productCode: 'prod', customerAwsAccountId: '111122223333' },
    metrics: [],
    ...over,
  };
}

void test('active when start <= t < end; open-ended when end is null', () => {
  const c = contract({ startDate: '2026-03-10T05:00:00.000Z', endDate: '2026-03-20T00:00:00.000Z' });
  assert.equal(isActiveAt(c, T('2026-03-10T04:59:59.999Z')), false);
  assert.equal(isActiveAt(c, T('2026-03-10T05:00:00Z')), true, 'start is inclusive');
  assert.equal(isActiveAt(c, T('2026-03-19T23:59:59.999Z')), true);
  assert.equal(isActiveAt(c, T('2026-03-20T00:00:00Z')), false, 'end is exclusive');
  const open = contract({ startDate: '2026-03-10T05:00:00.000Z' });
  assert.equal(isActiveAt(open, T('2099-01-01T00:00:00Z')), true);
  assert.throws(() => isActiveAt(contract({ startDate: 'garbage' }), 0), /startDate is not a date/);
});

void test('E16: open-ended 100 + ending at month end 25; not next month 5, not ended last month 10 -> 125', () => {
  const t = T('2026-03-15T10:00:00Z');
  const dim = 'four_vcpu_hour';
  const contracts = [
    contract({ startDate: '2026-01-01T00:00:00.000Z', metrics: [{ dimension: dim, value: 100 }] }),
    contract({ startDate: '2026-02-01T00:00:00.000Z', endDate: '2026-04-01T00:00:00.000Z', metrics: [{ dimension: dim, value: 25 }] }),
    contract({ startDate: '2026-04-01T00:00:00.000Z', metrics: [{ dimension: dim, value: 5 }] }),
    contract({ startDate: '2026-01-01T00:00:00.000Z', endDate: '2026-03-01T00:00:00.000Z', metrics: [{ dimension: dim, value: 10 }] }),
  ];
  assert.equal(coverageFor(contracts, t, dim).toString(), '125');
  assert.equal(activeContracts(contracts, t).length, 2);
});

void test('coverage counts only the asked dimension, sums repeats, reads numbers and NUMERIC strings exactly', () => {
  const t = T('2026-03-15T10:00:00Z');
  const contracts = [
    contract({ metrics: [{ dimension: 'control_plane', value: 100 }, { dimension: 'control_plane', value: 50 }, { dimension: 'four_vcpu_hour', value: 7 }] }),
    contract({ metrics: [{ dimension: 'control_plane', value: '25.5' }, { dimension: 'Control_Plane', value: 1000 }] }),
    contract({ metrics: [{ dimension: 'control_plane', value: 0.1 }, { dimension: 'control_plane', value: 0.2 }] }),
  ];
  assert.equal(coverageFor(contracts, t, 'control_plane').toString(), '175.8');
  assert.equal(coverageFor(contracts, t, 'four_vcpu_hour').toString(), '7');
  assert.equal(coverageFor(contracts, t, 'managed_node').toString(), '0');
  assert.equal(coverageFor([], t, 'control_plane').toString(), '0');
});

void test('license: newest start wins; equal starts -> smaller license id; unlicensed contracts are skipped', () => {
  const t = T('2026-03-15T10:00:00Z');
  const old = contract({ contractId: 'a', startDate: '2026-01-01T00:00:00.000Z', licenseId: 'lic-old' });
  const newest = contract({ contractId: 'b', startDate: '2026-03-01T00:00:00.000Z', licenseId: 'lic-z' });
  const tie = contract({ contractId: 'c', startDate: '2026-03-01T00:00:00.000Z', licenseId: 'lic-m' });
  const unlicensed = contract({ contractId: 'd', startDate: '2026-03-10T00:00:00.000Z' });
  const future = contract({ contractId: 'e', startDate: '2026-04-01T00:00:00.000Z', licenseId: 'lic-a' });
  for (const order of [[old, newest, tie, unlicensed, future], [future, unlicensed, tie, newest, old]]) {
    assert.equal(selectLicenseContract(order, t)?.contractId, 'c');
  }
  assert.equal(selectLicenseContract([old, unlicensed], t)?.contractId, 'a');
  assert.equal(selectLicenseContract([unlicensed], t), null);
  assert.equal(selectLicenseContract([future], t), null, 'not active yet');
  // A blank license is no license; an AWS license ARN is one.
  assert.equal(licenseOf(contract({ licenseId: '  ' })), null);
  assert.equal(licenseOf(contract({ aws: { productCode: 'p', customerAwsAccountId: '1', licenseArn: 'arn:aws:license-manager::1:license:l-1' } })), 'arn:aws:license-manager::1:license:l-1');
});

void test('license tie on equal start and equal license falls back to the smaller contract id', () => {
  const t = T('2026-03-15T10:00:00Z');
  const x = contract({ contractId: 'x', licenseId: 'L' });
  const w = contract({ contractId: 'w', licenseId: 'L' });
  assert.equal(selectLicenseContract([x, w], t)?.contractId, 'w');
  assert.equal(selectLicenseContract([w, x], t)?.contractId, 'w');
});

void test('target contract: the license contract, else the newest active one', () => {
  const t = T('2026-03-15T10:00:00Z');
  const licensedOld = contract({ contractId: 'old', startDate: '2026-01-01T00:00:00.000Z', licenseId: 'L1' });
  const newer = contract({ contractId: 'new', startDate: '2026-03-02T00:00:00.000Z' });
  assert.equal(selectTargetContract([newer, licensedOld], t)?.contractId, 'old');
  assert.equal(selectTargetContract([newer, contract({ contractId: 'older', startDate: '2026-02-01T00:00:00.000Z' })], t)?.contractId, 'new');
  assert.equal(selectTargetContract([], t), null);
});

void test('gratis: every active contract starts strictly after 00:00 UTC on the 1st of the month', () => {
  const t = T('2026-03-15T10:00:00Z');
  const midMonth = contract({ startDate: '2026-03-05T00:00:00.000Z' });
  const firstMinute = contract({ startDate: '2026-03-01T00:01:00.000Z' });
  const atMidnight = contract({ startDate: '2026-03-01T00:00:00.000Z' });
  const lastMonth = contract({ startDate: '2026-02-20T00:00:00.000Z' });
  const endedLastMonth = contract({ startDate: '2026-01-01T00:00:00.000Z', endDate: '2026-03-01T00:00:00.000Z' });
  assert.equal(isGratis([midMonth], t), true);
  assert.equal(isGratis([firstMinute, midMonth], t), true);
  assert.equal(isGratis([atMidnight], t), false, 'starting exactly at 00:00 on the 1st is not after it');
  assert.equal(isGratis([midMonth, lastMonth], t), false, 'mixed starts');
  assert.equal(isGratis([midMonth, endedLastMonth], t), true, 'inactive contracts do not count');
  assert.equal(isGratis([], t), false, 'no active contract, no gratis');
  // The month is t's month: the same mid-March contract is not gratis in April.
  assert.equal(isGratis([midMonth], T('2026-04-02T00:00:00Z')), false);
});

const validAws = {
  orgId: 'org-1',
  billingProvider: 'aws',
  billingAccountId: '111122223333',
  productTag: 'rosa',
  startDate: '2026-03-01T00:00:00Z',
  endDate: null,
  licenseId: 'lic-1',
  aws: { productCode: 'prod-1', customerAwsAccountId: '111122223333', licenseArn: null },
  metrics: [{ dimension: 'four_vcpu_hour', value: 8 }],
};
const validAzure = {
  orgId: 'org-1',
  billingProvider: 'azure',
  billingAccountId: 'sub-1',
  productTag: 'rosa',
  startDate: '2026-03-01',
  azure: { resourceId: 'res-1', planId: 'plan-1' },
};

void test('a valid body normalizes to a Contract', () => {
  const r = parseContract('c-1', validAws);
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(r.contract, {
    contractId: 'c-1',
    orgId: 'org-1',
    billingProvider: 'aws',
    billingAccountId: '111122223333',
    productTag: 'rosa',
    startDate: '2026-03-01T00:00:00.000Z',
    endDate: null,
    licenseId: 'lic-1',
    aws: { productCode: 'prod-1', customerAwsAccountId: '111122223333', licenseArn: null },
    metrics: [{ dimension: 'four_vcpu_hour', value: 8 }],
  });
  const az = parseContract('c-2', { ...validAzure, endDate: '2026-04-01T02:00:00+02:00', aws: null });
  assert.ok(az.ok, JSON.stringify(az));
  assert.equal(az.contract.startDate, '2026-03-01T00:00:00.000Z', 'a bare date is 00:00 UTC');
  assert.equal(az.contract.endDate, '2026-04-01T00:00:00.000Z', 'offsets are normalized to UTC');
  assert.deepEqual(az.contract.metrics, []);
  assert.equal(az.contract.licenseId, null);
  assert.equal('aws' in az.contract, false);
  assert.deepEqual(validateContract(validAws), []);
});

function errorsOf(body: unknown, opts = {}): Array<{ field: string; message: string }> {
  return validateContract(body, opts);
}

void test('every invalid field is reported with its name', () => {
  const cases: Array<[unknown, string, RegExp]> = [
    [null, '', /JSON object/],
    [[validAws], '', /JSON object/],
    [{ ...validAws, orgId: '' }, 'orgId', /non-empty/],
    [{ ...validAws, orgId: 5 }, 'orgId', /string/],
    [{ ...validAws, billingAccountId: undefined }, 'billingAccountId', /non-empty string/],
    [{ ...validAws, productTag: ' rosa' }, 'productTag', /spaces/],
    [{ ...validAws, billingProvider: 'gcp' }, 'billingProvider', /aws, azure/],
    [{ ...validAws, startDate: 'yesterday' }, 'startDate', /ISO-8601/],
    [{ ...validAws, startDate: '2026-02-30T00:00:00Z' }, 'startDate', /day 30 does not exist/],
    [{ ...validAws, startDate: '2026-03-01T00:00:00' }, 'startDate', /offset/],
    [{ ...validAws, startDate: undefined }, 'startDate', /ISO-8601 string/],
    [{ ...validAws, endDate: 'never' }, 'endDate', /ISO-8601/],
    [{ ...validAws, endDate: '2026-03-01T00:00:00Z' }, 'endDate', /after startDate/],
    [{ ...validAws, endDate: '2026-02-01T00:00:00Z' }, 'endDate', /after startDate/],
    [{ ...validAws, licenseId: 42 }, 'licenseId', /string/],
    [{ ...validAws, aws: undefined }, 'aws', /required for billingProvider aws/],
    [{ ...validAws, aws: { customerAwsAccountId: '1' } }, 'aws.productCode', /non-empty/],
    [{ ...validAws, aws: { productCode: 'p' } }, 'aws.customerAwsAccountId', /non-empty/],
    [{ ...validAws, aws: { productCode: 'p', customerAwsAccountId: '1', licenseArn: '' } }, 'aws.licenseArn', /non-empty/],
    [{ ...validAws, azure: { resourceId: 'r', planId: 'p' } }, 'azure', /must be absent for billingProvider aws/],
    [{ ...validAzure, azure: undefined }, 'azure', /required for billingProvider azure/],
    [{ ...validAzure, azure: { resourceId: 'r' } }, 'azure.planId', /non-empty/],
    [{ ...validAzure, aws: validAws.aws }, 'aws', /must be absent/],
    [{ ...validAws, metrics: 'lots' }, 'metrics', /array/],
    [{ ...validAws, metrics: [5] }, 'metrics[0]', /object/],
    [{ ...validAws, metrics: [{ value: 1 }] }, 'metrics[0].dimension', /non-empty/],
    [{ ...validAws, metrics: [{ dimension: 'd', value: '8' }] }, 'metrics[0].value', /must be a number/],
    [{ ...validAws, metrics: [{ dimension: 'd', value: -1 }] }, 'metrics[0].value', />= 0/],
    [{ ...validAws, metrics: [{ dimension: 'd', value: Infinity }] }, 'metrics[0].value', /finite/],
    [{ ...validAws, metrics: [{ dimension: 'd', value: NaN }] }, 'metrics[0].value', /finite/],
    [{ ...validAws, metrics: [{ dimension: 'd', value: 1 }, { dimension: 'e', value: null }] }, 'metrics[1].value', /must be a number/],
  ];
  for (const [body, field, re] of cases) {
    const errs = errorsOf(body);
    assert.ok(errs.some((e) => e.field === field && re.test(e.message)), `${field}: ${JSON.stringify(errs)}`);
  }
});

void test('all errors come back at once', () => {
  const errs = errorsOf({ ...validAws, orgId: '', startDate: 'x', metrics: [{ dimension: '', value: -1 }] });
  assert.deepEqual(errs.map((e) => e.field).sort(), ['metrics[0].dimension', 'metrics[0].value', 'orgId', 'startDate']);
});

void test('with a catalog: unknown products and dimensions foreign to the product and marketplace are rejected', () => {
  const catalog = loadCatalog(undefined, {});
  assert.deepEqual(errorsOf(validAws, { catalog }), []);
  assert.ok(errorsOf({ ...validAws, productTag: 'nope' }, { catalog }).some((e) => e.field === 'productTag' && /unknown product/.test(e.message)));
  const typo = errorsOf({ ...validAws, metrics: [{ dimension: 'Four_vCPU_Hour', value: 8 }] }, { catalog });
  assert.ok(typo.some((e) => e.field === 'metrics[0].dimension' && /four_vcpu_hour, control_plane/.test(e.message)), JSON.stringify(typo));
  const azureAnsible = errorsOf({ ...validAzure, productTag: 'ansible-aap-managed', metrics: [{ dimension: 'managed_node', value: 1 }] }, { catalog });
  assert.ok(azureAnsible.some((e) => e.field === 'metrics[0].dimension' && /known: none/.test(e.message)), JSON.stringify(azureAnsible));
  // Without a catalog any dimension name is accepted.
  assert.deepEqual(errorsOf({ ...validAws, metrics: [{ dimension: 'Four_vCPU_Hour', value: 8 }] }), []);
});

void test('the path id is validated, and a body id must match it', () => {
  assert.ok(!parseContract('', validAws).ok);
  const mismatch = parseContract('c-1', { ...validAws, contractId: 'c-2' });
  assert.ok(!mismatch.ok && mismatch.errors.some((e) => e.field === 'contractId'));
  assert.ok(parseContract('c-1', { ...validAws, contractId: 'c-1' }).ok);
});

void test('strict instants', () => {
  assert.deepEqual(parseInstant('2026-11-25T10:00:00Z'), { ms: Date.UTC(2026, 10, 25, 10) });
  assert.deepEqual(parseInstant('2026-11-25T10:00Z'), { ms: Date.UTC(2026, 10, 25, 10) });
  assert.deepEqual(parseInstant('2026-11-25T10:00:00.000000Z'), { ms: Date.UTC(2026, 10, 25, 10) });
  assert.deepEqual(parseInstant('2026-11-25T11:30:00+01:30'), { ms: Date.UTC(2026, 10, 25, 10) });
  assert.deepEqual(parseInstant('2024-02-29T00:00:00Z'), { ms: Date.UTC(2024, 1, 29) });
  for (const bad of ['2025-02-29T00:00:00Z', '2026-11-25T24:00:00Z', '2026-11-25T10:60:00Z', '2026-11-25 10:00:00Z', '2026-11-25T10:00:00.0000001Z', '0099-01-01T00:00:00Z', '2026-11-25']) {
    assert.ok('error' in parseInstant(bad), bad);
  }
  assert.ok('error' in parseInstant('2026-11-25T11:00:00+01:00', { requireUtc: true }));
  assert.ok('ms' in parseInstant('2026-11-25T10:00:00+00:00', { requireUtc: true }));
  assert.ok('ms' in parseInstant('2026-11-25', { allowDateOnly: true }));
  assert.ok('error' in parseInstant(1764064800000));
});
