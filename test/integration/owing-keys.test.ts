// Found in review: an operator retry of an older failed hour (recomputeRecord)
// advances remittance_keys.computed_seq to the key's change_seq although it only looks at usage up
// to its own (older) hour. A later hour's failure that only the hourly sweep would re-bill is then
// hidden from the sweep (findOwingKeys), and its amount is never billed unless new tallies arrive.

import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { randomUUID } from 'node:crypto';
import { openDatabase, type Database } from '../../db/client';
import { computeGroup, findOwingKeys, loadContractsFor, markOutcome, markSending, previewRemittance, recomputeRecord, type TimeSettings } from '../../db/ledger';
import { storeTallies } from '../../db/tallies';
import { putContract } from '../../db/contracts';
import { lookupMetric, type Catalog } from '../../domain/catalog';
import { loadCatalog } from '../../config/catalog';
import { recordTargetOf } from '../../domain/record';
import { keyString, type RemittanceKey } from '../../domain/key';
import { createTestDatabase, type TestDatabase } from '../../scripts/lib/test-database';

const HOUR = 3_600_000;
const time: TimeSettings = { hourMs: HOUR, graceHours: 0.1667, acceptanceHours: { aws: 6, azure: 24 } };
const R = Date.UTC(2025, 2, 10, 5);
const S0 = R + HOUR;

let testDb: TestDatabase;
let database: Database;
let catalog: Catalog;

before(async () => {
  testDb = await createTestDatabase('review_owing');
  database = openDatabase(testDb.url, { max: 4 });
  catalog = loadCatalog();
});
after(async () => {
  await database?.close();
  await testDb?.drop();
});

/** The close of hour `hourMs` for this key alone: its remittance, and the record it went to. */
async function compute(key: RemittanceKey, hourMs: number, nowMs: number) {
  const t = recordTargetOf(key, lookupMetric(catalog, key.productTag, key.metric) ?? null, await loadContractsFor(database.pool, key), hourMs);
  const out = await computeGroup(database, { keys: [key], hourMs, target: 'problem' in t ? null : t, catalog, time, nowMs });
  return { ...out.computed[0]!, recordId: out.record?.id ?? '' };
}

async function sendAndFail(id: string) {
  await markSending(database, id);
  await markOutcome(database, id, { status: 'Failed', errorCode: 'marketplace_customer_not_subscribed', reason: 'not subscribed' });
}

it('a retry of an older failed hour does not hide a later failed hour from the sweep', async () => {
  const key: RemittanceKey = { billingProvider: 'aws', billingAccountId: String(100_000_000_000 + Math.floor(Math.random() * 1e9)), orgId: `org-${randomUUID().slice(0, 8)}`, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production' };
  const k = keyString(key);

  // Hour R: 3 vCPU-hours ingested (workflow R started), computed, sent, rejected.
  await storeTallies(database, [{ key, hourMs: R, value: '3' }]);
  const r = await compute(key, R, R + 1.2 * HOUR);
  assert.equal(r.bill, 3);
  await sendAndFail(r.recordId);

  // Hour S0 (the key's last usage): bills its own 2 plus R's failed 3, and is rejected too.
  await storeTallies(database, [{ key, hourMs: S0, value: '2' }]);
  const s = await compute(key, S0, S0 + 1.2 * HOUR);
  assert.equal(s.bill, 5);
  await sendAndFail(s.recordId);

  const owingBefore = (await findOwingKeys(database, 100)).map(keyString);
  assert.ok(owingBefore.includes(k), 'control: the failed S0 makes the key owing for the sweep');

  // The operator retries hour R only (signal `retry` to R's waiting workflow, or the retry API
  // with a range covering R), inside R's deadline. R re-bills its own 3 and succeeds.
  const rr = await recomputeRecord(database, r.recordId, { catalog, time, nowMs: S0 + 1.5 * HOUR });
  assert.equal(rr.quantity, 3);
  await markSending(database, rr.id);
  await markOutcome(database, rr.id, { status: 'Succeeded', receiptId: 'rcpt-1' });

  // 2 units (S0's own usage) are still owed...
  const p = await previewRemittance(database, { key, remittanceHourMs: S0 + 3 * HOUR, catalog, time, nowMs: S0 + 3 * HOUR });
  assert.equal(p.bill, 2, 'S0 usage is still owed');
  // ...and nothing but the sweep would ever bill them: the key must still be owing.
  const owingAfter = (await findOwingKeys(database, 100)).map(keyString);
  assert.ok(owingAfter.includes(k), 'the key owes 2 units but the sweep no longer sees it: lost unless new tallies arrive');
});

// Review finding: gatherPeriods looks at the current and previous month, and at older months only
// when they hold a failed / expired / voided *part*. A WaitingForContract decision stores no part,
// so usage of a contract-enabled product waiting for a contract for more than a month is never
// billed once the contract arrives (billing.md: "nothing is lost; the usage is billed once a
// contract exists"), and the audit's preview (same periods) does not see it either.
it('usage waiting for a contract for over a month is billed once the contract arrives', async () => {
  const customer = String(200_000_000_000 + Math.floor(Math.random() * 1e9));
  const key: RemittanceKey = { billingProvider: 'aws', billingAccountId: customer, orgId: `org-${randomUUID().slice(0, 8)}`, productTag: 'rosa', metric: 'Instance-hours', sla: 'Premium', usage: 'Production' };
  const jan = Date.UTC(2025, 0, 20, 5);
  await storeTallies(database, [{ key, hourMs: jan, value: '4' }]);
  const w = await compute(key, jan, jan + 1.2 * HOUR);
  assert.equal(w.status, 'WaitingForContract');
  await putContract(database, {
    contractId: `c-${key.orgId}`, orgId: key.orgId, billingProvider: 'aws', billingAccountId: customer, productTag: 'rosa',
    startDate: '2025-01-01T00:00:00.000Z', endDate: null, licenseId: null,
    aws: { productCode: 'rosa-product', customerAwsAccountId: customer, licenseArn: null }, metrics: [],
  }, { actor: 'test' });
  const march = Date.UTC(2025, 2, 2, 5);
  const m = await compute(key, march, march + 1.2 * HOUR);
  assert.equal(m.bill, 4, `January's 4 Instance-hours must be billed once the contract exists (got ${m.status} ${m.bill})`);
});
