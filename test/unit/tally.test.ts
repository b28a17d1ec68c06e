import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { loadCatalog } from '../../config/catalog';
import { validateTallyBatch, type TallyBatchOptions, type TallyError } from '../../domain/tally';
import { Decimal } from '../../domain/decimal';

const catalog = loadCatalog(undefined, {});
const HOUR = 3_600_000;
const NOW = Date.parse('2026-03-15T10:42:17Z');
const opts: TallyBatchOptions = { catalog, hourMs: HOUR, nowMs: NOW };

function tally(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    orgId: 'org-1',
    productTag: 'rosa',
    metric: 'Cores',
    sla: 'Premium',
    usage: 'Production',
    billingProvider: 'aws',
    billingAccountId: '111122223333',
    hour: '2026-03-15T09:00:00Z',
    value: 4,
    ...over,
  };
}

function errorsOf(body: unknown, o: Partial<TallyBatchOptions> = {}): TallyError[] {
  const r = validateTallyBatch(body, { ...opts, ...o });
  assert.ok(!r.ok, 'expected the batch to be rejected');
  return r.errors;
}

void test('a valid batch is normalized: canonical metric, hour in ms, exact decimal value', () => {
  const r = validateTallyBatch({ tallies: [tally({ metric: 'cores', value: 1e-7 }), tally({ metric: 'instance_hours', hour: '2026-03-15T10:00:00.000Z', value: 1.5e21 })] }, opts);
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.replaced, 0);
  assert.deepEqual(r.tallies, [
    { key: { billingProvider: 'aws', billingAccountId: '111122223333', orgId: 'org-1', productTag: 'rosa', metric: 'Cores', sla: 'Premium', usage: 'Production' }, hourMs: Date.parse('2026-03-15T09:00:00Z'), value: '0.0000001' },
    { key: { billingProvider: 'aws', billingAccountId: '111122223333', orgId: 'org-1', productTag: 'rosa', metric: 'Instance-hours', sla: 'Premium', usage: 'Production' }, hourMs: Date.parse('2026-03-15T10:00:00Z'), value: '1500000000000000000000' },
  ]);
});

void test('values: zero, -0, fractions and huge finite numbers are accepted exactly', () => {
  const values = [0, -0, 0.1, 1064.104, 5e-324, Number.MAX_VALUE, 2 ** 53 + 2];
  const r = validateTallyBatch({ tallies: values.map((value, i) => tally({ value, hour: new Date(Date.parse('2026-03-01T00:00:00Z') + i * HOUR).toISOString() })) }, opts);
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(
    r.tallies.map((t) => t.value),
    values.map((v) => Decimal.fromNumber(v).toString()),
  );
  assert.equal(r.tallies[1]?.value, '0');
  assert.ok(!r.tallies.some((t) => /e/i.test(t.value)));
});

void test('an empty batch is valid and accepts nothing', () => {
  const r = validateTallyBatch({ tallies: [] }, opts);
  assert.deepEqual(r, { ok: true, tallies: [], replaced: 0 });
});

void test('the body itself must be {tallies: [...]}', () => {
  for (const body of [null, undefined, 'x', 5, [tally()]]) {
    const e = errorsOf(body);
    assert.deepEqual(e.map((x) => [x.index, x.field]), [[-1, '']], JSON.stringify(body));
  }
  for (const body of [{}, { tallies: null }, { tallies: 'all' }, { tallies: { 0: tally() } }, { tally: [tally()] }]) {
    const e = errorsOf(body);
    assert.deepEqual(e.map((x) => [x.index, x.field]), [[-1, 'tallies']], JSON.stringify(body));
  }
  const big = errorsOf({ tallies: [tally(), tally()] }, { maxTallies: 1 });
  assert.match(big[0]?.message ?? '', /at most 1 tallies/);
});

void test('each bad field is reported with index, field and a clear message', () => {
  const cases: Array<[Record<string, unknown> | unknown, string, RegExp]> = [
    [5, '', /must be an object/],
    [null, '', /must be an object/],
    [tally({ orgId: undefined }), 'orgId', /is required/],
    [tally({ orgId: 42 }), 'orgId', /must be a string, got number 42/],
    [tally({ orgId: '' }), 'orgId', /must not be empty/],
    [tally({ sla: 'Premium ' }), 'sla', /whitespace/],
    [tally({ usage: 'x'.repeat(256) }), 'usage', /at most 255/],
    [tally({ billingAccountId: 'a\nb' }), 'billingAccountId', /control characters/],
    [tally({ billingProvider: 'gcp' }), 'billingProvider', /unknown marketplace the string "gcp" \(known: aws, azure\)/],
    [tally({ billingProvider: 'AWS' }), 'billingProvider', /unknown marketplace/],
    [tally({ billingProvider: undefined }), 'billingProvider', /is required/],
    [tally({ productTag: 'openshift' }), 'productTag', /unknown product "openshift" \(known: rosa, ansible-aap-managed, rhel-for-x86-els-payg-addon\)/],
    [tally({ metric: 'Sockets' }), 'metric', /unknown metric "Sockets" for rosa \(known: Cores, Instance-hours\)/],
    [tally({ metric: 'Managed-nodes' }), 'metric', /unknown metric/],
    [tally({ hour: undefined }), 'hour', /is required/],
    [tally({ hour: 1773565200000 }), 'hour', /ISO-8601 string, got number/],
    [tally({ hour: 'yesterday' }), 'hour', /ISO-8601 instant/],
    [tally({ hour: '2026-03-15T09:30:00Z' }), 'hour', /on the hour/],
    [tally({ hour: '2026-03-15T09:00:00.001Z' }), 'hour', /on the hour/],
    [tally({ hour: '2026-03-15T09:00:00' }), 'hour', /offset/],
    [tally({ hour: '2026-03-15T10:00:00+01:00' }), 'hour', /UTC/],
    [tally({ hour: '2026-02-30T09:00:00Z' }), 'hour', /does not exist/],
    [tally({ hour: '2026-03-15' }), 'hour', /time and an offset/],
    [tally({ hour: '2026-03-15T11:00:00Z' }), 'hour', /in the future/],
    [tally({ value: undefined }), 'value', /is required/],
    [tally({ value: null }), 'value', /must be a JSON number, got null/],
    [tally({ value: '4' }), 'value', /must be a JSON number, got the string "4"/],
    [tally({ value: 'NaN' }), 'value', /finite number >= 0, got the string "NaN"/],
    [tally({ value: 'Infinity' }), 'value', /finite number/],
    [tally({ value: '-Infinity' }), 'value', /finite number/],
    [tally({ value: NaN }), 'value', /finite number >= 0, got NaN/],
    [tally({ value: Infinity }), 'value', /finite/],
    [tally({ value: -1 }), 'value', />= 0, got -1/],
    [tally({ value: -1e-300 }), 'value', />= 0/],
    [tally({ value: true }), 'value', /JSON number, got boolean/],
    [tally({ value: [4] }), 'value', /got an array/],
  ];
  for (const [item, field, re] of cases) {
    const e = errorsOf({ tallies: [tally(), item] });
    assert.ok(e.some((x) => x.index === 1 && x.field === field && re.test(x.message)), `${field} ${re}: ${JSON.stringify(e)}`);
    assert.ok(e.every((x) => x.index === 1), 'the valid item has no error');
  }
});

void test('the current hour is accepted, the next one is not; hours scale with hourMs', () => {
  const ok = validateTallyBatch({ tallies: [tally({ hour: '2026-03-15T10:00:00Z' })] }, opts);
  assert.ok(ok.ok);
  // REMIT_HOUR_SECONDS=5: 5-second slots.
  const fast = { hourMs: 5000, nowMs: Date.parse('2026-03-15T10:00:12Z') };
  assert.ok(validateTallyBatch({ tallies: [tally({ hour: '2026-03-15T10:00:05Z' }), tally({ hour: '2026-03-15T10:00:10Z' })] }, { ...opts, ...fast }).ok);
  assert.ok(errorsOf({ tallies: [tally({ hour: '2026-03-15T10:00:15Z' })] }, fast).some((e) => /future/.test(e.message)));
  assert.ok(errorsOf({ tallies: [tally({ hour: '2026-03-15T10:00:07Z' })] }, fast).some((e) => /multiple of 5s/.test(e.message)));
  // Late tallies, even for last month, are fine.
  assert.ok(validateTallyBatch({ tallies: [tally({ hour: '2026-02-28T23:00:00Z' })] }, opts).ok);
});

void test('all-or-nothing: one bad item rejects the batch and every error is listed', () => {
  const e = errorsOf({ tallies: [tally(), tally({ value: -1 }), tally(), tally({ metric: 'x', hour: 'y' })] });
  assert.deepEqual(
    e.map((x) => [x.index, x.field]),
    [[1, 'value'], [3, 'metric'], [3, 'hour']],
  );
  // Unknown product is reported even next to other problems of the item.
  const e2 = errorsOf({ tallies: [tally({ productTag: 'nope', sla: '' })] });
  assert.deepEqual(e2.map((x) => x.field).sort(), ['productTag', 'sla']);
});

void test('errors beyond maxErrors are counted, not listed', () => {
  const r = validateTallyBatch({ tallies: Array.from({ length: 50 }, () => tally({ value: -1 })) }, { ...opts, maxErrors: 10 });
  assert.ok(!r.ok);
  assert.equal(r.errors.length, 10);
  assert.equal(r.omittedErrors, 40);
});

void test('duplicates of a key and hour in one batch: the last one wins (a correction)', () => {
  const r = validateTallyBatch(
    {
      tallies: [
        tally({ value: 1 }),
        tally({ value: 2, hour: '2026-03-15T08:00:00Z' }),
        tally({ value: 3, metric: 'CORES' }), // same key: metric ids are canonicalized first
        tally({ value: 9, sla: 'Standard' }), // another key
        tally({ value: 5, hour: '2026-03-15T09:00:00.000Z' }), // same instant, other spelling
      ],
    },
    opts,
  );
  assert.ok(r.ok);
  assert.equal(r.replaced, 2);
  assert.deepEqual(
    r.tallies.map((t) => [t.key.sla, new Date(t.hourMs).toISOString(), t.value]),
    [
      ['Premium', '2026-03-15T09:00:00.000Z', '5'],
      ['Premium', '2026-03-15T08:00:00.000Z', '2'],
      ['Standard', '2026-03-15T09:00:00.000Z', '9'],
    ],
  );
});

void test('property: the batch means the same as its items applied one by one in order', () => {
  const hours = ['2026-03-15T07:00:00Z', '2026-03-15T08:00:00Z', '2026-03-15T09:00:00Z'];
  const item = fc.record({
    hour: fc.constantFrom(...hours),
    metric: fc.constantFrom('Cores', 'cores', 'Instance-hours', 'instance_hours'),
    sla: fc.constantFrom('Premium', 'Standard'),
    value: fc.double({ min: 0, max: 1e6, noNaN: true }),
  });
  fc.assert(
    fc.property(fc.array(item, { maxLength: 40 }), (items) => {
      const r = validateTallyBatch({ tallies: items.map((i) => tally(i)) }, opts);
      assert.ok(r.ok);
      const model = new Map<string, string>();
      for (const i of items) model.set(`${i.metric.toLowerCase().replace('_', '-')}|${i.sla}|${Date.parse(i.hour)}`, Decimal.fromNumber(i.value).toString());
      assert.equal(r.tallies.length, model.size);
      assert.equal(r.replaced, items.length - model.size);
      for (const t of r.tallies) assert.equal(model.get(`${t.key.metric.toLowerCase()}|${t.key.sla}|${t.hourMs}`), t.value);
    }),
  );
});

// Speed is measured by `npm run bench` (the ingest benchmark), never asserted here.
void test('a batch of 10,000 tallies validates whole: every tally kept, canonical metric ids', () => {
  const tallies = Array.from({ length: 10_000 }, (_, i) =>
    tally({ orgId: `org-${i}`, metric: i % 2 ? 'Cores' : 'instance_hours', hour: new Date(Date.parse('2026-03-14T00:00:00Z') + (i % 24) * HOUR).toISOString().replace('.000', ''), value: (i % 97) / 7 }),
  );
  const r = validateTallyBatch({ tallies }, opts);
  assert.ok(r.ok);
  assert.equal(r.tallies.length, 10_000);
  assert.deepEqual([...new Set(r.tallies.map((t) => t.key.metric))].sort(), ['Cores', 'Instance-hours']);
});

void test('late usage of any earlier month is accepted up to REMIT_MAX_USAGE_AGE_DAYS, whatever the day of the month (issue 9, 1)', () => {
  const item = (hour: string) => tally({ hour });
  // The example: on 2026-12-01 a tally of 2026-10-27 (35 days old, two months back) was
  // refused while on 2026-12-20 a tally of 2026-11-15 (35 days old) was accepted.
  for (const [now, hour] of [['2026-12-01T00:30:00Z', '2026-10-27T05:00:00Z'], ['2026-12-20T00:30:00Z', '2026-11-15T05:00:00Z']]) {
    const r = validateTallyBatch({ tallies: [item(hour!)] }, { ...opts, nowMs: Date.parse(now!) });
    assert.ok(r.ok, `${hour} on ${now}: ${JSON.stringify(r)}`);
  }
  // The default keeps a month's usage until the end of the second month after it, on the
  // longest three months too: July's first hour on September 30th, 23:59.
  const julyOnSep30 = validateTallyBatch({ tallies: [item('2026-07-01T00:00:00Z')] }, { ...opts, nowMs: Date.parse('2026-09-30T23:59:00Z') });
  assert.ok(julyOnSep30.ok, JSON.stringify(julyOnSep30));
});

void test('usage older than the maximum age: refused naming the limit, counted, nothing accepted (issue 9, 1)', () => {
  const nowMs = Date.parse('2026-12-01T00:30:00Z');
  const old = tally({ hour: '2026-08-30T23:00:00Z' }); // 92 days and 1.5 hours before now
  const r = validateTallyBatch({ tallies: [tally({ hour: '2026-12-01T00:00:00Z' }), old, old] }, { ...opts, nowMs });
  assert.ok(!r.ok);
  assert.deepEqual(r.errors.map((e) => [e.index, e.field, e.code]), [[1, 'hour', 'too_old'], [2, 'hour', 'too_old']]);
  assert.match(r.errors[0]!.message, /92 days.*REMIT_MAX_USAGE_AGE_DAYS/);
  assert.deepEqual(r.refused, { too_old: 2 });
  // The limit is configurable, and the same on every day of the month.
  const tight = validateTallyBatch({ tallies: [tally({ hour: '2026-11-20T00:00:00Z' })] }, { ...opts, nowMs, maxUsageAgeDays: 10 });
  assert.ok(!tight.ok);
  assert.match(tight.errors[0]!.message, /older than 10 days/);
  assert.ok(validateTallyBatch({ tallies: [tally({ hour: '2026-11-22T00:00:00Z' })] }, { ...opts, nowMs, maxUsageAgeDays: 10 }).ok);
});

void test('roll-up rows (sla, usage or billing account _ANY) are refused: they would bill the same usage twice (issue 9, 4)', () => {
  for (const [field, value] of [['sla', '_ANY'], ['usage', '_ANY'], ['billingAccountId', '_ANY'], ['usage', '_any']] as const) {
    const r = validateTallyBatch({ tallies: [tally(), tally({ [field]: value })] }, opts);
    assert.ok(!r.ok, `${field} ${value} must be refused`);
    assert.deepEqual(r.errors.map((e) => [e.index, e.field, e.code]), [[1, field, 'rollup']]);
    assert.match(r.errors[0]!.message, /roll-up row.*twice/);
    assert.deepEqual(r.refused, { rollup: 1 });
  }
  // A value that merely contains it is a specific row.
  assert.ok(validateTallyBatch({ tallies: [tally({ sla: 'Premium_ANY' })] }, opts).ok);
});
