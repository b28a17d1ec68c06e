// The PromQL answer -> tally mapping of the Prometheus usage source, the query file and the small
// helpers around them. Pure: no server (the source against the emulator is in
// test/integration/usage-pull.test.ts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lookupMetric } from '../../domain/catalog';
import { loadCatalog } from '../../config/catalog';
import { validateTallyBatch } from '../../domain/tally';
import {
  describeErrorAnswer,
  evaluationTime,
  expandQuery,
  loadUsageQueries,
  mapQueryResult,
  parseUsageQueries,
  promDuration,
  UsageQueriesError,
  type UsageQuery,
} from '../../usage/prometheus';
import type { HourRead } from '../../usage/source';

const HOUR = 3_600_000;
const H = Date.parse('2026-03-15T09:00:00Z');

const q: UsageQuery = {
  productTag: 'rosa',
  metric: 'Cores',
  query: 'sum by (external_organization) (max_over_time(cores[$hour]))',
  labels: { orgId: 'external_organization', sla: 'support', usage: 'usage', billingProvider: 'billing_marketplace', billingAccountId: 'billing_marketplace_account' },
  defaults: { usage: 'Production' },
};

function series(labels: Record<string, string>, value: string) {
  return { metric: labels, value: [(H + HOUR) / 1000, value] };
}

const labels = { external_organization: 'org-1', support: 'Premium', usage: 'Production', billing_marketplace: 'aws', billing_marketplace_account: '111122223333' };

/** The rejected series of an answer, which must leave out every tally. */
function problemsOf(read: HourRead): string[] {
  assert.ok(read.rejected.length > 0, 'expected rejected series');
  assert.deepEqual(read.tallies, [], 'a bad series gives no tally');
  return read.rejected;
}

const tallies = (read: HourRead) => {
  assert.deepEqual(read.rejected, []);
  return read.tallies;
};

test('a vector maps to one tally per series, in the API body shape, at the hour start', () => {
  const out = tallies(mapQueryResult({ resultType: 'vector', result: [series(labels, '16'), series({ ...labels, external_organization: 'org-2', billing_marketplace: 'azure' }, '0.5')] }, q, H));
  assert.deepEqual(out, [
    { orgId: 'org-1', productTag: 'rosa', metric: 'Cores', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: '111122223333', hour: '2026-03-15T09:00:00.000Z', value: 16 },
    { orgId: 'org-2', productTag: 'rosa', metric: 'Cores', sla: 'Premium', usage: 'Production', billingProvider: 'azure', billingAccountId: '111122223333', hour: '2026-03-15T09:00:00.000Z', value: 0.5 },
  ]);
  // ...which the API's own validation accepts as they are.
  const v = validateTallyBatch({ tallies: out }, { catalog: loadCatalog(undefined, {}), hourMs: HOUR, nowMs: H + HOUR + 60_000 });
  assert.ok(v.ok);
  assert.equal(v.tallies[0]!.hourMs, H);
});

test('an empty vector is an hour without usage, not an error', () => {
  assert.deepEqual(mapQueryResult({ resultType: 'vector', result: [] }, q, H), { tallies: [], rejected: [] });
});

test('series of the same key (several instances) are summed exactly; extra labels do not split keys', () => {
  const out = tallies(
    mapQueryResult(
      { resultType: 'vector', result: [series({ ...labels, _id: 'cluster-a' }, '0.1'), series({ ...labels, _id: 'cluster-b' }, '0.2'), series({ ...labels, _id: 'cluster-c' }, '1e-7')] },
      q,
      H,
    ),
  );
  assert.equal(out.length, 1);
  assert.equal(out[0]!.value, 0.3000001, 'exact decimal sum, not 0.30000010000000004');
});

test('a missing or empty label takes the default; without a default the series is bad data', () => {
  const { usage: _u, ...noUsage } = labels;
  assert.equal(tallies(mapQueryResult({ resultType: 'vector', result: [series({ ...noUsage }, '1')] }, q, H))[0]!.usage, 'Production');
  assert.equal(tallies(mapQueryResult({ resultType: 'vector', result: [series({ ...labels, usage: '' }, '1')] }, q, H))[0]!.usage, 'Production');
  const { billing_marketplace_account: _a, ...noAccount } = labels;
  const problems = problemsOf(mapQueryResult({ resultType: 'vector', result: [series(noAccount, '1')] }, q, H));
  assert.equal(problems.length, 1);
  assert.match(problems[0]!, /rosa Cores series \{.*external_organization="org-1".*\}: no billingAccountId \(label "billing_marketplace_account" is missing/);
});

test('values Prometheus can render that cannot be billed are bad data, every one named', () => {
  const bad = ['NaN', '+Inf', '-Inf', '-1', '-0.0001', 'abc', ''];
  const problems = problemsOf(mapQueryResult({ resultType: 'vector', result: bad.map((v, i) => series({ ...labels, external_organization: `org-${i}` }, v)) }, q, H));
  assert.equal(problems.length, bad.length, problems.join('\n'));
  assert.match(problems[0]!, /value "NaN" is not a finite number/);
  assert.match(problems[3]!, /value -1 is negative/);
  // One bad series does not spoil the others: the good one is kept, the bad one named.
  const mixed = mapQueryResult({ resultType: 'vector', result: [series(labels, '4'), series({ ...labels, external_organization: 'x' }, 'NaN')] }, q, H);
  assert.deepEqual(mixed.tallies.map((t) => [t.orgId, t.value]), [['org-1', 4]]);
  assert.equal(mixed.rejected.length, 1);
  assert.match(mixed.rejected[0]!, /external_organization="x".*value "NaN"/);
});

test('Go float spellings that are numbers are accepted', () => {
  for (const [text, value] of [['1e+21', 1e21], ['.5', 0.5], ['5.', 5], ['+3', 3], ['0', 0], ['-0', 0], ['2.5E-3', 0.0025]] as const) {
    assert.equal(tallies(mapQueryResult({ resultType: 'vector', result: [series(labels, text)] }, q, H))[0]!.value, value, text);
  }
});

test('answers of the wrong shape are bad data with a hint', () => {
  assert.match(problemsOf(mapQueryResult({ resultType: 'matrix', result: [] }, q, H))[0]!, /must return an instant vector, got "matrix"; aggregate it/);
  assert.match(problemsOf(mapQueryResult({ resultType: 'scalar', result: [1, '2'] }, q, H))[0]!, /instant vector/);
  assert.match(problemsOf(mapQueryResult(null, q, H))[0]!, /no result list/);
  assert.match(problemsOf(mapQueryResult({ resultType: 'vector', result: [{ metric: labels, histogram: [1, {}] }] }, q, H))[0]!, /native histogram/);
  assert.match(problemsOf(mapQueryResult({ resultType: 'vector', result: ['x'] }, q, H))[0]!, /without labels/);
});

test('$hour becomes one hour as a PromQL duration, scaled hours included', () => {
  assert.equal(promDuration(3_600_000), '1h');
  assert.equal(promDuration(7_200_000), '2h');
  assert.equal(promDuration(60_000), '1m');
  assert.equal(promDuration(5000), '5s');
  assert.equal(promDuration(1500), '1500ms');
  assert.equal(expandQuery('max_over_time(a[$hour]) + min_over_time(b[$hour]) + $hours_total', 3_600_000), 'max_over_time(a[1h]) + min_over_time(b[1h]) + $hours_total');
  assert.equal(expandQuery('x[$hour]', 5000), 'x[5s]');
});

test('an hour is evaluated at its end, in unix seconds', () => {
  assert.equal(evaluationTime({ hourMs: H, hourLengthMs: HOUR }), String((H + HOUR) / 1000));
  assert.equal(evaluationTime({ hourMs: 1500, hourLengthMs: 1500 }), '3');
  assert.equal(evaluationTime({ hourMs: 0, hourLengthMs: 1500 }), '1.500');
});

test('error answers are described from the Prometheus error body', () => {
  assert.equal(describeErrorAnswer(400, JSON.stringify({ status: 'error', errorType: 'bad_data', error: 'parse error at char 3' })), 'HTTP 400 bad_data: parse error at char 3');
  assert.equal(describeErrorAnswer(502, '<html>\n<body>Bad Gateway</body></html>'), 'HTTP 502: <html> <body>Bad Gateway</body></html>');
  assert.equal(describeErrorAnswer(503, ''), 'HTTP 503');
});

test('the committed query file is valid and covers only catalog metrics', () => {
  const catalog = loadCatalog(undefined, {});
  const queries = loadUsageQueries(undefined, {});
  assert.ok(queries.length >= 3);
  for (const uq of queries) {
    assert.ok(lookupMetric(catalog, uq.productTag, uq.metric), `${uq.productTag} ${uq.metric} is in the catalog`);
    assert.match(uq.query, /\[\$hour\]/, 'range selectors look back one (scaled) hour');
    assert.doesNotMatch(uq.query, /\[1h\]/, 'no hard-coded hour: it would be wrong under REMIT_HOUR_SECONDS');
  }
});

test('the query file is validated, every problem named', () => {
  assert.throws(() => parseUsageQueries([]), UsageQueriesError);
  try {
    parseUsageQueries({
      labels: { orgId: 'external_organization', color: 'x', sla: 'bad-label-name' },
      queries: [
        { productTag: 'rosa', metric: 'Cores', query: 'a' },
        { productTag: 'rosa', metric: 'cores', query: ['b', 'c'] },
        { productTag: '', metric: 'x', query: 3, extra: true },
      ],
    });
    assert.fail('expected an error');
  } catch (err) {
    assert.ok(err instanceof UsageQueriesError);
    const text = err.problems.join('\n');
    assert.match(text, /labels\.color: unknown key field/);
    assert.match(text, /labels\.sla: must be a Prometheus label name/);
    assert.match(text, /queries\[0\]: no label and no default for usage/);
    assert.match(text, /queries\[1\]: a second query for rosa cores/);
    assert.match(text, /queries\[2\]\.extra: unknown field/);
    assert.match(text, /queries\[2\]\.productTag: must be a non-empty string/);
    assert.match(text, /queries\[2\]\.query: must be a PromQL string/);
  }
  const ok = parseUsageQueries({ labels: q.labels, queries: [{ productTag: 'rosa', metric: 'Cores', query: ['line 1', 'line 2'], defaults: { sla: 'Standard' } }] });
  assert.equal(ok[0]!.query, 'line 1\nline 2');
  assert.equal(ok[0]!.defaults.sla, 'Standard');
});

test('a default of _ANY is refused: every series without the label would become a roll-up row (issue 9, 4)', () => {
  let problems: string[] = [];
  try {
    parseUsageQueries({ labels: q.labels, queries: [{ productTag: 'rosa', metric: 'Cores', query: 'x', defaults: { sla: '_ANY' } }] });
  } catch (err) {
    assert.ok(err instanceof UsageQueriesError);
    problems = err.problems;
  }
  assert.equal(problems.length, 1, JSON.stringify(problems));
  assert.match(problems[0]!, /queries\[0\]\.defaults\.sla: "_ANY" marks a roll-up row/);
});
