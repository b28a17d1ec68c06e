// A remit alert fires in a real Prometheus (Debian's server, scripts/lib/prometheus.ts) that
// scrapes a real stack: two API replicas on one database (the stack's and a second one), the
// worker on the real Temporal server, the AWS emulator. The rules are ops/prometheus/alerts.yml
// itself, not a test copy: the two alerts read here have `for: 0m`, and a 1 s scrape and
// evaluation interval stands for the production 15 s-1 min one.
//
// The failure: a customer that is not subscribed (the AWS emulator's not-subscribed fault), so
// the hour's remittance ends Failed. While its acceptance deadline is still ahead (hours are 10 s,
// so the AWS window of 6 hours is 60 s, all of it within the alert's 3 hours), the amount can
// still be sent: RemitDeadlineApproaching must page then, not after it expired. The failure
// itself fires RemitRemittancesFailing, with the Failed count taken once from the two replicas.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../api/app';
import { createLogger } from '../../lib/log';
import { startPrometheus, type PrometheusServer } from '../../scripts/lib/prometheus';
import { eventually, startTestStack, type TestStack } from '../../scripts/lib/stack-harness';

const HOUR_MS = 10_000;
const RULES = path.resolve(__dirname, '..', '..', 'ops', 'prometheus', 'alerts.yml');
const CUSTOMER = '210987654321';

let stack: TestStack;
let replica: FastifyInstance;
let prom: PrometheusServer;

before(async () => {
  stack = await startTestStack({ hourMs: HOUR_MS, graceHours: 0.25 });
  replica = await buildApi({ database: stack.database, catalog: stack.catalog, time: stack.time, tokens: stack.tokens, log: createLogger('replica', 'silent') });
  const replicaUrl = await replica.listen({ port: 0, host: '127.0.0.1' });
  prom = await startPrometheus({
    interval: '1s',
    ruleFiles: [RULES],
    scrape: [{ job: 'remit-api', targets: [new URL(stack.apiUrl).host, new URL(replicaUrl).host] }],
    remoteWrite: false,
  });
});

after(async () => {
  await prom?.stop();
  await replica?.close();
  await stack?.stop();
});

interface PromAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  value: string;
}

async function alerts(): Promise<PromAlert[]> {
  const r = (await (await fetch(`${prom.url}/api/v1/alerts`)).json()) as { status: string; data: { alerts: PromAlert[] } };
  assert.equal(r.status, 'success');
  return r.data.alerts;
}

describe('remit alerts in a real Prometheus', () => {
  it('scrapes both API replicas and has loaded every rule of alerts.yml', async () => {
    await eventually(async () => {
      const t = (await (await fetch(`${prom.url}/api/v1/targets`)).json()) as { data: { activeTargets: Array<{ health: string }> } };
      return t.data.activeTargets.length === 2 && t.data.activeTargets.every((x) => x.health === 'up');
    }, 30_000, 'both API replicas to be scraped');
    const rules = (await (await fetch(`${prom.url}/api/v1/rules`)).json()) as { data: { groups: Array<{ rules: Array<{ name: string; health: string }> }> } };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    assert.ok(loaded.some((r) => r.name === 'RemitDeadlineApproaching'));
    assert.ok(loaded.length >= 17, `${loaded.length} rules`);
    assert.deepEqual(loaded.filter((r) => r.health === 'err').map((r) => r.name), [], 'every rule evaluates');
    assert.deepEqual((await alerts()).filter((a) => a.labels.alertname === 'RemitDeadlineApproaching' || a.labels.alertname === 'RemitRemittancesFailing'), [], 'nothing fires before the failure');
  });

  it('a customer that is not subscribed: RemitDeadlineApproaching pages while the record can still be sent, RemitRemittancesFailing counts it once', async () => {
    const orgId = `org-alert-${randomUUID().slice(0, 8)}`;
    stack.aws.faults.add({ kind: 'not-subscribed', match: { customer: CUSTOMER }, durationMs: 10 * HOUR_MS });
    const hour = stack.currentHourMs();
    const posted = await stack.request(
      'POST',
      '/v1/tallies',
      { tallies: [{ orgId, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: CUSTOMER, hour: new Date(hour).toISOString(), value: 4 }] },
      stack.tokens.ingest,
    );
    assert.equal(posted.status, 202, JSON.stringify(posted.body));

    const failed = await eventually(async () => {
      const r = await stack.request('GET', `/v1/remittances?orgId=${orgId}`);
      return (r.body.items as Array<Record<string, any>>).find((i) => i.status === 'Failed');
    }, 60_000, 'the remittance to fail');
    assert.equal(failed.errorCode, 'marketplace_customer_not_subscribed');
    const deadlineMs = Date.parse(failed.deadline);

    const firing = await eventually(async () => {
      const all = await alerts();
      const deadline = all.find((a) => a.labels.alertname === 'RemitDeadlineApproaching' && a.state === 'firing');
      const failing = all.find((a) => a.labels.alertname === 'RemitRemittancesFailing' && a.state === 'firing');
      return deadline && failing ? { deadline, failing, at: Date.now() } : undefined;
    }, 30_000, 'the alerts to fire');
    assert.ok(firing.at < deadlineMs, `paged ${Math.round((deadlineMs - firing.at) / 1000)} s before the deadline, while the amount can still be sent`);

    assert.deepEqual(firing.deadline.labels, { alertname: 'RemitDeadlineApproaching', marketplace: 'aws', severity: 'critical' });
    assert.match(firing.deadline.annotations.summary!, /^a record on aws is still unsent [\d.]+s before its acceptance deadline$/);
    assert.equal(firing.deadline.annotations.runbook_url, 'docs/operations.md#remitdeadlineapproaching');
    assert.ok(Number(firing.deadline.value) < 3 * 3600);

    assert.deepEqual(firing.failing.labels, { alertname: 'RemitRemittancesFailing', marketplace: 'aws', severity: 'warning' });
    const value = Number(firing.failing.value);
    assert.ok(value > 0.5 && value < 1.5, `one failed remittance, counted once across the two replicas (sum would say about 2): ${value}`);
  });
});
