// Reading the ops configuration's PromQL and a Prometheus text exposition, enough to check that
// the alert rules and the dashboard query what the product exports (test/unit/ops-config.test.ts,
// test/integration/metrics-exposition.test.ts). promtool evaluates the rules themselves
// (test/unit/alert-rules.test.ts).

import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const readRepoFile = (p: string) => fs.readFileSync(path.join(REPO_ROOT, p), 'utf8');

const STRINGS = /"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g;

/**
 * Metric names used in a PromQL expression: identifiers that are not functions, keywords, label
 * names (inside {...}, by/without/on/ignoring lists) or strings.
 */
export function metricNames(expr: string): string[] {
  let e = expr.replace(STRINGS, '""');
  e = e.replace(/\{[^}]*\}/g, '');
  e = e.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  e = e.replace(/\[[^\]]*\]/g, '');
  const keywords = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);
  const names = new Set<string>();
  for (const m of e.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g)) {
    const [, name, call] = m;
    if (call || keywords.has(name!.toLowerCase())) continue;
    if (/^\d/.test(name!)) continue;
    // A duration unit right after a number (5m, 2h) is not a name: the number was consumed before.
    if (/\d$/.test(e.slice(0, m.index))) continue;
    names.add(name!);
  }
  return [...names];
}

export interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

/** Each `name{...}` selector of an expression with its label matchers. */
export function selectors(expr: string): Array<{ metric: string; matchers: Matcher[] }> {
  const out: Array<{ metric: string; matchers: Matcher[] }> = [];
  for (const m of expr.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}/g)) {
    const matchers = [...m[2]!.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)].map((x) => ({ label: x[1]!, op: x[2] as Matcher['op'], value: JSON.parse(`"${x[3]!}"`) as string }));
    out.push({ metric: m[1]!, matchers });
  }
  return out;
}

/** Labels named in by / without / on / ignoring / group_left / group_right lists. */
export function groupingLabels(expr: string): string[] {
  const e = expr.replace(STRINGS, '""');
  return [...e.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)].flatMap((m) => m[1]!.split(',').map((l) => l.trim()).filter(Boolean));
}

/** The literal values a matcher asks for: `a`, or each of `a|b|c`; none for a real regex (`5..`) or a dashboard variable. */
export function literalValues(m: Matcher): string[] {
  if (m.op === '=') return m.value.includes('$') ? [] : [m.value];
  if (m.op !== '=~') return [];
  const alternatives = m.value.split('|');
  return alternatives.every((a) => /^[A-Za-z0-9_/-]+$/.test(a)) ? alternatives : [];
}

/** Documented metrics of the Temporal Core SDK, without the histogram suffixes: https://docs.temporal.io/references/sdk-metrics */
export const TEMPORAL_SDK_METRICS = new Set(
  [
    'activity_execution_cancelled', 'activity_execution_failed', 'activity_execution_latency', 'activity_poll_no_task',
    'activity_schedule_to_start_latency', 'activity_succeed_endtoend_latency', 'activity_task_received',
    'local_activity_execution_cancelled', 'local_activity_execution_failed', 'local_activity_execution_latency',
    'local_activity_succeeded_endtoend_latency', 'local_activity_total',
    'long_request', 'long_request_failure', 'long_request_latency', 'request', 'request_failure', 'request_latency',
    'num_pollers', 'sticky_cache_hit', 'sticky_cache_miss', 'sticky_cache_size', 'sticky_cache_total_forced_eviction',
    'worker_start', 'worker_task_slots_available', 'worker_task_slots_used',
    'workflow_cancelled', 'workflow_completed', 'workflow_continue_as_new', 'workflow_endtoend_latency', 'workflow_failed',
    'workflow_task_execution_failed', 'workflow_task_execution_latency', 'workflow_task_queue_poll_empty',
    'workflow_task_queue_poll_succeed', 'workflow_task_replay_latency', 'workflow_task_schedule_to_start_latency',
  ].map((m) => `temporal_${m}`),
);

export const isTemporalSdkMetric = (name: string) => TEMPORAL_SDK_METRICS.has(name) || TEMPORAL_SDK_METRICS.has(name.replace(/_(bucket|sum|count)$/, ''));

// ---------------------------------------------------------------------------------------------
// The ops files

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string };
  annotations: { summary: string; description: string; runbook_url: string };
}

export function loadAlertGroups(): Array<{ name: string; rules: AlertRule[] }> {
  return (parse(readRepoFile('ops/prometheus/alerts.yml')) as { groups: Array<{ name: string; rules: AlertRule[] }> }).groups;
}

export interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: Array<{ expr: string; refId: string }>;
}

export interface Dashboard {
  title: string;
  uid: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: string }> };
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readRepoFile('ops/grafana/remit-dashboard.json')) as Dashboard;
}

/** Every PromQL expression of the rules and the dashboard, with where it comes from. */
export function opsExpressions(): Array<{ where: string; expr: string }> {
  const rules = loadAlertGroups().flatMap((g) => g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })));
  const panels = loadDashboard().panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr })));
  return [...rules, ...panels];
}

/** The `series:` of the promtool rule tests (ops/prometheus/alerts.test.yml). */
export function alertTestSeries(): string[] {
  const doc = parse(readRepoFile('ops/prometheus/alerts.test.yml')) as { tests: Array<{ input_series?: Array<{ series: string }> }> };
  return doc.tests.flatMap((t) => (t.input_series ?? []).map((s) => s.series));
}

// ---------------------------------------------------------------------------------------------
// The text exposition

export interface Exposition {
  /** Metric family name -> its TYPE and every series' labels. */
  families: Map<string, { type: string; series: Array<Record<string, string>> }>;
}

/** Parses Prometheus' text format 0.0.4 (what GET /metrics answers). */
export function parseExposition(text: string): Exposition {
  const families = new Map<string, { type: string; series: Array<Record<string, string>> }>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) families.set(type[1]!, { type: type[2]!, series: [] });
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = JSON.parse(`"${l[2]!}"`) as string;
    const family = families.get(m[1]!) ?? families.get(m[1]!.replace(/_(bucket|sum|count)$/, ''));
    if (!family) throw new Error(`series ${m[1]} before its TYPE line`);
    if (!Number.isFinite(Number(m[3])) && !['NaN', '+Inf', '-Inf'].includes(m[3]!)) throw new Error(`bad value in ${line}`);
    family.series.push(labels);
  }
  return { families };
}
