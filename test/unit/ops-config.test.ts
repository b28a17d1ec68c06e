// The operations configuration stays true to the product: the Prometheus alert rules parse and
// have what an on-call person needs (summary, description, runbook link, severity), and every
// runbook link lands on a heading of docs/operations.md. That every metric and label the alerts
// and the Grafana dashboard use is one GET /metrics really exports (or a documented Temporal SDK
// metric) is checked against a scrape: test/integration/metrics-exposition.test.ts.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { ERROR_CODES } from '../../marketplaces/types';
import { REMITTANCE_STATUSES } from '../../domain/lifecycle';
import { groupingLabels, loadAlertGroups, loadDashboard, metricNames, readRepoFile as read, selectors, type AlertRule } from '../helpers/promql';

// ---------------------------------------------------------------------------------------------
// Runbook anchors

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, duplicates numbered. */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^```/.test(line)) fenced = !fenced;
    const m = !fenced && /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = m[1]!
      .replace(/`/g, '')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

// ---------------------------------------------------------------------------------------------

function loadRules(): AlertRule[] {
  const groups = loadAlertGroups();
  assert.ok(Array.isArray(groups) && groups.length > 0, 'alerts.yml has groups');
  return groups.flatMap((g) => {
    assert.ok(typeof g.name === 'string' && g.name.length > 0, 'every group has a name');
    assert.ok(Array.isArray(g.rules) && g.rules.length > 0, `group ${g.name} has rules`);
    return g.rules;
  });
}

describe('reading the ops files', () => {
  it('YAML errors are refused, not guessed around (a duplicate key would silently drop a rule field)', () => {
    assert.throws(() => parse('a: 1\na: 2\n'), /unique/i);
    assert.throws(() => parse('a: [1\n'));
  });
  it('finds metric names, selectors and grouping labels in PromQL, not functions or keywords', () => {
    const expr = 'sum by (le, task_queue) (rate(temporal_x_bucket{a="b",c=~"d|e"}[5m])) / on() group_left sum(remit_y offset 1h) > 2 * 3600 and absent(remit_z{s!="x"})';
    assert.deepEqual(metricNames(expr).sort(), ['remit_y', 'remit_z', 'temporal_x_bucket']);
    assert.deepEqual(selectors(expr), [
      { metric: 'temporal_x_bucket', matchers: [{ label: 'a', op: '=', value: 'b' }, { label: 'c', op: '=~', value: 'd|e' }] },
      { metric: 'remit_z', matchers: [{ label: 's', op: '!=', value: 'x' }] },
    ]);
    assert.deepEqual(groupingLabels(expr), ['le', 'task_queue']);
  });
});

describe('ops/prometheus/alerts.yml', () => {
  const rules = loadRules();

  it('every rule has an alert name, an expression, a severity, a summary, a description and a runbook link', () => {
    const names = new Set<string>();
    for (const r of rules) {
      assert.match(r.alert, /^Remit[A-Za-z]+$/, `alert name ${r.alert}`);
      assert.ok(!names.has(r.alert), `alert ${r.alert} is defined once`);
      names.add(r.alert);
      assert.ok(typeof r.expr === 'string' && r.expr.trim().length > 0, `${r.alert} has an expr`);
      assert.ok(metricNames(r.expr).length > 0, `${r.alert} uses a metric`);
      assert.ok(['critical', 'warning'].includes(r.labels?.severity), `${r.alert} severity is critical or warning`);
      assert.ok(r.annotations?.summary?.length > 5, `${r.alert} has a summary`);
      assert.ok(r.annotations?.description?.length > 20, `${r.alert} has a description`);
      assert.match(r.annotations?.runbook_url ?? '', /^docs\/operations\.md#[a-z0-9_-]+$/, `${r.alert} links the runbook`);
      if (r.for !== undefined) assert.match(r.for, /^\d+[smhd]$/, `${r.alert} for: is a duration`);
    }
    assert.ok(rules.length >= 10, `a useful set of alerts (${rules.length})`);
  });

  it("the alerts cover the product's own signals and the Temporal workers", () => {
    const used = new Set(rules.flatMap((r) => metricNames(r.expr)));
    for (const m of ['remit_remittances', 'remit_owing_keys', 'remit_unremitted_oldest_age_seconds', 'remit_tallies_ingested_total', 'remit_api_requests_total']) {
      assert.ok(used.has(m), `some alert watches ${m}`);
    }
    assert.ok([...used].some((n) => n.startsWith('temporal_')), 'some alert watches the Temporal workers');
  });

  it('every runbook link lands on a heading of docs/operations.md, and each alert has its own section', () => {
    const anchors = headingAnchors(read('docs/operations.md'));
    for (const r of rules) {
      const anchor = r.annotations.runbook_url.split('#')[1]!;
      assert.ok(anchors.has(anchor), `${r.alert}: docs/operations.md has no heading for #${anchor}`);
      assert.equal(anchor, r.alert.toLowerCase(), `${r.alert} links its own section`);
    }
  });
});

describe('ops/grafana/remit-dashboard.json', () => {
  const dash = loadDashboard();

  it('is a dashboard with unique panel ids, queries in every panel and a Prometheus data source variable', () => {
    assert.ok(dash.title && dash.uid, 'title and uid');
    assert.ok(dash.templating.list.some((v) => v.name === 'datasource'), 'a datasource variable');
    const ids = dash.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'unique panel ids');
    for (const p of dash.panels.filter((x) => x.type !== 'row')) assert.ok(p.targets && p.targets.length > 0, `panel ${p.title} has queries`);
    const used = new Set(dash.panels.flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(t.expr))));
    for (const m of ['temporal_activity_execution_failed', 'temporal_workflow_task_schedule_to_start_latency_bucket']) assert.ok(used.has(m), `the dashboard shows ${m}`);
  });
});

describe('docs/operations.md', () => {
  it('its own links to sections land on headings', () => {
    const md = read('docs/operations.md');
    const anchors = headingAnchors(md);
    for (const m of md.matchAll(/\]\(#([^)]+)\)/g)) assert.ok(anchors.has(m[1]!), `link #${m[1]} has no heading`);
  });

  it('documents every error code and status the product uses', () => {
    const md = read('docs/operations.md');
    // Codes kept from the original system for compatibility but never produced are exempt.
    const unused = new Set(['inactive', 'redundant']);
    for (const c of ERROR_CODES.filter((x) => !unused.has(x))) assert.ok(md.includes(c), `docs/operations.md explains ${c}`);
    for (const s of REMITTANCE_STATUSES) assert.ok(md.includes(`\`${s}\``), `docs/operations.md explains status ${s}`);
  });
});
