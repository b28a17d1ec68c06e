// The ledger's batched writes (issue 8's speed work), on real PostgreSQL: an hour's close computes
// many groups in one set-based transaction (computeGroups), and the records of one marketplace call
// write their intent, dispatch and acceptance in one statement each. Batching must not change a
// single bill: the same ledger computed group by group and all at once must agree.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openDatabase, type Database } from '../../db/client';
import {
  computeGroup,
  computeGroups,
  findOwingKeys,
  getRecord,
  loadContractsFor,
  markDispatchedMany,
  markOutcome,
  markSending,
  markSendingMany,
  markSucceededMany,
  voidRecord,
  type GroupOutcome,
  type KeyGroup,
  type TimeSettings,
} from '../../db/ledger';
import { storeTallies } from '../../db/tallies';
import { lookupMetric, type Catalog } from '../../domain/catalog';
import { loadCatalog } from '../../config/catalog';
import { keyString, type RemittanceKey } from '../../domain/key';
import { recordTargetOf } from '../../domain/record';
import { createTestDatabase, type TestDatabase } from '../../scripts/lib/test-database';

const HOUR = 3_600_000;
const time: TimeSettings = { hourMs: HOUR, graceHours: 0.1667, acceptanceHours: { aws: 6, azure: 24 } };
const R = Date.UTC(2025, 4, 1, 7); // first day of a month: the previous month is looked at too
const settings = (catalog: Catalog) => ({ catalog, time, nowMs: R + 1.2 * HOUR });

const key = (account: string, orgId: string, sla = 'Premium'): RemittanceKey => ({
  billingProvider: 'aws',
  billingAccountId: account,
  orgId,
  productTag: 'rhel-for-x86-els-payg-addon',
  metric: 'vCPUs',
  sla,
  usage: 'Production',
});
const K = {
  a1: key('100000000001', 'org-a1'),
  a2: key('100000000001', 'org-a2', 'Standard'), // same customer and dimension as a1: one record
  b: key('100000000002', 'org-b'),
  c: key('100000000003', 'org-c'), // its previous hour failed: billed again now
  e1: key('100000000005', 'org-e1'),
  e2: key('100000000005', 'org-e2'), // its record for the hour already exists: deferred
  f: key('100000000006', 'org-f'), // usage only of the next hour: no row now
  late: key('100000000007', 'org-late'), // usage of the previous month
};

let catalog: Catalog;
const dbs: Array<{ t: TestDatabase; database: Database }> = [];

async function open(name: string): Promise<Database> {
  const t = await createTestDatabase(name);
  const database = openDatabase(t.url, { max: 4 });
  dbs.push({ t, database });
  return database;
}

async function groupOf(database: Database, keys: RemittanceKey[], hourMs: number): Promise<KeyGroup> {
  const t = recordTargetOf(keys[0]!, lookupMetric(catalog, keys[0]!.productTag, keys[0]!.metric) ?? null, await loadContractsFor(database.pool, keys[0]!), hourMs);
  return { keys, target: 'problem' in t ? null : t };
}

/** The same history in any database: a failed earlier hour, a record already made, late usage. */
async function seed(database: Database): Promise<KeyGroup[]> {
  await storeTallies(database, [{ key: K.c, hourMs: R - HOUR, value: '2' }]);
  const earlier = await computeGroup(database, { ...settings(catalog), ...(await groupOf(database, [K.c], R - HOUR)), hourMs: R - HOUR });
  await markSending(database, earlier.record!.id);
  await markOutcome(database, earlier.record!.id, { status: 'Failed', errorCode: 'marketplace_throttled', reason: 'gave up' });

  await storeTallies(database, [
    { key: K.a1, hourMs: R, value: '3' },
    { key: K.a2, hourMs: R, value: '4' },
    { key: K.b, hourMs: R, value: '1.5' },
    { key: K.c, hourMs: R, value: '1' },
    { key: K.e1, hourMs: R, value: '2' },
    { key: K.e2, hourMs: R, value: '5' },
    { key: K.f, hourMs: R + HOUR, value: '9' },
    { key: K.late, hourMs: R - 3 * 24 * HOUR, value: '6' },
  ]);
  await computeGroup(database, { ...settings(catalog), ...(await groupOf(database, [K.e1], R)), hourMs: R });
  return [
    await groupOf(database, [K.a1, K.a2], R),
    await groupOf(database, [K.b], R),
    await groupOf(database, [K.c], R),
    await groupOf(database, [K.e2], R),
    await groupOf(database, [K.f], R),
    await groupOf(database, [K.late], R),
  ];
}

/** What a close decided, without its random ids. */
function decided(outs: GroupOutcome[]) {
  return outs.map((o) => ({
    record: o.record && { identity: o.record.identity, quantity: o.record.quantity, status: o.record.status, workflowId: o.record.workflowId, deadline: new Date(o.record.deadline).toISOString() },
    computed: o.computed.map((c) => ({ key: keyString(c.key), status: c.status, bill: c.bill, errorCode: c.errorCode, workflowId: c.workflowId })),
    deferred: o.deferred.map(keyString),
  }));
}

before(async () => {
  catalog = loadCatalog();
});
after(async () => {
  for (const { t, database } of dbs) {
    await database.close();
    await t.drop();
  }
});

describe('an hour closed in batches bills exactly what it bills group by group', () => {
  let batched: Database;
  let batchedOut: GroupOutcome[];

  it('the same groups, closed at once and one at a time, make the same records, bills and deferrals', async () => {
    batched = await open('batched_close');
    const oneByOne = await open('one_by_one_close');
    batchedOut = await computeGroups(batched, { ...settings(catalog), groups: await seed(batched), hourMs: R });
    const singles: GroupOutcome[] = [];
    for (const g of await seed(oneByOne)) singles.push(await computeGroup(oneByOne, { ...settings(catalog), ...g, hourMs: R }));
    assert.deepEqual(decided(batchedOut), decided(singles));
    // And the keys left owing are the same (the sweep's view).
    assert.deepEqual((await findOwingKeys(batched, 100)).map(keyString), (await findOwingKeys(oneByOne, 100)).map(keyString));
  });

  it('what the batch decided follows the billing rules', () => {
    const [a, b, c, e, f, late] = decided(batchedOut);
    assert.equal(a!.record?.quantity, 7, 'two keys of one customer and dimension: one record of 3 + 4');
    assert.deepEqual(a!.computed.map((x) => x.bill).sort(), [3, 4]);
    assert.equal(b!.record?.quantity, 2, '1.5 vCPU-hours bill 2 units (rounded up, cumulative)');
    assert.equal(c!.record?.quantity, 3, 'the failed earlier hour (2) is billed again with this hour (1)');
    assert.equal(e!.record, null);
    assert.deepEqual(e!.deferred, [keyString(K.e2)], 'the customer already has a record this hour: the key waits for the next');
    assert.deepEqual(f!.computed, [], 'usage only after the hour: nothing is computed for it now');
    assert.equal(late!.record?.quantity, 6, 'usage of the previous month is billed in this hour');
  });

  it('the keys written are no longer owing; the deferred and the later-usage keys still are', async () => {
    const owing = new Set((await findOwingKeys(batched, 100)).map(keyString));
    for (const k of [K.a1, K.a2, K.b, K.c, K.late]) assert.ok(!owing.has(keyString(k)), `${keyString(k)} was computed`);
    for (const k of [K.e2, K.f]) assert.ok(owing.has(keyString(k)), `${keyString(k)} must stay owing`);
  });

  it('the writes of one marketplace call: intent for all, a voided record left alone, each acceptance with its own receipt', async () => {
    const [a, b, c] = batchedOut.map((o) => o.record!);
    // B was rejected and an operator reset it (only a final record can be voided).
    await markSending(batched, b!.id);
    await markOutcome(batched, b!.id, { status: 'Failed', errorCode: 'marketplace_customer_not_subscribed', reason: 'not subscribed' });
    await voidRecord(batched, b!.id, 'operator reset');

    const intent = await markSendingMany(batched, [a!.id, b!.id, c!.id, 'no-such-record']);
    assert.deepEqual(intent.map((x) => x && [x.row.status, x.row.attempts, x.wasInFlight]), [['Sending', 1, false], ['Voided', 1, false], ['Sending', 1, false], undefined]);
    // A second attempt before any dispatch: in flight, not in doubt (nothing went out).
    const again = await markSendingMany(batched, [c!.id]);
    assert.deepEqual(again.map((x) => x && [x.wasInFlight, x.row.inDoubt, x.row.attempts]), [[true, false, 2]]);
    // Dispatched, then the worker dies: the next attempt knows the record may have reached AWS.
    await markDispatchedMany(batched, [a!.id, c!.id]);
    const afterCrash = await markSendingMany(batched, [c!.id]);
    assert.equal(afterCrash[0]!.row.inDoubt, true);

    const done = await markSucceededMany(batched, [
      { id: a!.id, receiptId: 'rcpt-a' },
      { id: b!.id, receiptId: 'rcpt-b' },
      { id: c!.id, receiptId: 'rcpt-c' },
    ]);
    assert.deepEqual(done.map((r) => r && [r.status, r.receiptId]), [['Succeeded', 'rcpt-a'], ['Voided', null], ['Succeeded', 'rcpt-c']]);
    const rows = await batched.pool.query<{ key: string; status: string; receipt_id: string | null }>('SELECT key, status, receipt_id FROM remittances WHERE record_id = ANY($1) ORDER BY key', [[a!.id, b!.id]]);
    assert.deepEqual(
      rows.rows.map((r) => [r.key, r.status, r.receipt_id]),
      [
        [keyString(K.a1), 'Succeeded', 'rcpt-a'],
        [keyString(K.a2), 'Succeeded', 'rcpt-a'],
        [keyString(K.b), 'Voided', null],
      ].sort((x, y) => (x[0]! < y[0]! ? -1 : 1)),
    );
    // A duplicate acceptance changes nothing.
    const dup = await markSucceededMany(batched, [{ id: a!.id, receiptId: 'rcpt-other' }]);
    assert.equal(dup[0]!.receiptId, 'rcpt-a');
    assert.equal((await getRecord(batched, c!.id))!.attemptOpen, false);
  });
});
