// Issue 9 ("Money defects") at the ledger, on real PostgreSQL: the computation, the outcome
// recording, the sweep's query and the operator actions called directly (no Temporal, except the
// mock activity context of the usage pull). The same defects end to end, through the API, the
// workflows and the AWS emulator: test/integration/billing-stories.test.ts.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomUUID } from 'node:crypto';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createUsagePullActivities, type PullHourResult } from '../../activities/usage-pull';
import { openDatabase, type Database } from '../../db/client';
import { putContract } from '../../db/contracts';
import { computeGroup, findOwingKeys, getRemittance, loadContractsFor, markOutcome, markSending, previewRemittance, type TimeSettings } from '../../db/ledger';
import { listRemittances } from '../../db/reports';
import { storeTallies } from '../../db/tallies';
import { lookupMetric, parseCatalog, type Catalog } from '../../domain/catalog';
import { loadCatalog } from '../../config/catalog';
import { recordTargetOf } from '../../domain/record';
import { keyString, type RemittanceKey } from '../../domain/key';
import { hourStart, monthOf, monthStartMs, previousMonth } from '../../domain/time';
import { createLogger } from '../../lib/log';
import { retryRemittances } from '../../operations';
import type { RawTally } from '../../usage/source';
import { createTestDatabase, type TestDatabase } from '../../scripts/lib/test-database';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const time: TimeSettings = { hourMs: HOUR, graceHours: 0.1667, acceptanceHours: { aws: 6, azure: 24 } };

let testDb: TestDatabase;
let database: Database;
let catalog: Catalog;

before(async () => {
  testDb = await createTestDatabase('money_defects');
  database = openDatabase(testDb.url, { max: 4 });
  catalog = loadCatalog();
});
after(async () => {
  await database?.close();
  await testDb?.drop();
});

const account = () => String(100_000_000_000 + Math.floor(Math.random() * 9e11));
function keyOf(productTag: string, metric: string): RemittanceKey {
  return { billingProvider: 'aws', billingAccountId: account(), orgId: `org-${randomUUID().slice(0, 8)}`, productTag, metric, sla: 'Premium', usage: 'Production' };
}
/** The close of hour `hourMs` for this key alone: its remittance and the record it went to. */
async function compute(key: RemittanceKey, hourMs: number, c: Catalog = catalog, nowMs = hourMs + 1.2 * HOUR) {
  const t = recordTargetOf(key, lookupMetric(c, key.productTag, key.metric) ?? null, await loadContractsFor(database.pool, key), hourMs);
  const out = await computeGroup(database, { keys: [key], hourMs, target: 'problem' in t ? null : t, catalog: c, time, nowMs });
  return { ...out.computed[0]!, recordId: out.record?.id ?? '' };
}
const partsOf = async (id: string) =>
  (await database.pool.query<{ period: string; bill: number }>('SELECT period, bill FROM remittance_parts WHERE remittance_id = $1 ORDER BY period', [id])).rows.map((p) => [p.period, p.bill]);

async function succeed(id: string) {
  await markSending(database, id);
  await markOutcome(database, id, { status: 'Succeeded', receiptId: `rcpt-${randomUUID()}` });
}
async function reject(id: string, errorCode = 'marketplace_customer_not_subscribed') {
  await markSending(database, id);
  await markOutcome(database, id, { status: 'Failed', errorCode, reason: `rejected: ${errorCode}` });
}

describe('1. late usage of a month before the previous one', () => {
  it('is billed in the current hour as its own month part, against that month, and then leaves the computation', async () => {
    const key = keyOf('rosa', 'Instance-hours');
    const now = Date.now();
    const R = hourStart(now, HOUR);
    const current = monthOf(R);
    const old = previousMonth(previousMonth(current));
    // A contract only in the old month, covering 2 control-plane hours: the old month's usage is
    // billed against it, and the current month has no contract at all.
    await putContract(database, {
      contractId: `c-${key.orgId}`, orgId: key.orgId, billingProvider: 'aws', billingAccountId: key.billingAccountId, productTag: 'rosa',
      startDate: new Date(monthStartMs(old)).toISOString(), endDate: new Date(monthStartMs(previousMonth(current))).toISOString(), licenseId: null,
      aws: { productCode: 'rosa-product', customerAwsAccountId: key.billingAccountId, licenseArn: null }, metrics: [{ dimension: 'control_plane', value: 2 }],
    }, { actor: 'test' });
    await storeTallies(database, [{ key, hourMs: monthStartMs(old) + 10 * DAY, value: '5.5' }]);
    const r = await compute(key, R, catalog, now);
    assert.equal(r.status, 'Pending', `${r.status}: ${r.reason}`);
    assert.equal(r.bill, 4, 'ceil(5.5 - 2 covered)');
    assert.deepEqual(await partsOf(r.remittanceId), [[old, 4]]);

    // Once computed, the old month is not looked at again unless it owes something.
    const late = await database.pool.query<{ late: string[] }>('SELECT late_periods AS late FROM remittance_keys WHERE key = $1', [keyString(key)]);
    assert.deepEqual(late.rows[0]!.late, []);
    await succeed(r.recordId);
    const next = await previewRemittance(database, { key, remittanceHourMs: R + HOUR, catalog, time, nowMs: now + HOUR });
    assert.deepEqual(next.periods.map((p) => p.period), [], 'no month owes anything: none is computed');

    // A correction of the old month is billed again, only the difference.
    await storeTallies(database, [{ key, hourMs: monthStartMs(old) + 10 * DAY, value: '7' }]);
    const again = await previewRemittance(database, { key, remittanceHourMs: R + HOUR, catalog, time, nowMs: now + HOUR });
    assert.deepEqual(again.periods.map((p) => [p.period, p.bill]), [[old, 1]]);
  });
});

describe('2. a billing factor changed mid-month', () => {
  const catalogWith = (bf: string) =>
    parseCatalog({ products: [{ productTag: 'metered', contractEnabled: false, awsProductCode: 'metered-code', metrics: [{ metric: 'Cores', billingFactor: bf, dimensions: { aws: 'cores', azure: null }, gratis: false }] }] });
  const R = Date.UTC(2025, 4, 10, 5);

  it('re-values the month\'s earlier claims at the new factor (billing.md counts metric units)', async () => {
    // The example: 10 billed at 0.25 (claim 40 Cores), the factor becomes 0.5.
    const key = keyOf('metered', 'Cores');
    await storeTallies(database, [{ key, hourMs: R, value: '40' }]);
    const first = await compute(key, R, catalogWith('0.25'));
    assert.equal(first.bill, 10);
    await succeed(first.recordId);
    await storeTallies(database, [{ key, hourMs: R + HOUR, value: '0' }]);
    const same = await compute(key, R + HOUR, catalogWith('0.5'));
    assert.equal(same.bill, 0, 'MTD still 40: ceil((40 - 40) x 0.5) = 0');
    await storeTallies(database, [{ key, hourMs: R + 2 * HOUR, value: '8' }]);
    const more = await compute(key, R + 2 * HOUR, catalogWith('0.5'));
    assert.equal(more.bill, 4, 'MTD 48: ceil((48 - 40) x 0.5) = 4');
  });

  it('a lowered factor does not under-bill', async () => {
    const key = keyOf('metered', 'Cores');
    await storeTallies(database, [{ key, hourMs: R, value: '40' }]);
    await succeed((await compute(key, R, catalogWith('0.25'))).recordId);
    await storeTallies(database, [{ key, hourMs: R + HOUR, value: '40' }]);
    const r = await compute(key, R + HOUR, catalogWith('0.125'));
    assert.equal(r.bill, 5, 'MTD 80: ceil((80 - 40) x 0.125) = 5');
  });

  it('exact decimals for a factor like 1/3: unchanged, the month adds up to ceil(MTD x bf); changed, nothing billed twice', async () => {
    const key = keyOf('metered', 'Cores');
    const third = catalogWith('0.3333');
    const bills: number[] = [];
    for (const [i, v] of ['10', '10', '0.01'].entries()) {
      await storeTallies(database, [{ key, hourMs: R + i * HOUR, value: v }]);
      const r = await compute(key, R + i * HOUR, third);
      bills.push(r.bill);
      if (r.bill > 0) await succeed(r.recordId);
    }
    // 6.666 -> 7 and 6.669333 -> 7: the claims rounded up to 20 digits cost nothing.
    assert.deepEqual(bills, [4, 3, 0]);
    await storeTallies(database, [{ key, hourMs: R + 3 * HOUR, value: '0' }]);
    const half = await compute(key, R + 3 * HOUR, catalogWith('0.5'));
    // Claims 12.0012... + 9.0009... = 21.0021... Cores, MTD 20.01: already more than used.
    assert.equal(half.bill, 0);
  });
});

describe('4. roll-up rows in the pull path', () => {
  it('are left out with a count and a reason; the specific rows of the hour are stored', async () => {
    const org = `org-${randomUUID().slice(0, 8)}`;
    const H = hourStart(Date.now(), HOUR) - HOUR;
    const row = (over: Partial<RawTally>): RawTally => ({ orgId: org, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: '111122223333', hour: new Date(H).toISOString(), value: 2, ...over });
    const source = { name: 'fake', readHour: async () => ({ tallies: [row({}), row({ sla: '_ANY', value: 5 }), row({ usage: '_ANY', value: 5 })], rejected: [] }) };
    const activities = createUsagePullActivities({ database, catalog, time, source, log: createLogger('test', 'silent') });
    const result: PullHourResult = await new MockActivityEnvironment().run(activities.pullUsageHour, { hourMs: H });
    assert.equal(result.status, 'pulled', JSON.stringify(result));
    assert.equal(result.tallies, 1);
    assert.equal(result.skipped?.rollups, 2);
    assert.match(result.skipped?.reason ?? '', /roll-up.*twice/);
    const stored = await database.pool.query<{ sla: string; usage: string }>('SELECT sla, usage FROM tallies WHERE org_id = $1', [org]);
    assert.deepEqual(stored.rows, [{ sla: 'Premium', usage: 'Production' }]);
  });
});

describe('5. a key rejected again and again', () => {
  const R = Date.UTC(2025, 5, 10, 5);

  async function rejectHours(key: RemittanceKey, codes: string[], from = R) {
    for (const [i, code] of codes.entries()) {
      await storeTallies(database, [{ key, hourMs: from + i * HOUR, value: '1' }]);
      const r = await compute(key, from + i * HOUR);
      assert.equal(r.status, 'Pending', `${r.status}: ${r.reason}`);
      await reject(r.recordId, code);
    }
  }
  const parkedOf = async (key: RemittanceKey) =>
    (await database.pool.query<{ at: Date | null; reason: string | null }>('SELECT parked_at AS at, parked_reason AS reason FROM remittance_keys WHERE key = $1', [keyString(key)])).rows[0]!;

  it('is parked after 3 rejections of the same kind: visible, not swept, nothing sent, the amount kept owed; a retry resumes it', async () => {
    const key = keyOf('rhel-for-x86-els-payg-addon', 'vCPUs');
    await rejectHours(key, ['marketplace_customer_not_subscribed', 'marketplace_customer_not_subscribed']);
    assert.equal((await parkedOf(key)).at, null, 'two rejections: not parked yet');
    assert.ok((await findOwingKeys(database, 1000)).some((k) => keyString(k) === keyString(key)), 'control: a rejected key is owing');
    await rejectHours(key, ['marketplace_customer_not_subscribed'], R + 2 * HOUR);
    const parked = await parkedOf(key);
    assert.ok(parked.at, 'parked after the third rejection');
    assert.match(parked.reason ?? '', /3 records in a row were rejected with marketplace_customer_not_subscribed/);
    assert.ok(!(await findOwingKeys(database, 1000)).some((k) => keyString(k) === keyString(key)), 'the sweep leaves a parked key alone');

    // New usage: the hour's record is computed with everything owed but held back, not sent.
    await storeTallies(database, [{ key, hourMs: R + 3 * HOUR, value: '1' }]);
    const held = await compute(key, R + 3 * HOUR);
    assert.equal(held.status, 'Failed');
    assert.equal(held.errorCode, 'key_parked');
    assert.equal(held.bill, 4, 'the three rejected hours and this one: still owed');
    assert.match(held.reason ?? '', /parked.*retry/s);
    const report = await listRemittances(database, { orgId: key.orgId }, { limit: 10 });
    assert.match(report.items[0]!.keyParked?.reason ?? '', /marketplace_customer_not_subscribed/, 'the report shows the key parked, with its reason');

    // The operator retries the key: resumed, owing again, and the next hour bills everything.
    const retried = await retryRemittances({ database, catalog, time, now: () => R + 4 * HOUR }, { productTag: key.productTag, start: new Date(R), end: new Date(R + 4 * HOUR), orgIds: [key.orgId], dryRun: false, force: false, actor: 'test' });
    assert.ok(retried.changes.length > 0);
    assert.equal((await parkedOf(key)).at, null, 'resumed by the retry');
    assert.ok((await findOwingKeys(database, 1000)).some((k) => keyString(k) === keyString(key)), 'owing again after the retry');
    const resumed = await compute(key, R + 5 * HOUR);
    assert.equal(resumed.status, 'Pending');
    assert.equal(resumed.bill, 4);
  });

  it('rejections of different kinds, or a success in between, do not park; a contract change resumes a parked key', async () => {
    const mixed = keyOf('rhel-for-x86-els-payg-addon', 'vCPUs');
    await rejectHours(mixed, ['marketplace_customer_not_subscribed', 'subscription_terminated', 'marketplace_customer_not_subscribed']);
    assert.equal((await parkedOf(mixed)).at, null);

    const interrupted = keyOf('rhel-for-x86-els-payg-addon', 'vCPUs');
    await rejectHours(interrupted, ['marketplace_customer_not_subscribed', 'marketplace_customer_not_subscribed']);
    await storeTallies(database, [{ key: interrupted, hourMs: R + 2 * HOUR, value: '1' }]);
    await succeed((await compute(interrupted, R + 2 * HOUR)).recordId);
    await rejectHours(interrupted, ['marketplace_customer_not_subscribed'], R + 3 * HOUR);
    assert.equal((await parkedOf(interrupted)).at, null, 'the success ended the run');

    const key = keyOf('rhel-for-x86-els-payg-addon', 'vCPUs');
    await rejectHours(key, ['marketplace_customer_not_subscribed', 'marketplace_customer_not_subscribed', 'marketplace_customer_not_subscribed']);
    assert.ok((await parkedOf(key)).at);
    await putContract(database, {
      contractId: `c-${key.orgId}`, orgId: key.orgId, billingProvider: 'aws', billingAccountId: key.billingAccountId, productTag: key.productTag,
      startDate: '2025-01-01T00:00:00.000Z', endDate: null, licenseId: null, aws: { productCode: 'rhel-els-payg-addon', customerAwsAccountId: key.billingAccountId, licenseArn: null }, metrics: [],
    }, { actor: 'test' });
    assert.equal((await parkedOf(key)).at, null, 'a contract change resumes the key');
    const row = await getRemittance(database, (await compute(key, R + 4 * HOUR)).remittanceId);
    assert.equal(row?.status, 'Pending');
    assert.equal(row?.bill, 3);
  });
});
