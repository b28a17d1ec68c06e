// The operations configuration stays true to the product: the Prometheus alert rules parse and
// have what an on-call person needs (summary, description, runbook link, severity), every metric
// that the alerts and the Grafana dashboard use is one remit exports (lib/metrics.ts) or a
// documented Temporal SDK metric, and every runbook link lands on a heading of docs/operations.md.
// No YAML dependency: alerts.yml is written in a small YAML subset parsed here (block maps and
// lists, plain and quoted scalars, `|` and `>` block scalars), and anything outside it fails.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ERROR_CODES } from '../../marketplaces/types';
import { REMITTANCE_STATUSES } from '../../domain/lifecycle';

const root = path.resolve(__dirname, '..', '..');
const read = (p: string) => fs.readFileSync(path.join(root, p), 'utf8');

// ---------------------------------------------------------------------------------------------
// A YAML subset parser

type Yaml = string | Yaml[] | { [k: string]: Yaml };

interface Line {
  indent: number;
  text: string;
  no: number;
}

export function parseYamlSubset(source: string): Yaml {
  const raw = source.split('\n');
  const lines: Line[] = [];
  raw.forEach((l, i) => {
    if (/\t/.test(l.match(/^\s*/)![0])) throw new Error(`line ${i + 1}: tab in indentation`);
    const trimmed = l.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    lines.push({ indent: l.length - l.trimStart().length, text: l.trimStart().replace(/\s+$/, ''), no: i + 1 });
  });
  let pos = 0;

  function scalar(s: string, no: number): string {
    s = s.replace(/\s+#.*$/, '');
    if (s.startsWith("'")) {
      if (!/^'(?:[^']|'')*'$/.test(s)) throw new Error(`line ${no}: bad single-quoted scalar ${s}`);
      return s.slice(1, -1).replace(/''/g, "'");
    }
    if (s.startsWith('"')) return JSON.parse(s) as string;
    if (/^[[{&*!%@`|>]/.test(s)) throw new Error(`line ${no}: unsupported YAML (flow collection, anchor, tag or misplaced block scalar): ${s}`);
    if (/: /.test(s)) throw new Error(`line ${no}: ": " inside a plain scalar; quote it: ${s}`);
    return s;
  }

  /** The lines of a block scalar started at `pos`, more indented than `parent`. */
  function blockScalar(style: string, parent: number): string {
    const body: string[] = [];
    const first = lines[pos];
    const rawLines = first ? raw.slice(first.no - 1) : [];
    if (!first || first.indent <= parent) return '';
    const indent = first.indent;
    let consumed = 0;
    for (const l of rawLines) {
      if (l.trim() !== '' && l.length - l.trimStart().length < indent) break;
      body.push(l.slice(indent));
      consumed += 1;
    }
    const endNo = first.no + consumed - 1;
    while (pos < lines.length && lines[pos]!.no <= endNo) pos += 1;
    while (body.length && body[body.length - 1]!.trim() === '') body.pop();
    const keep = !style.endsWith('-');
    const text = style.startsWith('|') ? body.join('\n') : body.map((x) => x.trim()).join(' ').replace(/\s+/g, ' ').trim();
    return keep ? `${text}\n` : text;
  }

  function value(rest: string, parentIndent: number, no: number): Yaml {
    if (rest === '') {
      const next = lines[pos];
      if (!next || next.indent <= parentIndent) {
        if (next && next.indent === parentIndent && next.text.startsWith('- ')) return node(parentIndent);
        return '';
      }
      return node(next.indent);
    }
    if (/^[|>][-+]?$/.test(rest)) return blockScalar(rest, parentIndent);
    return scalar(rest, no);
  }

  function node(indent: number): Yaml {
    const first = lines[pos]!;
    if (first.text.startsWith('- ') || first.text === '-') {
      const out: Yaml[] = [];
      while (pos < lines.length && lines[pos]!.indent === indent && (lines[pos]!.text.startsWith('- ') || lines[pos]!.text === '-')) {
        const l = lines[pos]!;
        const rest = l.text.slice(2);
        if (/^[A-Za-z_][\w-]*:( |$)/.test(rest)) {
          // A map as a list item: its first key sits on the dash line.
          lines[pos] = { indent: indent + 2, text: rest, no: l.no };
          out.push(node(indent + 2));
        } else {
          pos += 1;
          out.push(value(rest, indent, l.no));
        }
      }
      return out;
    }
    const out: { [k: string]: Yaml } = {};
    while (pos < lines.length && lines[pos]!.indent === indent) {
      const l = lines[pos]!;
      const m = /^([A-Za-z_][\w-]*):(?: (.*))?$/.exec(l.text);
      if (!m) throw new Error(`line ${l.no}: expected "key: value", got ${l.text}`);
      if (m[1]! in out) throw new Error(`line ${l.no}: duplicate key ${m[1]}`);
      pos += 1;
      out[m[1]!] = value((m[2] ?? '').trim(), indent, l.no);
    }
    if (pos < lines.length && lines[pos]!.indent > indent) throw new Error(`line ${lines[pos]!.no}: unexpected indentation`);
    return out;
  }

  if (lines.length === 0) return {};
  const doc = node(lines[0]!.indent);
  if (pos !== lines.length) throw new Error(`line ${lines[pos]!.no}: unexpected content at indentation ${lines[pos]!.indent}`);
  return doc;
}

// ---------------------------------------------------------------------------------------------
// Metric names

/**
 * Metric names used in a PromQL expression: identifiers that are not functions, keywords, label
 * names (inside {...}, by/without/on/ignoring lists) or strings.
 */
export function metricNames(expr: string): string[] {
  let e = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""');
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
    const before = e.slice(0, m.index);
    if (/\d$/.test(before)) continue;
    names.add(name!);
  }
  return [...names];
}

/** What remit exports: the metrics lib/metrics.ts documents and some code actually records. */
function productMetrics(): Set<string> {
  const src = read('lib/metrics.ts');
  const documented = [...src.matchAll(/^\s*(remit_[a-z0-9_]+):\s*\[/gm)].map((m) => m[1]!);
  assert.ok(documented.length >= 6, 'lib/metrics.ts documents the product metrics');
  const code = ['lib/metrics.ts', 'api/app.ts', ...fs.readdirSync(path.join(root, 'activities')).map((f) => `activities/${f}`)].map(read).join('\n');
  return new Set(documented.filter((name) => new RegExp(`(?:set|inc)\\(\\s*'${name}'`).test(code)));
}

/**
 * Documented metrics of the Temporal Core SDK (TypeScript, Python, .NET), without the histogram
 * suffixes: https://docs.temporal.io/references/sdk-metrics
 */
const TEMPORAL_SDK_METRICS = new Set(
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

function isKnownMetric(name: string, product: Set<string>): boolean {
  if (product.has(name)) return true;
  return TEMPORAL_SDK_METRICS.has(name) || TEMPORAL_SDK_METRICS.has(name.replace(/_(bucket|sum|count)$/, ''));
}

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

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string };
  annotations: { summary: string; description: string; runbook_url: string };
}

function loadRules(): Rule[] {
  const doc = parseYamlSubset(read('ops/prometheus/alerts.yml')) as unknown as { groups: Array<{ name: string; rules: Rule[] }> };
  assert.ok(Array.isArray(doc.groups) && doc.groups.length > 0, 'alerts.yml has groups');
  return doc.groups.flatMap((g) => {
    assert.ok(typeof g.name === 'string' && g.name.length > 0, 'every group has a name');
    assert.ok(Array.isArray(g.rules) && g.rules.length > 0, `group ${g.name} has rules`);
    return g.rules;
  });
}

interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: Array<{ expr: string; refId: string }>;
}

function loadDashboard(): { title: string; uid: string; panels: Panel[]; templating: { list: Array<{ name: string }> } } {
  return JSON.parse(read('ops/grafana/remit-dashboard.json'));
}

describe('the YAML subset parser', () => {
  it('reads maps, lists of maps, quoted and block scalars', () => {
    const doc = parseYamlSubset(`# c\na:\n  - name: x\n    v: 'it''s {{ $v }}'\n    w: "q\\""\n    t: |\n      one\n        two\n    f: >-\n      folded\n      text\n  - name: y\nb: plain # comment\n`);
    assert.deepEqual(doc, { a: [{ name: 'x', v: "it's {{ $v }}", w: 'q"', t: 'one\n  two\n', f: 'folded text' }, { name: 'y' }], b: 'plain' });
  });
  it('refuses what it does not understand instead of guessing', () => {
    assert.throws(() => parseYamlSubset('a: {b: 1}\n'), /unsupported/);
    assert.throws(() => parseYamlSubset('a: x: y\n'), /quote it/);
    assert.throws(() => parseYamlSubset('a: 1\na: 2\n'), /duplicate/);
    assert.throws(() => parseYamlSubset('a: 1\n   b: 2\n'), /indentation/);
  });
  it('finds metric names in PromQL, not functions, labels or keywords', () => {
    assert.deepEqual(
      metricNames('sum by (le, task_queue) (rate(temporal_x_bucket{a="b",c=~"d|e"}[5m])) / on() group_left sum(remit_y offset 1h) > 2 * 3600 and absent(remit_z)').sort(),
      ['remit_y', 'remit_z', 'temporal_x_bucket'],
    );
  });
});

describe('ops/prometheus/alerts.yml', () => {
  const rules = loadRules();
  const product = productMetrics();

  it('every rule has an alert name, an expression, a severity, a summary, a description and a runbook link', () => {
    const names = new Set<string>();
    for (const r of rules) {
      assert.match(r.alert, /^Remit[A-Za-z]+$/, `alert name ${r.alert}`);
      assert.ok(!names.has(r.alert), `alert ${r.alert} is defined once`);
      names.add(r.alert);
      assert.ok(typeof r.expr === 'string' && r.expr.trim().length > 0, `${r.alert} has an expr`);
      assert.ok(['critical', 'warning'].includes(r.labels?.severity), `${r.alert} severity is critical or warning`);
      assert.ok(r.annotations?.summary?.length > 5, `${r.alert} has a summary`);
      assert.ok(r.annotations?.description?.length > 20, `${r.alert} has a description`);
      assert.match(r.annotations?.runbook_url ?? '', /^docs\/operations\.md#[a-z0-9_-]+$/, `${r.alert} links the runbook`);
      if (r.for !== undefined) assert.match(r.for, /^\d+[smhd]$/, `${r.alert} for: is a duration`);
      // Balanced brackets: a cheap first guard; promtool itself checks and evaluates every rule in test/unit/alert-rules.test.ts.
      for (const [o, c] of ['()', '{}', '[]']) assert.equal(r.expr.split(o!).length, r.expr.split(c!).length, `${r.alert}: balanced ${o}${c}`);
    }
    assert.ok(rules.length >= 10, `a useful set of alerts (${rules.length})`);
  });

  it('uses only metrics that remit exports or documented Temporal SDK metrics', () => {
    const used = new Set<string>();
    for (const r of rules) {
      const names = metricNames(r.expr);
      assert.ok(names.length > 0, `${r.alert} uses a metric`);
      for (const n of names) {
        used.add(n);
        assert.ok(isKnownMetric(n, product), `${r.alert} uses ${n}, which neither lib/metrics.ts records nor the Temporal SDK documents`);
      }
    }
    // The alerts cover the product's own signals, not only Temporal's.
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
  const product = productMetrics();

  it('is a dashboard with unique panel ids and a Prometheus data source variable', () => {
    assert.ok(dash.title && dash.uid, 'title and uid');
    assert.ok(dash.templating.list.some((v) => v.name === 'datasource'), 'a datasource variable');
    const ids = dash.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'unique panel ids');
  });

  it('queries only metrics that remit exports or documented Temporal SDK metrics', () => {
    const used = new Set<string>();
    for (const p of dash.panels.filter((x) => x.type !== 'row')) {
      assert.ok(p.targets && p.targets.length > 0, `panel ${p.title} has queries`);
      for (const t of p.targets) {
        for (const n of metricNames(t.expr)) {
          used.add(n);
          assert.ok(isKnownMetric(n, product), `panel "${p.title}" queries ${n}, which neither lib/metrics.ts records nor the Temporal SDK documents`);
        }
      }
    }
    for (const m of product) assert.ok(used.has(m), `the dashboard shows ${m}`);
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
