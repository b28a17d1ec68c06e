// Regression tests for the review fixes of commit bce194d, under today's record model (one
// workflow per marketplace record; the paths moved into db/ledger.ts, activities/index.ts and
// the marketplace gateway), on real PostgreSQL and, for the batch hold, the AWS emulator:
//
// - a record already `Sending` resumes by asking the marketplace, never by a blind send;
// - a voided gratis part counts again: an operator's reset re-evaluates a gratis month;
// - the sweep's hour: a close retried late closes the hour as of now, not as of its schedule;
// - only recent `Pending` records hold a partial batch.
//
// The fourth fix, "a reset queued behind a retry wins", is a branch of the record workflow
// (workflows/remittance.ts): it is tested on Temporal's time-skipping server with the other
// workflow branches, where both signals can be made to arrive in one workflow task.
// The crash that leaves a record `Sending` end to end: test/integration/crash.test.ts.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type SendResult } from '../../activities';
import { loadConfig } from '../../config/env';
import { openDatabase, type Database } from '../../db/client';
import { putContract } from '../../db/contracts';
import { computeGroup, getRecord, loadContractsFor, markDispatchedMany, markSending, type TimeSettings } from '../../db/ledger';
import { storeTallies } from '../../db/tallies';
import { lookupMetric, type Catalog } from '../../domain/catalog';
import { loadCatalog } from '../../config/catalog';
import type { RemittanceKey } from '../../domain/key';
import { recordTargetOf } from '../../domain/record';
import { hourStart } from '../../domain/time';
import { startAwsEmulator, type AwsEmulator } from '../../scripts/emulators/aws';
import { createLogger } from '../../lib/log';
import { createMarketplaceGateway, type MarketplaceGateway } from '../../marketplaces';
import type { SendOutcome, UsageRecord } from '../../marketplaces/types';
import { resetRemittances } from '../../operations';
import { createTestDatabase, type TestDatabase } from '../../scripts/lib/test-database';

const HOUR = 3_600_000;
const time: TimeSettings = { hourMs: HOUR, graceHours: 0.1667, acceptanceHours: { aws: 6, azure: 24 } };
const log = createLogger('review-fixes', 'silent');

let testDb: TestDatabase;
let database: Database;
let catalog: Catalog;

before(async () => {
  testDb = await createTestDatabase('review_fixes');
  database = openDatabase(testDb.url, { max: 8 });
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
async function compute(key: RemittanceKey, hourMs: number) {
  const t = recordTargetOf(key, lookupMetric(catalog, key.productTag, key.metric) ?? null, await loadContractsFor(database.pool, key), hourMs);
  const out = await computeGroup(database, { keys: [key], hourMs, target: 'problem' in t ? null : t, catalog, time, nowMs: hourMs + 1.2 * HOUR });
  return { ...out.computed[0]!, record: out.record };
}

/** A marketplace that records what it was asked and accepts everything. */
function recordingMarketplace(): MarketplaceGateway & { asked: string[] } {
  const asked: string[] = [];
  const accept = (how: string) => async (r: UsageRecord): Promise<SendOutcome> => {
    asked.push(how);
    return { kind: 'accepted', receiptId: `${how}-${r.recordId}` };
  };
  return { asked, submit: accept('submit'), resolve: accept('resolve'), close: async () => undefined };
}

describe('the sweep closes the hour as of now', () => {
  // First in the file: its close computes every owing key of the database, and there is none yet.
  it('a close attempt retried hours after its schedule closes the newest closed hour, not the scheduled one', async () => {
    const started: string[] = [];
    const nowMs = Date.UTC(2025, 5, 1, 12, 30);
    const acts = createActivities({ database, catalog, time, marketplaces: recordingMarketplace(), log, now: () => nowMs, startRecordWorkflow: async (s) => void started.push(s.workflowId) });
    // Scheduled for the close of 08:00 (09:10:01, its end plus grace), retried through an outage until 12:30.
    const env = new MockActivityEnvironment({ attempt: 5, workflowExecution: { workflowId: 'remit-sweep/test', runId: randomUUID() } });
    const out: { hour: string | null } = await env.run(acts.closeHour, { atMs: Date.UTC(2025, 5, 1, 9, 10, 1) });
    assert.equal(out.hour, '2025-06-01T11:00:00.000Z', 'the newest hour whose window has closed at 12:30');
    const closes = await database.pool.query<{ hour: Date }>('SELECT hour FROM hour_closes ORDER BY hour');
    assert.deepEqual(closes.rows.map((r) => r.hour.toISOString()), ['2025-06-01T11:00:00.000Z'], 'no record made for an hour already over');
  });
});

describe('a record already Sending resumes', () => {
  it('asks the marketplace what it recorded (resolve) instead of sending again, and records its answer', async () => {
    const key = keyOf('rhel-for-x86-els-payg-addon', 'vCPUs');
    const R = hourStart(Date.now(), HOUR) - HOUR;
    await storeTallies(database, [{ key, hourMs: R, value: '6' }]);
    const { record } = await compute(key, R);
    assert.ok(record, 'a record to send');
    // A worker marked the intent, dispatched the call, and died before any answer was recorded.
    await markSending(database, record.id);
    await markDispatchedMany(database, [record.id]);

    const marketplace = recordingMarketplace();
    const acts = createActivities({ database, catalog, time, marketplaces: marketplace, log });
    const r: SendResult = await new MockActivityEnvironment().run(acts.sendRecord, { recordId: record.id });
    assert.deepEqual(marketplace.asked, ['resolve'], 'never a blind send of a record that may be recorded');
    assert.equal(r.status, 'Succeeded');
    assert.equal(r.receiptId, `resolve-${record.id}`);
    const row = await getRecord(database, record.id);
    assert.deepEqual([row!.status, row!.attempts, row!.attemptOpen, row!.receiptId], ['Succeeded', 2, false, `resolve-${record.id}`]);

    // A record that was never in flight is submitted (through the batcher), not resolved.
    const fresh = keyOf('rhel-for-x86-els-payg-addon', 'vCPUs');
    await storeTallies(database, [{ key: fresh, hourMs: R, value: '2' }]);
    const other = (await compute(fresh, R)).record!;
    const m2 = recordingMarketplace();
    await new MockActivityEnvironment().run(createActivities({ database, catalog, time, marketplaces: m2, log }).sendRecord, { recordId: other.id });
    assert.deepEqual(m2.asked, ['submit']);
  });
});

describe('a voided gratis part counts again', () => {
  it('a reset of a gratis hour re-evaluates the month: once the contract says it is not its first month, the usage is billed', async () => {
    // ansible-aap-managed Managed-nodes is gratis in a contract's first month (billing.md).
    const key = keyOf('ansible-aap-managed', 'Managed-nodes');
    const R = Date.UTC(2025, 4, 10, 5);
    const contract = (startDate: string) => ({
      contractId: `c-${key.orgId}`, orgId: key.orgId, billingProvider: 'aws' as const, billingAccountId: key.billingAccountId, productTag: key.productTag,
      startDate, endDate: null, licenseId: null, aws: { productCode: 'ansible-code', customerAwsAccountId: key.billingAccountId, licenseArn: null }, metrics: [],
    });
    await putContract(database, contract('2025-05-02T00:00:00.000Z'), { actor: 'test' });
    await storeTallies(database, [{ key, hourMs: R, value: '5' }]);
    const first = await compute(key, R);
    assert.equal(first.status, 'Gratis', `${first.status}: ${first.reason}`);

    // The contract was wrong: it started in April, so May is billable. An operator resets May's hour.
    await putContract(database, contract('2025-04-01T00:00:00.000Z'), { actor: 'test' });
    const reset = await resetRemittances({ database, catalog, time, now: () => R + 2 * HOUR }, { productTag: key.productTag, start: new Date(R), end: new Date(R + HOUR), orgIds: [key.orgId], dryRun: false, force: false, actor: 'test' });
    assert.deepEqual(reset.changes.map((c) => [c.remittanceId, c.status, c.action]), [[first.remittanceId, 'Gratis', 'void']]);

    const again = await compute(key, R + 2 * HOUR);
    assert.equal(again.status, 'Pending', `${again.status}: ${again.reason}`);
    assert.equal(again.bill, 5, 'the voided gratis part no longer counts as remitted');
    assert.equal(again.record?.quantity, 5);
  });
});

describe('only recent Pending records hold a partial batch', () => {
  // 20-second hours: a partial batch waits up to 1 s between records and at most 10 s in all
  // (marketplaces/index.ts); a record still Pending since 5 minutes no longer makes it wait.
  const HOUR_MS = 20_000;
  let aws: AwsEmulator;
  let gateway: MarketplaceGateway;
  let stale: string;

  before(async () => {
    // The gateway's AWS client takes its credentials from the environment, as in production.
    process.env.AWS_ACCESS_KEY_ID ??= 'review';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'review-secret';
    aws = await startAwsEmulator({ hourMs: HOUR_MS, acceptanceHours: 6, host: '127.0.0.1' });
    const cfg = loadConfig({ ...process.env, DATABASE_URL: testDb.url, REMIT_HOUR_SECONDS: String(HOUR_MS / 1000), AWS_METERING_ENDPOINT: aws.url, AZURE_METERING_ENDPOINT: '' });
    gateway = await createMarketplaceGateway(cfg, log, { database });
    // Records the stories above left Pending would hold batches: none of them is on its way.
    await database.pool.query("UPDATE marketplace_records SET status = 'Expired' WHERE status = 'Pending'");
    // A record whose workflow never started, left Pending long ago.
    stale = randomUUID();
    await database.pool.query(
      `INSERT INTO marketplace_records (id, marketplace, identity, remittance_hour, customer, dimension, quantity, status, deadline, workflow_id, updated_at)
       VALUES ($1, 'aws', $2, now() - interval '1 hour', $3, 'vCPU_hours', 1, 'Pending', now(), $4, now() - interval '10 minutes')`,
      [stale, `stale|${stale}`, JSON.stringify({ marketplace: 'aws', productCode: 'held', customerAwsAccountId: '999900000000' }), `remittance/stale/${stale}`],
    );
  });
  after(async () => {
    await gateway?.close();
    await aws?.close();
  });

  /** Two records 3 s apart (well past the 1 s linger, well within the 10 s cap): the record counts of the calls. */
  async function twoRecordsApart(): Promise<number[]> {
    const since = Date.now();
    const record = (i: number): UsageRecord => ({ recordId: randomUUID(), customer: { marketplace: 'aws', productCode: 'held', customerAwsAccountId: String(700000000000 + i + Math.floor(Math.random() * 1e9)) }, dimension: 'vCPU_hours', quantity: 1, timestampMs: hourStart(Date.now(), HOUR_MS) });
    const first = gateway.submit(record(0));
    await sleep(3000);
    const outcomes = await Promise.all([first, gateway.submit(record(1))]);
    assert.deepEqual(outcomes.map((o) => o.kind), ['accepted', 'accepted']);
    return aws.calls().filter((c) => c.at >= since).map((c) => c.recordCount);
  }

  it('a record left Pending for minutes does not hold a partial batch: each record goes out after the linger', async () => {
    assert.deepEqual(await twoRecordsApart(), [1, 1]);
  });

  it('a record made moments ago (its workflow starting) does: the second record joins the first one\'s call', async () => {
    await database.pool.query('UPDATE marketplace_records SET updated_at = now() WHERE id = $1', [stale]);
    try {
      assert.deepEqual(await twoRecordsApart(), [2]);
    } finally {
      await database.pool.query("UPDATE marketplace_records SET status = 'Expired' WHERE id = $1", [stale]);
    }
  });
});
