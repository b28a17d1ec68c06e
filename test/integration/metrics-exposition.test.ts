// GET /metrics as Prometheus scrapes it (a real socket, a real PostgreSQL with a ledger in it),
// checked against what the operations configuration queries: every metric name, label and
// label value that ops/prometheus/alerts.yml and ops/grafana/remit-dashboard.json use is one the
// product exports (or a documented Temporal SDK metric), the promtool tests' input series have
// the labels of the real ones, and the dashboard shows every metric the product exports.

import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../api/app';
import { openDatabase, type Database } from '../../db/client';
import { loadCatalog } from '../../config/catalog';
import { MARKETPLACES } from '../../domain/key';
import { createLogger } from '../../lib/log';
import { REMITTANCE_STATUSES } from '../../domain/lifecycle';
import { createTestDatabase, type TestDatabase } from '../../scripts/lib/test-database';
import { alertTestSeries, groupingLabels, isTemporalSdkMetric, literalValues, loadDashboard, metricNames, opsExpressions, parseExposition, selectors, type Exposition } from '../helpers/promql';

const HOUR_MS = 3_600_000;
const tokens = { ingest: 'ingest-secret', operator: 'operator-secret' };
/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = new Set(['instance', 'job']);

let testDb: TestDatabase;
let database: Database;
let app: FastifyInstance;
let scraped: Exposition;
let scrapeText: string;
let contentType: string;

const labelsOf = (metric: string) => new Set(scraped.families.get(metric)?.series.flatMap((s) => Object.keys(s)) ?? []);
const valuesOf = (metric: string, label: string) => new Set(scraped.families.get(metric)?.series.map((s) => s[label]).filter((v) => v !== undefined) ?? []);

before(async () => {
  testDb = await createTestDatabase('metrics_exposition');
  database = openDatabase(testDb.url, { max: 4 });
  app = await buildApi({ database, catalog: loadCatalog(), time: { hourMs: HOUR_MS, graceHours: 0.1667, acceptanceHours: { aws: 6, azure: 24 } }, tokens, log: createLogger('metrics', 'silent') });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

  // A ledger with something in every gauge: ingested usage (owing keys), a refused roll-up row,
  // records still to send before their deadline (one of them failed), a parked key, and usage
  // pull hours.
  const hour = new Date(Math.floor(Date.now() / HOUR_MS) * HOUR_MS - HOUR_MS).toISOString();
  const tally = { orgId: 'org-m', productTag: 'rosa', metric: 'Cores', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: '111122223333', hour, value: 4 };
  const post = (tallies: unknown[]) => fetch(`${base}/v1/tallies`, { method: 'POST', headers: { authorization: `Bearer ${tokens.ingest}`, 'content-type': 'application/json' }, body: JSON.stringify({ tallies }) });
  assert.equal((await post([tally])).status, 202);
  assert.equal((await post([{ ...tally, sla: '_ANY' }])).status, 400);
  for (const [i, status] of ['Failed', 'Pending', 'Sending'].entries()) {
    await database.pool.query(
      `INSERT INTO remittances (id, key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, remittance_hour, status, bill, error_code, deadline)
       SELECT $1, key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, $2, $3, 4, $4, now() + interval '3 hours' FROM remittance_keys`,
      [`r-${i}`, new Date(Date.parse(hour) - i * HOUR_MS), status, status === 'Failed' ? 'marketplace_customer_not_subscribed' : null],
    );
  }
  await database.pool.query(`UPDATE remittance_keys SET parked_at = now(), parked_reason = 'three rejections', rejection_code = 'marketplace_customer_not_subscribed', rejections = 3`);
  await database.pool.query(`INSERT INTO usage_pulls (hour, status, attempts, rejected) VALUES ($1, 'pulled', 1, 2), ($2, 'pulling', 1, 0)`, [
    new Date(Date.parse(hour) - 2 * HOUR_MS),
    new Date(Date.parse(hour) - HOUR_MS),
  ]);

  const r = await fetch(`${base}/metrics`);
  assert.equal(r.status, 200);
  contentType = r.headers.get('content-type') ?? '';
  scrapeText = await r.text();
  scraped = parseExposition(scrapeText);
});

after(async () => {
  await app?.close();
  await database?.close();
  await testDb?.drop();
});

describe('GET /metrics', () => {
  it('is the Prometheus text format with the ledger read from the database', () => {
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    assert.match(scrapeText, /^remit_remittances\{marketplace="aws",status="Failed"\} 1$/m);
    assert.match(scrapeText, /^remit_remittance_quantity\{marketplace="aws",status="Failed"\} 4$/m);
    assert.match(scrapeText, /^remit_parked_keys\{marketplace="aws",error_code="marketplace_customer_not_subscribed"\} 1$/m);
    assert.match(scrapeText, /^remit_owing_keys 0$/m, 'a parked key is not owing: the sweep leaves it alone');
    assert.match(scrapeText, /^remit_tallies_ingested_total 1$/m);
    assert.match(scrapeText, /^remit_tallies_refused_total\{reason="rollup"\} 1$/m);
    assert.match(scrapeText, /^remit_usage_pull_hours\{status="pulling"\} 1$/m);
    assert.match(scrapeText, /^remit_usage_pull_rejected_series 2$/m);
    const deadline = /^remit_remittance_deadline_seconds\{marketplace="aws",status="Failed"\} (\S+)$/m.exec(scrapeText);
    assert.ok(deadline && Number(deadline[1]) > 2 * 3600 && Number(deadline[1]) <= 3 * 3600, `the deadline in 3 hours: ${deadline?.[0]}`);
    assert.ok(Number(/^remit_unremitted_oldest_age_seconds (\S+)$/m.exec(scrapeText)?.[1]) >= 0);
    // Every marketplace and status from 0, so that a first failure is a change delta() sees.
    for (const mp of MARKETPLACES) for (const s of REMITTANCE_STATUSES) assert.match(scrapeText, new RegExp(`^remit_remittances\\{marketplace="${mp}",status="${s}"\\} \\d+$`, 'm'));
  });

  it('exports every metric the alert rules and the dashboard query, with the labels and values they match on', () => {
    for (const { where, expr } of opsExpressions()) {
      const names = metricNames(expr);
      for (const n of names) {
        assert.ok(scraped.families.has(n) || isTemporalSdkMetric(n), `${where} uses ${n}, which GET /metrics does not export and the Temporal SDK does not document`);
      }
      for (const { metric, matchers } of selectors(expr)) {
        if (!metric.startsWith('remit_')) continue;
        for (const m of matchers) {
          assert.ok(labelsOf(metric).has(m.label), `${where}: ${metric} has no label ${m.label} (it has ${[...labelsOf(metric)].join(', ')})`);
          for (const v of literalValues(m)) assert.ok(valuesOf(metric, m.label).has(v), `${where}: ${metric}{${m.label}="${v}"} is never exported`);
        }
      }
      // Grouping labels must exist on the product metrics of the expression (Temporal's are not scraped here).
      if (names.every((n) => n.startsWith('remit_'))) {
        const available = new Set([...TARGET_LABELS, ...names.flatMap((n) => [...labelsOf(n)])]);
        for (const l of groupingLabels(expr)) assert.ok(available.has(l), `${where} groups by ${l}, which none of ${names.join(', ')} has`);
      }
    }
  });

  it('the dashboard shows every metric the product exports, and its marketplace choices are the marketplaces', () => {
    const dash = loadDashboard();
    const used = new Set(dash.panels.flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(t.expr))));
    const exported = [...scraped.families.keys()].filter((n) => n.startsWith('remit_'));
    assert.ok(exported.length >= 12, exported.join(', '));
    for (const m of exported) assert.ok(used.has(m), `the dashboard shows ${m}`);
    const choices = dash.templating.list.find((v) => v.name === 'marketplace')?.query?.split(',');
    assert.deepEqual(choices, [...MARKETPLACES]);
  });

  it("the promtool tests' input series have the labels of the real series", () => {
    const series = alertTestSeries().filter((s) => s.startsWith('remit_'));
    assert.ok(series.length > 10);
    for (const s of series) {
      const [sel] = selectors(s.includes('{') ? s : `${s}{}`);
      const metric = sel!.metric;
      assert.ok(scraped.families.has(metric), `alerts.test.yml feeds ${metric}, which GET /metrics does not export`);
      const given = sel!.matchers.map((m) => m.label).filter((l) => !TARGET_LABELS.has(l)).sort();
      const real = scraped.families.get(metric)!.series.map((x) => Object.keys(x).sort().join(','));
      assert.ok(real.includes(given.join(',')), `alerts.test.yml: ${s} has labels {${given.join(',')}}, the real series have ${[...new Set(real)].map((r) => `{${r}}`).join(' or ')}`);
    }
  });
});
