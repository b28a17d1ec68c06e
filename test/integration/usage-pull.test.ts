// The pull path against a real Prometheus: Debian's server (scripts/lib/prometheus.ts, installed
// when missing), fed through its remote-write receiver as a real setup feeds it, read with the
// real PromQL of config/usage-queries.json by usage/prometheus.ts, by the usage pull workflow on
// the real Temporal server (its own task queue and worker), stored in real PostgreSQL, and billed
// through the remittance workflows to the AWS emulator. Hours of the stack stories are scaled:
// HOUR_MS of wall time is one hour.
//
// What it proves: values, labels to keys, gaps, counter resets and late series come out of the
// real PromQL as tallies; a Prometheus that is down (stopped) or slow (frozen with SIGSTOP) is a
// retryable read failure, retried until it succeeds and visible meanwhile; an outage of several
// hours is back-filled after recovery, each hour read successfully exactly once (Prometheus' own
// query log), and a re-pull replaces values instead of adding them; one bad series does not stop
// the hour: every good series is stored, each bad one recorded with its reason, and an operator's
// re-pull after the fix stores it; pulled usage is billed.
//
// The emulator (scripts/emulators/prometheus.ts) is used only for what a real server cannot be made to
// do: answer 503 or 429 with Retry-After, or lose its answer after the query ran.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createUsagePullActivities } from '../../activities/usage-pull';
import { listPulls, planPulls } from '../../db/usage-pulls';
import { startPrometheusEmulator, type PrometheusEmulator } from '../../scripts/emulators/prometheus';
import { startPrometheus, type PrometheusServer } from '../../scripts/lib/prometheus';
import { createLogger } from '../../lib/log';
import { createPrometheusSource, loadUsageQueries, parseUsageQueries, type PrometheusSource } from '../../usage/prometheus';
import { UsageReadError } from '../../usage/source';
import { deleteUsagePullSchedule, ensureUsagePullSchedule } from '../../workers/usage-pull-schedule';
import { usagePullScheduleId } from '../../workflows/definitions';
import type { UsagePullInput, UsagePullResult } from '../../workflows/usage-pull';
import { eventually, startTestStack, workflowBundle, type TestStack } from '../../scripts/lib/stack-harness';

const HOUR_MS = 4000;
const ACCOUNT = '111122223333';
const METRIC_NAME = 'test_system_cpu_logical_count';

let stack: TestStack;
let prom: PrometheusServer;
let source: PrometheusSource;
let connection: NativeConnection;
let worker: Worker;
let running: Promise<void>;
const pullQueue = `usage-pull-${randomUUID()}`;

before(async () => {
  stack = await startTestStack({ hourMs: HOUR_MS, graceHours: 0.25 });
  prom = await startPrometheus({ queryLog: true });
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
  await prom?.stop();
  await stack?.stop();
});

beforeEach(async () => {
  // Each story starts with no pull recorded: the back-fill starts at the first pull (or `since`).
  await stack.database.pool.query('DELETE FROM usage_pulls');
});

const iso = (ms: number) => new Date(ms).toISOString();

/** The latest hour a story wrote usage for: a real server keeps every story's series. */
let lastWrittenHour = 0;

/** Usage of `orgId` for hour `hourMs`: one sample in the middle of the hour, remote-written. */
async function usage(orgId: string, hourMs: number, value: number, labels: Record<string, string> = {}) {
  lastWrittenHour = Math.max(lastWrittenHour, hourMs);
  await prom.write([
    {
      labels: { __name__: METRIC_NAME, external_organization: orgId, support: 'Premium', usage: 'Production', billing_marketplace: 'aws', billing_marketplace_account: ACCOUNT, ...labels },
      samples: [[hourMs + HOUR_MS / 2, value]],
    },
  ]);
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

/** Reads of the test metric the server answered, per evaluation time (the end of the hour, epoch ms), from its query log. */
function successfulReads(): Map<number, number> {
  const out = new Map<number, number>();
  for (const q of prom.queries()) if (q.query.includes(METRIC_NAME)) out.set(q.timeMs, (out.get(q.timeMs) ?? 0) + 1);
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

describe('the Prometheus source against a real Prometheus, with the real queries of config/usage-queries.json', () => {
  const HOUR = 3_600_000;
  // Real hours, long past: the server keeps them (retention 100y) and the remote-write receiver
  // takes them (out-of-order window).
  const H = Date.parse('2026-03-15T09:00:00Z');
  const hour = { hourMs: H, hourLengthMs: HOUR };
  const at = (minute: number) => H + minute * 60_000;
  let real: PrometheusSource;
  before(() => {
    real = createPrometheusSource({ url: prom.url, queries: loadUsageQueries(), timeoutMs: 1500 });
  });
  after(() => real?.close());

  const sub = (id: string, org: string, extra: Record<string, string> = {}) => ({
    labels: {
      __name__: 'ocm_subscription', _id: id, product: 'moa-hostedcontrolplane', billing_model: 'marketplace', external_organization: org,
      support: 'Premium', usage: 'Production', billing_marketplace: 'aws', billing_marketplace_account: ACCOUNT, ...extra,
    },
    samples: [0, 15, 30, 45, 59].map((m) => [at(m), 1] as [number, number]),
  });
  const cores = (id: string, values: Array<[number, number]>) => ({ labels: { __name__: 'cluster:usage:workload:capacity_physical_cpu_hours', _id: id }, samples: values.map(([m, v]) => [at(m), v] as [number, number]) });
  const els = (org: string, values: Array<[number, number]>, extra: Record<string, string> = {}) => ({
    labels: { __name__: 'system_cpu_logical_count', product: '69,204', billing_model: 'marketplace', external_organization: org, billing_marketplace: 'aws', billing_marketplace_account: ACCOUNT, _id: `host-${org}`, ...extra },
    samples: values.map(([m, v]) => [at(m), v] as [number, number]),
  });
  const byOrg = (tallies: Array<{ orgId: string; productTag: string; metric: string; value: number }>) =>
    Object.fromEntries(tallies.map((t) => [`${t.orgId} ${t.productTag} ${t.metric}`, t.value]).sort(([a], [b]) => String(a).localeCompare(String(b))));

  it('values and labels become keys: the ROSA join on the subscription, clusters of an org summed, the ELS average with its default support level', async () => {
    await prom.write([
      sub('c-1', 'org-rosa'),
      sub('c-2', 'org-rosa'),
      cores('c-1', [[0, 4], [30, 8], [59, 6]]), // max over the hour: 8
      cores('c-2', [[10, 2.5]]),
      // Not billed: a cluster without a marketplace subscription, and a subscription of another product.
      cores('c-3', [[10, 100]]),
      sub('c-4', 'org-other', { product: 'ocp' }),
      cores('c-4', [[10, 100]]),
      els('org-els', [[0, 2], [20, 4], [40, 6]]), // average 4
    ]);
    const read = await real.readHour(hour);
    assert.deepEqual(read.rejected, []);
    assert.deepEqual(byOrg(read.tallies), { 'org-els rhel-for-x86-els-payg-addon vCPUs': 4, 'org-rosa rosa Cores': 10.5 });
    const rosa = read.tallies.find((t) => t.orgId === 'org-rosa')!;
    assert.deepEqual(rosa, { orgId: 'org-rosa', productTag: 'rosa', metric: 'Cores', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: ACCOUNT, hour: iso(H), value: 10.5 });
    assert.equal(read.tallies.find((t) => t.orgId === 'org-els')!.sla, 'Premium', 'the ELS query has no support label: its default');
    // The queries ran at the end of the hour, as the server's own log says.
    const times = new Set(prom.queries().filter((q) => q.query.includes('ocm_subscription') || q.query.includes('system_cpu_logical_count')).map((q) => q.timeMs));
    assert.deepEqual([...times], [H + HOUR]);
  });

  it('gaps: a series that stopped within the hour counts its samples; an hour without samples has no usage; the next hour sees none of this one', async () => {
    const G = H + 24 * HOUR;
    const g = (m: number) => G + m * 60_000;
    await prom.write([{ labels: { ...els('org-gap', []).labels }, samples: [[g(0), 2], [g(5), 4]] }]);
    const read = await real.readHour({ hourMs: G, hourLengthMs: HOUR });
    assert.deepEqual(byOrg(read.tallies), { 'org-gap rhel-for-x86-els-payg-addon vCPUs': 3 });
    // The hour after: the series has no sample in it any more.
    assert.deepEqual((await real.readHour({ hourMs: G + HOUR, hourLengthMs: HOUR })).tallies, []);
    // An hour long before anything was written.
    assert.deepEqual(await real.readHour({ hourMs: G - 240 * HOUR, hourLengthMs: HOUR }), { tallies: [], rejected: [] });
  });

  it('counter resets: increase() over a restarted exporter counts across the reset', async () => {
    // The committed queries read gauges; a query over a counter (a usage query file may have one)
    // relies on Prometheus' reset handling, checked here on the real engine.
    const R = H + 48 * HOUR;
    const counter = createPrometheusSource({
      url: prom.url,
      timeoutMs: 1500,
      queries: parseUsageQueries({
        labels: { orgId: 'external_organization', sla: 'support', usage: 'usage', billingProvider: 'billing_marketplace', billingAccountId: 'billing_marketplace_account' },
        queries: [{ productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', query: 'sum by (external_organization, support, usage, billing_marketplace, billing_marketplace_account) (increase(test_vcpu_seconds_total[$hour])) / 3600' }],
      }),
    });
    try {
      const labels = { __name__: 'test_vcpu_seconds_total', external_organization: 'org-reset', support: 'Premium', usage: 'Production', billing_marketplace: 'aws', billing_marketplace_account: ACCOUNT };
      // 0 -> 3600 -> (exporter restarts) 0 -> 3600: 7200 vCPU-seconds, 2 vCPU-hours, over samples covering the whole hour.
      const m = (x: number) => R + x * 60_000;
      await prom.write([{ labels, samples: [[m(0), 0], [m(15), 1800], [m(29), 3600], [m(30), 0], [m(45), 1800], [m(60), 3600]] }]);
      const read = await counter.readHour({ hourMs: R, hourLengthMs: HOUR });
      assert.deepEqual(read.rejected, []);
      assert.equal(read.tallies.length, 1);
      assert.ok(Math.abs(read.tallies[0]!.value - 2) < 1e-9, `2 vCPU-hours across the reset, got ${read.tallies[0]!.value}`);
    } finally {
      await counter.close();
    }
  });

  it('late series: a series written after the hour was read is in the next read of it (what a re-pull picks up)', async () => {
    const L = H + 72 * HOUR;
    const l = (m: number) => L + m * 60_000;
    await prom.write([{ labels: els('org-early', []).labels, samples: [[l(10), 2]] }]);
    assert.deepEqual(byOrg((await real.readHour({ hourMs: L, hourLengthMs: HOUR })).tallies), { 'org-early rhel-for-x86-els-payg-addon vCPUs': 2 });
    // A remote-write queue that was behind delivers an agent's samples of that hour late.
    await prom.write([{ labels: els('org-late', []).labels, samples: [[l(20), 8]] }]);
    assert.deepEqual(byOrg((await real.readHour({ hourMs: L, hourLengthMs: HOUR })).tallies), {
      'org-early rhel-for-x86-els-payg-addon vCPUs': 2,
      'org-late rhel-for-x86-els-payg-addon vCPUs': 8,
    });
  });

  it('bad series are left out with a reason each; the good ones of the same query and hour are kept', async () => {
    const B = H + 96 * HOUR;
    const b = (m: number) => B + m * 60_000;
    const { billing_marketplace_account: _gone, ...noAccount } = els('x', []).labels;
    await prom.write([
      { labels: els('org-fine', []).labels, samples: [[b(10), 3]] },
      { labels: { ...noAccount, external_organization: 'org-no-account' }, samples: [[b(10), 5]] },
      { labels: els('org-nan', []).labels, samples: [[b(10), Number.NaN]] },
    ]);
    const read = await real.readHour({ hourMs: B, hourLengthMs: HOUR });
    assert.deepEqual(byOrg(read.tallies), { 'org-fine rhel-for-x86-els-payg-addon vCPUs': 3 });
    assert.equal(read.rejected.length, 2, read.rejected.join('\n'));
    assert.match(read.rejected.find((p) => p.includes('org-no-account'))!, /no billingAccountId \(label "billing_marketplace_account" is missing/);
    assert.match(read.rejected.find((p) => p.includes('org-nan'))!, /value "NaN" is not a finite number/);
  });

  it('a Prometheus that is down is a retryable read failure; once it is back, the same hour reads the same', async () => {
    const before = await real.readHour(hour);
    await prom.down();
    try {
      await assert.rejects(real.readHour(hour), (e: unknown) => e instanceof UsageReadError && e.retryable && /Prometheus at http:\/\/127\.0\.0\.1:\d+ could not be read: .*ECONNREFUSED/.test(e.message));
    } finally {
      await prom.up();
    }
    assert.deepEqual(await real.readHour(hour), before, 'the data survived the restart');
  });

  // The server stays frozen until the read gives up: a client without its own timeout would hang
  // here (undici's default is 5 minutes) and the test's timeout would fail it. How long the read
  // takes is not asserted; the configured timeout firing is (its error code).
  it('a Prometheus that is slow (frozen) is given up on the configured timeout, as a retryable read failure', { timeout: 120_000 }, async () => {
    prom.pause();
    try {
      const err = await real.readHour(hour).then(
        () => assert.fail('expected a read error'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof UsageReadError && err.retryable, String(err));
      assert.match(err.message, /could not be read: .*(UND_ERR_HEADERS_TIMEOUT|UND_ERR_BODY_TIMEOUT)|cut off: .*UND_ERR_BODY_TIMEOUT/);
    } finally {
      prom.resume();
    }
    assert.equal((await real.readHour(hour)).tallies.length, 2);
  });
});

describe('the Prometheus source against the emulator, for what a real server cannot be made to do', () => {
  // A real Prometheus does not answer 503 or 429 with Retry-After on demand, nor lose its answer
  // after running the query: the emulator's faults do.
  const hour = { hourMs: Date.parse('2026-03-15T09:00:00Z'), hourLengthMs: HOUR_MS };
  let emu: PrometheusEmulator;
  let emuSource: PrometheusSource;
  before(async () => {
    emu = await startPrometheusEmulator({ hourMs: HOUR_MS });
    emuSource = createPrometheusSource({ url: emu.url, timeoutMs: 1000, queries: source.queries.slice() });
  });
  after(async () => {
    await emuSource?.close();
    await emu?.close();
  });

  it('turns 503, 429 and a lost answer into a retryable UsageReadError, with the server\'s Retry-After', async () => {
    for (const kind of ['server-error', 'throttle', 'lost-response'] as const) {
      emu.faults.add({ kind });
      const err = await emuSource.readHour(hour).then(
        () => assert.fail(`${kind}: expected a read error`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof UsageReadError, `${kind}: ${String(err)}`);
      assert.equal(err.retryable, true);
      if (kind === 'server-error') assert.match(err.message, /HTTP 503 unavailable/);
      if (kind === 'throttle') assert.equal(err.retryAfterMs, 1000);
    }
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
  /** The real server is down from now for `ms` (stopped), then starts again on the same data and port. */
  function outage(ms: number): Promise<void> {
    return prom.down().then(() => sleep(ms)).then(() => prom.up());
  }

  it('retries a failing read until it succeeds, visible meanwhile, then bills the two pulled hours', async () => {
    const orgId = `org-pull-${randomUUID().slice(0, 8)}`;
    const H = await startOfAnHour();
    await usage(orgId, H - 2 * HOUR_MS, 2);
    await usage(orgId, H - HOUR_MS, 3.5);
    // Down until the retries have been seen (not for a fixed time: a pull that starts late on a
    // loaded machine found a 2-s outage already over).
    await prom.down();
    let handle: Awaited<ReturnType<typeof startPull>>;
    try {
      handle = await startPull({ since: iso(H - 2 * HOUR_MS) });

      // While the source is down: a pending activity with its attempt count and last error (what the Web UI shows).
      const pending = await eventually(async () => {
        const d = await handle.describe();
        const a = d.raw.pendingActivities?.[0];
        return a && (a.attempt ?? 0) >= 2 && a.lastFailure?.message ? a : undefined;
      }, 30_000, 'the pull to be retrying');
      assert.equal(pending.activityType?.name, 'pullUsageHour');
      assert.match(pending.lastFailure!.message!, /Prometheus at http:\/\/127\.0\.0\.1:\d+ could not be read/);
      const retrying = await pulls(H - HOUR_MS, H - HOUR_MS);
      assert.equal(retrying[0]?.status, 'pulling');
      assert.match(retrying[0]?.lastError ?? '', /ECONNREFUSED/);
    } finally {
      await prom.up(); // also when a step above failed: the stories after this one read it
    }

    const result: UsagePullResult = await handle.result();
    assert.equal(result.target, iso(H - HOUR_MS));
    assert.deepEqual(result.failed, []);
    assert.deepEqual(result.hours.slice(0, 2), [iso(H - HOUR_MS), iso(H - 2 * HOUR_MS)], 'the target first, then the back-fill oldest first');
    assert.equal(result.tallies, 2);

    const rows = await pulls(H - 2 * HOUR_MS, H - HOUR_MS);
    assert.deepEqual(rows.map((r) => [r.hour, r.status, r.tallies, r.rejected, r.lastError]), [
      [iso(H - 2 * HOUR_MS), 'pulled', 1, 0, null],
      [iso(H - HOUR_MS), 'pulled', 1, 0, null],
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
    for (const [i, h] of hours.entries()) await usage(orgId, h, i + 1);
    // The server is down from now for 3.2 hours: the first scheduled run (at X + 0.25 h, for X - 1 h)
    // fails until then, and the runs at X + 1.25 h and X + 2.25 h would pull hours that are not there.
    const back = outage(Math.round(3.2 * HOUR_MS));
    await ensureUsagePullSchedule(stack.client, pullQueue, stack.time, { lagHours: 0.25, backfillLimit: 50 });

    const covered = hours.slice(0, 5); // X - 1 .. X + 3
    const rows = await eventually(async () => {
      const r = await pulls(covered[0]!, covered[4]!);
      return r.length === 5 && r.every((p) => p.status === 'pulled') ? r : undefined;
    }, 12 * HOUR_MS, 'every hour of the outage to be pulled');
    await stopSchedule(pullQueue);
    await back;

    assert.ok(rows[0]!.attempts > 1, `the hour being pulled when the outage began was retried (${rows[0]!.attempts} attempts)`);
    assert.deepEqual(rows.slice(1).map((r) => r.attempts), [1, 1, 1, 1], 'during the outage only the first hour was tried; the skipped runs did not pile up');
    const reads = successfulReads();
    for (const h of covered) assert.equal(reads.get(h + HOUR_MS), 1, `hour ${iso(h)} read successfully exactly once (the server's query log)`);

    const stored = await talliesOf(orgId);
    for (const [i, h] of covered.entries()) assert.equal(stored.get(iso(h)), String(i + 1), `tally of ${iso(h)}`);

    // The source corrects hour X (2 -> 10); an operator re-pulls it: the value is replaced.
    await prom.deleteSeries(`{external_organization="${orgId}"}`, { startMs: X, endMs: X + HOUR_MS / 2 });
    await prom.write([{ labels: { __name__: METRIC_NAME, external_organization: orgId, support: 'Premium', usage: 'Production', billing_marketplace: 'aws', billing_marketplace_account: ACCOUNT }, samples: [[X + 0.75 * HOUR_MS, 10]] }]);
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

  it('one bad series does not stop the hour: the good ones are stored, each bad one recorded (row, result, metric); an operator re-pulls once fixed', async () => {
    const good = `org-good-${randomUUID().slice(0, 8)}`;
    const bad = `org-bad-${randomUUID().slice(0, 8)}`;
    // Hours no earlier story wrote to: H - 2 must hold the bad series alone.
    let H = await startOfAnHour();
    while (H - 2 * HOUR_MS <= lastWrittenHour) {
      await sleep(HOUR_MS);
      H = await startOfAnHour();
    }
    await usage(good, H - HOUR_MS, 4);
    await usage(bad, H - HOUR_MS, 5, { billing_marketplace: 'gcp' }); // refused by the API's validation
    await usage(bad, H - 2 * HOUR_MS, Number.NaN); // refused by the source's mapping: the hour's only series

    const first: UsagePullResult = await (await startPull({ since: iso(H - 2 * HOUR_MS) })).result();
    assert.equal(first.pulled, 1);
    assert.deepEqual(first.failed.map((f) => f.hour), [iso(H - 2 * HOUR_MS)], 'an hour is failed only when nothing of it could be stored');
    assert.match(first.failed[0]!.reason, /value "NaN" is not a finite number/);
    const rows = await pulls(H - 2 * HOUR_MS, H - HOUR_MS);
    assert.deepEqual(rows.map((r) => [r.status, r.tallies, r.rejected, r.attempts]), [['failed', 0, 1, 1], ['pulled', 1, 1, 1]]);
    assert.match(rows[1]!.lastError!, new RegExp(`1 series cannot be billed and were left out, the other 1 tallies were stored; fix them at the source and re-pull the hour: tally 1 \\(${bad} / rhel-for-x86-els-payg-addon / vCPUs / gcp / ${ACCOUNT}\\) billingProvider: unknown marketplace`));
    assert.deepEqual(Object.fromEntries(await talliesOf(good)), { [iso(H - HOUR_MS)]: '4' }, "the good org's usage is stored and billed");
    assert.equal((await talliesOf(bad)).size, 0);

    // What an operator and the alerts see.
    const metrics = await fetch(`${stack.apiUrl}/metrics`).then((r) => r.text());
    assert.match(metrics, /^remit_usage_pull_rejected_hours 2$/m);
    assert.match(metrics, /^remit_usage_pull_rejected_series 2$/m);
    assert.match(metrics, /^remit_usage_pull_hours\{status="failed"\} 1$/m);

    // Reading again gives the same answer, so the back-fill leaves these hours alone.
    const activities = createUsagePullActivities({ database: stack.database, catalog: stack.catalog, time: stack.time, source, log: createLogger('t', 'silent') });
    assert.deepEqual((await activities.planUsagePulls({ toMs: H - HOUR_MS, limit: 10 })).hours, []);

    // The data is fixed at the source (the bad series dropped, written right); the operator re-pulls both hours.
    for (const h of [H - 2 * HOUR_MS, H - HOUR_MS]) await prom.deleteSeries(`{external_organization="${bad}"}`, { startMs: h + HOUR_MS / 2, endMs: h + HOUR_MS / 2 });
    const fixedLabels = { __name__: METRIC_NAME, external_organization: bad, support: 'Premium', usage: 'Production', billing_marketplace: 'aws', billing_marketplace_account: ACCOUNT };
    await prom.write([{ labels: fixedLabels, samples: [[H - 2 * HOUR_MS + 0.75 * HOUR_MS, 1.5], [H - HOUR_MS + 0.75 * HOUR_MS, 5]] }]);
    const fixed: UsagePullResult = await (await startPull({ hours: [iso(H - HOUR_MS), iso(H - 2 * HOUR_MS)] })).result();
    assert.deepEqual(fixed.failed, []);
    assert.deepEqual(Object.fromEntries(await talliesOf(good)), { [iso(H - HOUR_MS)]: '4' });
    assert.deepEqual(Object.fromEntries(await talliesOf(bad)), { [iso(H - 2 * HOUR_MS)]: '1.5', [iso(H - HOUR_MS)]: '5' });
    const after = await pulls(H - 2 * HOUR_MS, H - HOUR_MS);
    assert.deepEqual(after.map((r) => [r.status, r.tallies, r.rejected, r.lastError, r.attempts]), [['pulled', 1, 0, null, 2], ['pulled', 2, 0, null, 2]]);
    assert.match(await fetch(`${stack.apiUrl}/metrics`).then((r) => r.text()), /^remit_usage_pull_rejected_hours 0$/m);
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
