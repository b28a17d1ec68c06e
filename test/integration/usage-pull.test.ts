// The pull path on the real stack: usage read from the Prometheus emulator over real HTTP by the
// usage pull workflow on the real Temporal server (its own task queue and worker), stored in
// real PostgreSQL, and billed through the remittance workflows to the AWS emulator. Hours are
// scaled: HOUR_MS of wall time is one hour.
//
// What it proves: a failing read is retried until it succeeds and is visible meanwhile; an outage
// of several hours is back-filled after recovery, each hour read successfully exactly once, and a
// re-pull replaces values instead of adding them; bad data fails the hour with a reason and stores
// nothing of it; pulled usage is billed.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createUsagePullActivities } from '../../activities/usage-pull';
import { listPulls, planPulls } from '../../db/usage-pulls';
import { startPrometheusEmulator, type PrometheusEmulator } from '../../emulators/prometheus';
import { createLogger } from '../../lib/log';
import { createPrometheusSource, parseUsageQueries, type PrometheusSource } from '../../usage/prometheus';
import { UsageReadError } from '../../usage/source';
import { deleteUsagePullSchedule, ensureUsagePullSchedule, usagePullScheduleId } from '../../workers/usage-pull-schedule';
import type { UsagePullInput, UsagePullResult } from '../../workflows/usage-pull';
import { eventually, startTestStack, workflowBundle, type TestStack } from '../helpers/stack';

const HOUR_MS = 4000;
const ACCOUNT = '111122223333';
const METRIC_NAME = 'test_system_cpu_logical_count';

let stack: TestStack;
let prom: PrometheusEmulator;
let source: PrometheusSource;
let connection: NativeConnection;
let worker: Worker;
let running: Promise<void>;
const pullQueue = `usage-pull-${randomUUID()}`;

before(async () => {
  stack = await startTestStack({ hourMs: HOUR_MS, graceHours: 0.25 });
  prom = await startPrometheusEmulator({ hourMs: HOUR_MS });
  source = createPrometheusSource({
    url: prom.url,
    timeoutMs: 1000,
    queries: parseUsageQueries({
      labels: { orgId: 'external_organization', sla: 'support', usage: 'usage', billingProvider: 'billing_marketplace', billingAccountId: 'billing_marketplace_account' },
      queries: [{ productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', query: `sum by (external_organization, support, usage, billing_marketplace, billing_marketplace_account) (avg_over_time(${METRIC_NAME}[$hour]))` }],
    }),
  });
  connection = await NativeConnection.connect({ address: process.env.TEMPORAL_ADDRESS! });
  const log = createLogger('usage-pull-test', process.env.LOG_LEVEL || 'error');
  // Pulls run on their own task queue and worker; the remittances they start run on the stack's.
  worker = await Worker.create({
    connection,
    namespace: stack.config.temporalNamespace,
    taskQueue: pullQueue,
    workflowBundle: await workflowBundle(),
    activities: createUsagePullActivities({
      database: stack.database,
      catalog: stack.catalog,
      time: stack.time,
      source,
      log,
    }),
  });
  running = worker.run();
});

after(async () => {
  await deleteUsagePullSchedule(stack.client, pullQueue).catch(() => undefined);
  if (worker?.getState() === 'RUNNING') worker.shutdown();
  await running?.catch(() => undefined);
  await connection?.close();
  await source?.close();
  await prom?.close();
  await stack?.stop();
});

beforeEach(async () => {
  prom.reset();
  // Each story starts with no pull recorded: the back-fill starts at the first pull (or `since`).
  await stack.database.pool.query('DELETE FROM usage_pulls');
});

const iso = (ms: number) => new Date(ms).toISOString();

/** Usage of `orgId` for hour `hourMs` as the query would answer it (a sample at the end of the hour). */
function usage(orgId: string, hourMs: number, value: string | number, labels: Record<string, string> = {}) {
  prom.load({
    metric: { __name__: METRIC_NAME, external_organization: orgId, support: 'Premium', usage: 'Production', billing_marketplace: 'aws', billing_marketplace_account: ACCOUNT, ...labels },
    values: [[(hourMs + HOUR_MS) / 1000, String(value)]],
  });
}

/** Wait until the current hour has just begun, so a story's "hour that just ended" is known. */
async function startOfAnHour(): Promise<number> {
  const now = Date.now();
  const into = now % HOUR_MS;
  if (into > 200) await sleep(HOUR_MS - into + 30);
  return stack.currentHourMs();
}

function startPull(input: Partial<UsagePullInput> = {}) {
  return stack.client.workflow.start('usagePullWorkflow', {
    taskQueue: pullQueue,
    workflowId: `usage-pull-test/${randomUUID()}`,
    args: [{ hourLengthMs: HOUR_MS, lagHours: 0, ...input } satisfies UsagePullInput],
  });
}

/** Pause the schedule, let the run in progress (if any) finish, delete it: nothing pulls behind a story's back. */
async function stopSchedule(taskQueue: string): Promise<void> {
  const handle = stack.client.schedule.getHandle(usagePullScheduleId(taskQueue));
  await handle.pause('story over');
  const d = await handle.describe();
  for (const a of d.info.runningActions) await stack.client.workflow.getHandle(a.workflow.workflowId, a.workflow.firstExecutionRunId).result();
  await handle.delete();
}

async function pulls(fromMs: number, toMs: number) {
  return listPulls(stack.database, { fromMs, toMs });
}

async function talliesOf(orgId: string): Promise<Map<string, string>> {
  const r = await stack.database.pool.query<{ hour: Date; value: string }>('SELECT hour, value::text AS value FROM tallies WHERE org_id = $1 ORDER BY hour', [orgId]);
  return new Map(r.rows.map((row) => [row.hour.toISOString(), row.value]));
}

/** Successful reads per evaluation time (the end of the hour, unix seconds). */
function successfulReads(): Map<number, number> {
  const out = new Map<number, number>();
  for (const q of prom.queries()) if (q.outcome === 'ok') out.set(q.time, (out.get(q.time) ?? 0) + 1);
  return out;
}

async function remittancesOf(orgId: string): Promise<Array<Record<string, any>>> {
  const r = await stack.request('GET', `/v1/remittances?orgId=${orgId}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.items;
}

/** Wait until every remittance of the org is final, and return them. */
async function settled(orgId: string, timeoutMs = 40_000) {
  return eventually(async () => {
    const items = await remittancesOf(orgId);
    return items.length > 0 && items.every((i) => !['Pending', 'Sending'].includes(i.status)) ? items : undefined;
  }, timeoutMs, `the remittances of ${orgId} to finish`);
}

describe('the Prometheus source against the emulator', () => {
  const hour = { hourMs: Date.parse('2026-03-15T09:00:00Z'), hourLengthMs: HOUR_MS };

  it('sends one instant query per configured metric at the end of the hour, with the hour scaled', async () => {
    usage('org-src', hour.hourMs, 7);
    const tallies = await source.readHour(hour);
    assert.deepEqual(tallies, [
      { orgId: 'org-src', productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: ACCOUNT, hour: iso(hour.hourMs), value: 7 },
    ]);
    const [q] = prom.queries();
    assert.equal(q!.time, (hour.hourMs + HOUR_MS) / 1000);
    assert.match(q!.query, new RegExp(`avg_over_time\\(${METRIC_NAME}\\[4s\\]\\)`));
  });

  it('turns every kind of read failure into a retryable UsageReadError, a timeout within the configured time', async () => {
    for (const kind of ['server-error', 'throttle', 'timeout', 'lost-response'] as const) {
      prom.faults.add({ kind });
      const t0 = Date.now();
      const err = await source.readHour(hour).then(
        () => assert.fail(`${kind}: expected a read error`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof UsageReadError, `${kind}: ${String(err)}`);
      assert.equal(err.retryable, true);
      if (kind === 'server-error') assert.match(err.message, /HTTP 503 unavailable/);
      if (kind === 'throttle') assert.equal(err.retryAfterMs, 1000);
      if (kind === 'timeout') assert.ok(Date.now() - t0 < 3000, `a hanging server is given up after about 1 s, took ${Date.now() - t0} ms`);
    }
    const down = createPrometheusSource({ url: 'http://127.0.0.1:9', queries: source.queries.slice(), timeoutMs: 1000 });
    await assert.rejects(down.readHour(hour), (e: unknown) => e instanceof UsageReadError && /could not be read/.test(e.message));
    await down.close();
  });
});

describe('planning the back-fill (PostgreSQL)', () => {
  const HOUR = 3_600_000;
  const T = Date.parse('2026-03-10T12:00:00Z');
  const plan = (o: { toMs?: number; limit?: number; sinceMs?: number } = {}) => planPulls(stack.database, { toMs: o.toMs ?? T, hourLengthMs: HOUR, limit: o.limit ?? 1000, sinceMs: o.sinceMs });
  const record = async (hourMs: number, status: string) => {
    await stack.database.pool.query(`INSERT INTO usage_pulls (hour, status, attempts) VALUES ($1, $2, 1)`, [new Date(hourMs), status]);
  };

  it('owes missing and unfinished hours from the first pull (or since), oldest first, bounded, never older than the previous month', async () => {
    assert.deepEqual((await plan()).hours, [T], 'before any pull, only the hour itself');
    assert.deepEqual((await plan({ sinceMs: T - 2 * HOUR })).hours, [T - 2 * HOUR, T - HOUR, T]);
    await record(T - 5 * HOUR, 'pulled');
    await record(T - 4 * HOUR, 'pulling'); // a run stopped, or is still retrying it
    await record(T - 3 * HOUR, 'failed'); // bad data: the back-fill leaves it to an operator
    await record(T - HOUR, 'pulled');
    assert.deepEqual((await plan()).hours, [T - 4 * HOUR, T - 2 * HOUR, T]);
    const bounded = await plan({ limit: 2 });
    assert.deepEqual([bounded.hours, bounded.more], [[T - 4 * HOUR, T - 2 * HOUR], true]);
    assert.deepEqual((await plan({ limit: 3 })).more, false);
    assert.deepEqual((await plan({ sinceMs: T - 7 * HOUR })).hours, [T - 7 * HOUR, T - 6 * HOUR, T - 4 * HOUR, T - 2 * HOUR, T]);
    // Two calendar months at most: from 2026-02-01 for an hour on 2026-03-01.
    const M = Date.parse('2026-03-01T02:00:00Z');
    const wide = await plan({ toMs: M, sinceMs: Date.parse('2025-12-15T00:00:00Z') });
    assert.equal(wide.hours[0], Date.parse('2026-02-01T00:00:00Z'));
    assert.equal(wide.hours.length, 28 * 24 + 3);
  });
});

describe('usage pull on the real stack', () => {
  it('retries a failing read until it succeeds, visible meanwhile, then bills the two pulled hours', async () => {
    const orgId = `org-pull-${randomUUID().slice(0, 8)}`;
    const H = await startOfAnHour();
    usage(orgId, H - 2 * HOUR_MS, 2);
    usage(orgId, H - HOUR_MS, 3.5);
    prom.faults.add({ kind: 'server-error', durationMs: 2000 });
    const handle = await startPull({ since: iso(H - 2 * HOUR_MS) });

    // While the source fails: a pending activity with its attempt count and last error (what the Web UI shows).
    const pending = await eventually(async () => {
      const d = await handle.describe();
      const a = d.raw.pendingActivities?.[0];
      return a && (a.attempt ?? 0) >= 2 && a.lastFailure?.message ? a : undefined;
    }, 10_000, 'the pull to be retrying');
    assert.equal(pending.activityType?.name, 'pullUsageHour');
    assert.match(pending.lastFailure!.message!, /Prometheus answered HTTP 503 unavailable/);
    const retrying = await pulls(H - HOUR_MS, H - HOUR_MS);
    assert.equal(retrying[0]?.status, 'pulling');
    assert.match(retrying[0]?.lastError ?? '', /HTTP 503/);

    const result: UsagePullResult = await handle.result();
    assert.equal(result.target, iso(H - HOUR_MS));
    assert.deepEqual(result.failed, []);
    assert.deepEqual(result.hours.slice(0, 2), [iso(H - HOUR_MS), iso(H - 2 * HOUR_MS)], 'the target first, then the back-fill oldest first');
    assert.equal(result.tallies, 2);

    const rows = await pulls(H - 2 * HOUR_MS, H - HOUR_MS);
    assert.deepEqual(rows.map((r) => [r.hour, r.status, r.tallies, r.lastError]), [
      [iso(H - 2 * HOUR_MS), 'pulled', 1, null],
      [iso(H - HOUR_MS), 'pulled', 1, null],
    ]);
    assert.ok(rows[1]!.attempts >= 2, `the hour took ${rows[1]!.attempts} attempts`);
    assert.equal(rows[0]!.attempts, 1);
    assert.deepEqual(Object.fromEntries(await talliesOf(orgId)), { [iso(H - 2 * HOUR_MS)]: '2', [iso(H - HOUR_MS)]: '3.5' });

    // Billed: 2 + 3.5 vCPUs at billing factor 1 -> one record of 6, seen by the marketplace.
    const items = await settled(orgId);
    const succeeded = items.filter((i) => i.status === 'Succeeded');
    assert.equal(succeeded.reduce((n, i) => n + i.quantity, 0), 6, JSON.stringify(items));
    for (const s of succeeded) assert.equal(stack.aws.records().filter((r) => r.receiptId === s.receiptId && r.customer === ACCOUNT).length, 1);
  });

  it('back-fills every hour of a source outage exactly once after recovery; a re-pull replaces, never adds', async () => {
    const orgId = `org-outage-${randomUUID().slice(0, 8)}`;
    const X = await startOfAnHour();
    // Usage for the hour before the schedule starts and the 5 hours after, a different value each.
    const hours = Array.from({ length: 6 }, (_, i) => X + (i - 1) * HOUR_MS);
    hours.forEach((h, i) => usage(orgId, h, i + 1));
    // The source is down from now for 3.2 hours: the first scheduled run (at X + 0.25 h, for X - 1 h)
    // fails until then, and the runs at X + 1.25 h and X + 2.25 h would pull hours that are not there.
    prom.faults.add({ kind: 'server-error', durationMs: Math.round(3.2 * HOUR_MS) });
    const outageEnd = Date.now() + 3.2 * HOUR_MS;
    await ensureUsagePullSchedule(stack.client, pullQueue, stack.time, { lagHours: 0.25, backfillLimit: 50 });

    const covered = hours.slice(0, 5); // X - 1 .. X + 3
    const rows = await eventually(async () => {
      const r = await pulls(covered[0]!, covered[4]!);
      return r.length === 5 && r.every((p) => p.status === 'pulled') ? r : undefined;
    }, 12 * HOUR_MS, 'every hour of the outage to be pulled');
    await stopSchedule(pullQueue);
    assert.ok(Date.now() > outageEnd, 'nothing could be read before the source recovered');

    assert.ok(rows[0]!.attempts > 1, `the hour being pulled when the outage began was retried (${rows[0]!.attempts} attempts)`);
    const reads = successfulReads();
    for (const h of covered) assert.equal(reads.get((h + HOUR_MS) / 1000), 1, `hour ${iso(h)} read successfully exactly once`);
    const failedReads = prom.queries().filter((q) => q.outcome === 'server-error');
    assert.ok(failedReads.length > 1);
    assert.ok(failedReads.every((q) => q.time === (covered[0]! + HOUR_MS) / 1000), 'during the outage only the first hour was tried; the skipped runs did not pile up');

    const stored = await talliesOf(orgId);
    for (const [i, h] of covered.entries()) assert.equal(stored.get(iso(h)), String(i + 1), `tally of ${iso(h)}`);

    // The source corrects hour X (2 -> 10); an operator re-pulls it: the value is replaced.
    usage(orgId, X, 10);
    const again: UsagePullResult = await (await startPull({ hours: [iso(X)] })).result();
    assert.equal(again.hours[0], iso(X));
    const after = await talliesOf(orgId);
    assert.equal(after.get(iso(X)), '10');
    assert.equal(after.size, stored.size, 'no tally row added');
    const row = (await pulls(X, X))[0]!;
    assert.equal(row.status, 'pulled');
    assert.equal(row.attempts, 2);

    // Nothing lost, nothing twice: what the marketplace accepted is the final month total, rounded up once.
    const total = [...after.values()].reduce((n, v) => n + Number(v), 0);
    const items = await eventually(async () => {
      const list = await settled(orgId);
      const billed = list.filter((i) => i.status === 'Succeeded').reduce((n, i) => n + i.quantity, 0);
      return billed === Math.ceil(total) ? list : undefined;
    }, 40_000, `the pulled usage (${total}) to be billed`);
    assert.ok(items.every((i) => ['Succeeded', 'NothingDue'].includes(i.status)), JSON.stringify(items.map((i) => [i.status, i.reason])));
  });

  it('fails an hour with bad data with the reasons, stores nothing of it, and stores it once an operator re-pulls fixed data', async () => {
    const good = `org-good-${randomUUID().slice(0, 8)}`;
    const bad = `org-bad-${randomUUID().slice(0, 8)}`;
    const H = await startOfAnHour();
    usage(good, H - HOUR_MS, 4);
    usage(bad, H - HOUR_MS, 5, { billing_marketplace: 'gcp' }); // refused by the API's validation
    usage(good, H - 2 * HOUR_MS, 'NaN'); // refused by the source's mapping

    const first: UsagePullResult = await (await startPull({ since: iso(H - 2 * HOUR_MS) })).result();
    assert.equal(first.pulled, 0);
    assert.deepEqual(first.failed.map((f) => f.hour), [iso(H - HOUR_MS), iso(H - 2 * HOUR_MS)]);
    assert.match(first.failed[1]!.reason, /value "NaN" is not a finite number/);
    assert.match(first.failed[0]!.reason, new RegExp(`tally 1 \\(${bad} / rhel-for-x86-els-payg-addon / vCPUs / gcp / ${ACCOUNT}\\) billingProvider: unknown marketplace`));
    const rows = await pulls(H - 2 * HOUR_MS, H - HOUR_MS);
    assert.deepEqual(rows.map((r) => [r.status, r.tallies, r.attempts]), [['failed', 0, 1], ['failed', 0, 1]]);
    assert.match(rows[1]!.lastError!, /nothing of it was stored/);
    assert.equal((await talliesOf(good)).size, 0, "the good org's usage of a failed hour is not stored either");
    assert.equal((await talliesOf(bad)).size, 0);

    // Reading again gives the same answer, so the back-fill leaves failed hours alone.
    const activities = createUsagePullActivities({ database: stack.database, catalog: stack.catalog, time: stack.time, source, log: createLogger('t', 'silent') });
    assert.deepEqual((await activities.planUsagePulls({ toMs: H - HOUR_MS, limit: 10 })).hours, []);

    // The data is fixed at the source; the operator re-pulls the hour.
    prom.clearSeries();
    usage(good, H - HOUR_MS, 4);
    usage(bad, H - HOUR_MS, 5);
    const fixed: UsagePullResult = await (await startPull({ hours: [iso(H - HOUR_MS)] })).result();
    assert.equal(fixed.hours[0], iso(H - HOUR_MS));
    assert.deepEqual(fixed.failed, []);
    assert.deepEqual(Object.fromEntries(await talliesOf(good)), { [iso(H - HOUR_MS)]: '4' });
    assert.deepEqual(Object.fromEntries(await talliesOf(bad)), { [iso(H - HOUR_MS)]: '5' });
    const row = (await pulls(H - HOUR_MS, H - HOUR_MS))[0]!;
    assert.deepEqual([row.status, row.tallies, row.lastError, row.attempts], ['pulled', 2, null, 2]);
  });

  it('the schedule is one per task queue and is updated in place when the settings change', async () => {
    const queue = `usage-pull-schedule-${randomUUID()}`;
    try {
      await ensureUsagePullSchedule(stack.client, queue, stack.time, { lagHours: 0.5, backfillLimit: 10 });
      await ensureUsagePullSchedule(stack.client, queue, stack.time, { lagHours: 1.25, backfillLimit: 20 });
      const d = await stack.client.schedule.getHandle(usagePullScheduleId(queue)).describe();
      assert.equal(d.action.type, 'startWorkflow');
      if (d.action.type === 'startWorkflow') {
        assert.equal(d.action.workflowType, 'usagePullWorkflow');
        assert.equal(d.action.taskQueue, queue);
        assert.deepEqual(d.action.args, [{ hourLengthMs: HOUR_MS, lagHours: 1.25, backfillLimit: 20 }]);
      }
      const interval = d.spec.intervals?.[0];
      assert.equal(Number(interval?.every), HOUR_MS);
      assert.equal(Number(interval?.offset ?? 0), 0.25 * HOUR_MS);
    } finally {
      await deleteUsagePullSchedule(stack.client, queue);
    }
  });
});
