// The OpenAPI document at GET /openapi.json is generated from the routes' schemas (api/app.ts,
// api/schemas.ts). Here: it is a valid OpenAPI 3.1 document by a real validator; every route the
// API serves is in it with its operationId and security, and nothing else is; the security it
// states is what the API enforces; and real answers (a real PostgreSQL behind them) match the
// response schemas it documents.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Ajv from 'ajv';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { buildApi, registeredRoutes } from '../../api/app';
import { openDatabase, type Database } from '../../db/client';
import { loadCatalog } from '../../config/catalog';
import { createLogger } from '../../lib/log';
import { createTestDatabase, type TestDatabase } from '../../scripts/lib/test-database';

const HOUR_MS = 3_600_000;
const tokens = { ingest: 'ingest-secret', operator: 'operator-secret' };

let testDb: TestDatabase;
let database: Database;
let app: FastifyInstance;
let doc: any;

const METHODS = ['get', 'put', 'post', 'delete', 'patch'];
const openApiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

before(async () => {
  testDb = await createTestDatabase('openapi');
  database = openDatabase(testDb.url, { max: 4 });
  app = await buildApi({ database, catalog: loadCatalog(), time: { hourMs: HOUR_MS, graceHours: 0.1667, acceptanceHours: { aws: 6, azure: 24 } }, tokens, log: createLogger('openapi', 'silent') });
  const r = await app.inject({ method: 'GET', url: '/openapi.json' });
  assert.equal(r.statusCode, 200);
  doc = r.json();
});

after(async () => {
  await app?.close();
  await database?.close();
  await testDb?.drop();
});

describe('GET /openapi.json', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const { Validator } = await import('@seriousme/openapi-schema-validator');
    const validator = new Validator();
    const res = await validator.validate(structuredClone(doc));
    assert.ok(res.valid, `the document is invalid: ${JSON.stringify(res.errors, null, 2)?.slice(0, 3000)}`);
    assert.equal(validator.version, '3.1');
  });

  it('lists every route the API serves, each with its operationId and security, and nothing else', () => {
    const routes = registeredRoutes(app);
    assert.ok(routes.length >= 13, `routes: ${routes.map((r) => `${r.method} ${r.url}`).join(', ')}`);
    const documented = Object.entries(doc.paths as Record<string, Record<string, { operationId?: string; security?: unknown }>>).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([m]) => METHODS.includes(m))
        .map(([m, op]) => ({ key: `${m.toUpperCase()} ${path}`, op })),
    );
    const served = new Set(routes.map((r) => `${r.method} ${openApiPath(r.url)}`));
    for (const d of documented) assert.ok(served.has(d.key), `the document has ${d.key}, which the API does not serve`);
    const operationIds = new Set<string>();
    for (const r of routes) {
      const op = doc.paths[openApiPath(r.url)]?.[r.method.toLowerCase()];
      assert.ok(op, `${r.method} ${r.url} is served but not in the document`);
      assert.equal(op.operationId, r.operationId, `${r.method} ${r.url}: operationId`);
      assert.ok(!operationIds.has(op.operationId), `operationId ${op.operationId} is unique`);
      operationIds.add(op.operationId);
      assert.deepEqual(op.security, r.security, `${r.method} ${r.url}: security`);
    }
    for (const path of ['/healthz', '/readyz', '/openapi.json']) assert.deepEqual(doc.paths[path].get.security, [], `${path} is public`);
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, { security: unknown }>>)) {
      if (path.startsWith('/v1/')) for (const m of Object.keys(item).filter((k) => METHODS.includes(k))) assert.deepEqual(item[m]!.security, [{ bearer: [] }], `${m} ${path} needs a bearer token`);
    }
  });

  it('states the security the API enforces: without a token, 401 exactly where a token is required', async () => {
    for (const r of registeredRoutes(app)) {
      const url = r.url.replace(/:([A-Za-z0-9_]+)/g, 'x');
      const res = await app.inject({ method: r.method as InjectOptions['method'], url, ...(['POST', 'PUT'].includes(r.method) ? { headers: { 'content-type': 'application/json' }, payload: '{}' } : {}) });
      const optional = r.security.length === 0 || r.security.some((s) => Object.keys(s).length === 0);
      if (optional) assert.notEqual(res.statusCode, 401, `${r.method} ${r.url} is documented as public: ${res.body}`);
      else assert.equal(res.statusCode, 401, `${r.method} ${r.url} is documented as needing a token: ${res.body}`);
    }
  });

  it('documents the bodies it takes: the contract body defines every field it requires', () => {
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { required?: string[]; properties?: object; $ref?: string } }> } }>>)) {
      for (const [m, op] of Object.entries(item)) {
        const schema = op.requestBody?.content['application/json']?.schema;
        if (!schema) continue;
        const resolved = schema.$ref ? doc.components.schemas[schema.$ref.split('/').pop()!] : schema;
        for (const f of resolved.required ?? []) assert.ok(resolved.properties && f in resolved.properties, `${m} ${path}: required field ${f} is defined`);
      }
    }
  });
});

describe('real answers match the documented responses', () => {
  const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
  let added = false;
  const check = (method: string, path: string, status: number, body: unknown, media = 'application/json') => {
    if (!added) {
      ajv.addSchema(doc, 'openapi.json');
      added = true;
    }
    const pointer = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');
    const response = doc.paths[path][method].responses[String(status)];
    assert.ok(response, `${method} ${path} documents status ${status}`);
    assert.ok(response.content?.[media]?.schema, `${method} ${path} ${status} has a ${media} schema`);
    const validate = ajv.getSchema(`openapi.json#/paths/${pointer(path)}/${method}/responses/${status}/content/${pointer(media)}/schema`)!;
    assert.ok(validate(body), `${method} ${path} ${status}: ${JSON.stringify(validate.errors)} in ${JSON.stringify(body).slice(0, 500)}`);
  };
  const call = async (method: 'GET' | 'POST' | 'PUT', url: string, token?: string, payload?: unknown) => {
    const r = await app.inject({ method, url, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(payload ? { 'content-type': 'application/json' } : {}) }, payload: payload ? JSON.stringify(payload) : undefined });
    return { status: r.statusCode, body: String(r.headers['content-type']).includes('json') ? r.json() : r.body };
  };

  it('ingestion, contracts, reports, operator actions, the audit trail and the service endpoints', async () => {
    const hour = new Date(Math.floor(Date.now() / HOUR_MS) * HOUR_MS - HOUR_MS).toISOString();
    const tally = { orgId: 'org-o', productTag: 'rosa', metric: 'Cores', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: '111122223333', hour, value: 4 };
    const cases: Array<[string, string, Awaited<ReturnType<typeof call>>]> = [
      ['post', '/v1/tallies', await call('POST', '/v1/tallies', tokens.ingest, { tallies: [tally] })],
      ['post', '/v1/tallies', await call('POST', '/v1/tallies', tokens.ingest, { tallies: [{ ...tally, value: -1 }] })],
      ['post', '/v1/tallies', await call('POST', '/v1/tallies', tokens.ingest, { tallies: [{ ...tally, hour: '2026-01-01T00:30:00Z' }] })],
      ['post', '/v1/tallies', await call('POST', '/v1/tallies', 'wrong', { tallies: [] })],
      ['put', '/v1/contracts/{contractId}', await call('PUT', '/v1/contracts/c-o', tokens.ingest, { orgId: 'org-o', billingProvider: 'aws', billingAccountId: '111122223333', productTag: 'rosa', startDate: '2026-01-01', aws: { productCode: 'rosa-hcp', customerAwsAccountId: '111122223333' }, metrics: [{ dimension: 'four_vcpu_hour', value: 2 }] })],
      ['put', '/v1/contracts/{contractId}', await call('PUT', '/v1/contracts/c-o', tokens.ingest, { orgId: 'org-o', billingProvider: 'aws', billingAccountId: '111122223333', productTag: 'rosa', startDate: '2026-01-01', aws: { productCode: 'rosa-hcp', customerAwsAccountId: '111122223333' } })],
      ['put', '/v1/contracts/{contractId}', await call('PUT', '/v1/contracts/c-o', tokens.ingest, { orgId: 'org-o', billingProvider: 'aws' })],
      ['get', '/v1/contracts', await call('GET', '/v1/contracts?orgId=org-o', tokens.ingest)],
      ['get', '/v1/remittances/summary', await call('GET', '/v1/remittances/summary?groupBy=orgId,period', tokens.operator)],
      ['post', '/v1/remittances/reset', await call('POST', '/v1/remittances/reset', tokens.operator, { productTag: 'rosa', start: hour, end: new Date(Date.parse(hour) + HOUR_MS).toISOString(), orgIds: ['org-o'], dryRun: true })],
      ['post', '/v1/remittances/recalculate', await call('POST', '/v1/remittances/recalculate', tokens.operator, { productTag: 'rosa', start: hour, end: new Date(Date.parse(hour) + HOUR_MS).toISOString(), orgIds: ['org-o'], dryRun: true })],
      ['post', '/v1/remittances/retry', await call('POST', '/v1/remittances/retry', tokens.operator, { productTag: 'rosa', start: hour, end: new Date(Date.parse(hour) + HOUR_MS).toISOString(), orgIds: ['org-o'], status: 'Nope' })],
      ['get', '/v1/audit', await call('GET', '/v1/audit?limit=5', tokens.operator)],
      ['get', '/v1/remittances', await call('GET', '/v1/remittances?status=Bogus', tokens.operator)],
      ['get', '/healthz', await call('GET', '/healthz')],
      ['get', '/readyz', await call('GET', '/readyz')],
    ];
    // A remittance row of every shape the list shows: failed with a reason, and one billing it again.
    await database.pool.query(
      `INSERT INTO remittances (id, key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, remittance_hour, status, bill, claim, dimension, error_code, reason, deadline)
       SELECT 'r-' || n, key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, $1::timestamptz - n * interval '1 hour', s, 4, '4', 'four_vcpu_hour', e, e, now() + interval '3 hours'
       FROM remittance_keys, (VALUES (1, 'Failed', 'marketplace_throttled'), (0, 'Pending', NULL)) AS v(n, s, e)`,
      [hour],
    );
    cases.push(['get', '/v1/remittances', await call('GET', '/v1/remittances?orgId=org-o', tokens.operator)]);
    const statuses = new Set<string>();
    for (const [method, path, r] of cases) {
      statuses.add(`${method} ${path} ${r.status}`);
      check(method, path, r.status, r.body);
    }
    assert.ok(statuses.has('post /v1/tallies 202') && statuses.has('put /v1/contracts/{contractId} 201') && statuses.has('put /v1/contracts/{contractId} 200') && statuses.has('get /readyz 503'), [...statuses].join('\n'));
    const list = cases.at(-1)![2].body as { items: Array<{ status: string; rebilledBy: unknown }> };
    assert.deepEqual(list.items.map((i) => i.status).sort(), ['Failed', 'Pending']);

    const csv = await app.inject({ method: 'GET', url: '/v1/remittances?orgId=org-o&format=csv', headers: { authorization: `Bearer ${tokens.operator}` } });
    assert.match(csv.headers['content-type'] as string, /^text\/csv/);
    assert.ok(doc.paths['/v1/remittances'].get.responses['200'].content['text/csv'], 'the CSV answer is documented');
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    assert.match(metrics.headers['content-type'] as string, /^text\/plain/);
    assert.ok(doc.paths['/metrics'].get.responses['200'].content['text/plain'], 'the metrics answer is documented');
  });
});
