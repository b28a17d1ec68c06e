import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CatalogError, dimensionFor, lookupMetric, lookupProduct, normalizeMetricId, parseCatalog } from '../../domain/catalog';
import { DEFAULT_CATALOG_PATH, loadCatalog } from '../../config/catalog';

const committed = JSON.parse(readFileSync(DEFAULT_CATALOG_PATH, 'utf8')) as { products: Array<Record<string, unknown>> };

function tmpFile(content: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'remit-catalog-'));
  const file = join(dir, 'catalog.json');
  writeFileSync(file, content);
  return file;
}

function problemsOf(json: unknown): string[] {
  try {
    parseCatalog(json);
  } catch (err) {
    assert.ok(err instanceof CatalogError);
    return err.problems;
  }
  assert.fail('expected a CatalogError');
}

function product(metrics: unknown[], extra: Record<string, unknown> = {}) {
  return { products: [{ productTag: 'p', contractEnabled: true, metrics, ...extra }] };
}

const metric = (over: Record<string, unknown> = {}) => ({ metric: 'Cores', billingFactor: '1', dimensions: { aws: 'a', azure: 'b' }, gratis: false, ...over });

void test('the committed catalog holds every row of billing.md', () => {
  const c = loadCatalog(undefined, {});
  const rows: Array<[string, string, string, string | null, string | null, boolean, boolean]> = [
    ['rosa', 'Cores', '0.25', 'four_vcpu_hour', 'four_vcpu_hour', true, false],
    ['rosa', 'Instance-hours', '1', 'control_plane', 'control_plane', true, false],
    ['ansible-aap-managed', 'Managed-nodes', '1', 'managed_node', null, true, true],
    ['ansible-aap-managed', 'Instance-hours', '1', 'infrastructure', null, true, false],
    ['rhel-for-x86-els-payg-addon', 'vCPUs', '1', 'vCPU_hours', null, false, false],
  ];
  for (const [tag, m, bf, aws, azure, contractEnabled, gratis] of rows) {
    const e = lookupMetric(c, tag, m);
    assert.ok(e, `${tag}/${m}`);
    assert.deepEqual(
      { metric: e.metric, billingFactor: e.billingFactor, aws: dimensionFor(e, 'aws'), azure: dimensionFor(e, 'azure'), contractEnabled: e.contractEnabled, gratis: e.gratis },
      { metric: m, billingFactor: bf, aws, azure, contractEnabled, gratis },
    );
  }
  const count = [...c.products.values()].reduce((n, p) => n + p.metrics.length, 0);
  assert.equal(count, rows.length);
});

void test('metric ids match case-insensitively with _ equal to -, and come back canonical', () => {
  const c = loadCatalog(DEFAULT_CATALOG_PATH);
  for (const spelled of ['Instance-hours', 'instance_hours', 'INSTANCE-HOURS', 'Instance_Hours']) {
    assert.equal(lookupMetric(c, 'rosa', spelled)?.metric, 'Instance-hours', spelled);
  }
  assert.equal(lookupMetric(c, 'rosa', 'cores')?.metric, 'Cores');
  assert.equal(lookupMetric(c, 'rosa', 'Sockets'), undefined);
  assert.equal(lookupMetric(c, 'rosa', 'Instance hours'), undefined);
  assert.equal(lookupMetric(c, 'ROSA', 'Cores'), undefined, 'product tags match exactly');
  assert.equal(lookupMetric(c, 'nope', 'Cores'), undefined);
  assert.equal(normalizeMetricId('Managed_Nodes'), 'managed-nodes');
  assert.equal(lookupProduct(c, 'rosa')?.contractEnabled, true);
});

void test('a metric without a dimension cannot be remitted there', () => {
  const c = loadCatalog(undefined, {});
  const e = lookupMetric(c, 'rhel-for-x86-els-payg-addon', 'vcpus');
  assert.ok(e);
  assert.equal(dimensionFor(e, 'azure'), null);
  assert.equal(dimensionFor(e, 'aws'), 'vCPU_hours');
});

void test('REMIT_CATALOG_PATH overrides the default; an explicit path overrides both', () => {
  const custom = product([metric({ metric: 'Widgets', billingFactor: '0.5' })]);
  const file = tmpFile(JSON.stringify(custom));
  const viaEnv = loadCatalog(undefined, { REMIT_CATALOG_PATH: file });
  assert.equal(viaEnv.source, file);
  assert.equal(lookupMetric(viaEnv, 'p', 'widgets')?.billingFactor, '0.5');
  assert.equal(lookupMetric(viaEnv, 'rosa', 'Cores'), undefined);
  const explicit = loadCatalog(DEFAULT_CATALOG_PATH, { REMIT_CATALOG_PATH: file });
  assert.equal(lookupMetric(explicit, 'rosa', 'Cores')?.billingFactor, '0.25');
});

void test('unreadable or malformed files fail with the path in the message', () => {
  assert.throws(() => loadCatalog('/nonexistent/catalog.json'), (e: unknown) => e instanceof CatalogError && /\/nonexistent\/catalog\.json/.test(e.message) && /cannot read/.test(e.message));
  const bad = tmpFile('{"products": [');
  assert.throws(() => loadCatalog(bad), (e: unknown) => e instanceof CatalogError && e.message.includes(bad) && /not valid JSON/.test(e.message));
});

void test('billing factors are canonical decimal strings > 0', () => {
  const c = parseCatalog(product([metric({ billingFactor: '0.250' })]));
  assert.equal(lookupMetric(c, 'p', 'Cores')?.billingFactor, '0.25');
  for (const bad of [0.25, '0', '-1', 'NaN', '', 'abc', null, undefined]) {
    const problems = problemsOf(product([metric({ billingFactor: bad })]));
    assert.ok(problems.some((p) => p.includes('billingFactor')), `${String(bad)}: ${problems.join('; ')}`);
  }
});

void test('every structural mistake is named with its field', () => {
  const cases: Array<[unknown, RegExp]> = [
    [null, /top level/],
    [[], /top level/],
    [{}, /products: must be a non-empty array/],
    [{ products: [] }, /products: must be a non-empty array/],
    [{ products: [1] }, /products\[0\]: must be an object/],
    [{ products: [{ productTag: '', contractEnabled: true, metrics: [metric()] }] }, /productTag/],
    [product([metric()], { contractEnabled: 'yes' }), /contractEnabled: must be true or false/],
    [product([]), /metrics: must be a non-empty array/],
    [product([metric({ metric: ' Cores' })]), /metric: must be a non-empty string/],
    [product([metric(), metric({ metric: 'CORES', dimensions: { aws: 'x', azure: 'y' } })]), /duplicate of Cores/],
    [product([metric({ dimensions: { aws: 'a' } })]), /dimensions\.azure: must be a dimension name, or null/],
    [product([metric({ dimensions: { aws: 'a', azure: null, gcp: 'g' } })]), /dimensions\.gcp: unknown marketplace/],
    [product([metric({ dimensions: { aws: '', azure: null } })]), /dimensions\.aws/],
    [product([metric({ dimensions: 'four_vcpu_hour' })]), /dimensions: must be an object/],
    [product([metric({ gratis: 'no' })]), /gratis: must be true or false/],
    [product([metric({ gratis: true })], { contractEnabled: false }), /only a contract-enabled product/],
    [product([metric({ billingfactor: '1' })]), /billingfactor: unknown field/],
    [product([metric()], { awsProductCode: 7 }), /awsProductCode/],
    [{ products: [...product([metric()]).products, ...product([metric()]).products] }, /duplicate product/],
    [product([metric(), metric({ metric: 'Sockets', dimensions: { aws: 'a', azure: null } })]), /a is already the dimension of Cores/],
  ];
  for (const [json, re] of cases) {
    const problems = problemsOf(json);
    assert.ok(problems.some((p) => re.test(p)), `${JSON.stringify(json)} -> ${problems.join('; ')}`);
  }
});

void test('all problems are reported at once', () => {
  const problems = problemsOf(product([metric({ billingFactor: '0' }), metric({ metric: 'Sockets', gratis: 1, dimensions: { aws: 'x', azure: 'y' } })]));
  assert.equal(problems.length, 2, problems.join('; '));
});

void test('the committed file is strictly valid (no stray fields)', () => {
  assert.ok(Array.isArray(committed.products));
  assert.doesNotThrow(() => parseCatalog(committed));
});

void test('awsProductCode is optional per product and carried to each metric', () => {
  const c = parseCatalog(product([metric()], { contractEnabled: false, awsProductCode: 'prod-123' }));
  assert.equal(lookupMetric(c, 'p', 'Cores')?.awsProductCode, 'prod-123');
  assert.equal(lookupMetric(loadCatalog(undefined, {}), 'rosa', 'Cores')?.awsProductCode, null);
});
