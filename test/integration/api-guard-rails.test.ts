// Security and operator guard rails of the HTTP API (issue 10, item 5), against a real PostgreSQL:
// authentication before the body is read; bounded reset / recalculate / retry unless forced;
// contract changes audited under the credential, not a header; no database text in answers;
// an optional metrics token.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi, type ApiDeps } from '../../api/app';
import { openDatabase, type Database } from '../../db/client';
import { loadCatalog } from '../../config/catalog';
import { createLogger } from '../../lib/log';
import { createTestDatabase, type TestDatabase } from '../../scripts/lib/test-database';

const HOUR_MS = 3_600_000;
const time = { hourMs: HOUR_MS, graceHours: 0.1667, acceptanceHours: { aws: 6, azure: 24 } };
const tokens = { ingest: 'ingest-secret', operator: 'operator-secret' };
const json = { 'content-type': 'application/json' };
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

let testDb: TestDatabase;
let database: Database;
const apps: FastifyInstance[] = [];

async function api(over: Partial<ApiDeps> = {}): Promise<FastifyInstance> {
  const app = await buildApi({ database, catalog: loadCatalog(), time, tokens, log: createLogger('guard-rails', 'silent'), ...over });
  apps.push(app);
  return app;
}

const auditRows = async () => (await database.pool.query('SELECT id, actor, action, dry_run AS "dryRun", request, result FROM audit_log ORDER BY id')).rows;

before(async () => {
  testDb = await createTestDatabase('guard_rails');
  database = openDatabase(testDb.url, { max: 4 });
});
after(async () => {
  for (const a of apps) await a.close();
  await database?.close();
  await testDb?.drop();
});

describe('authentication runs before the body is read', () => {
  const routes: Array<[string, string]> = [['POST', '/v1/tallies'], ['PUT', '/v1/contracts/c-1'], ['POST', '/v1/remittances/reset'], ['POST', '/v1/remittances/retry']];

  it('a request without a valid token gets 401 whatever its body: malformed, not JSON, too large', async () => {
    const app = await api({ bodyLimitBytes: 1024 });
    for (const [method, url] of routes) {
      for (const auth of [{}, bearer('wrong'), { authorization: 'Basic x' }]) {
        const cases = [
          { headers: json, payload: '{"tallies": [' },
          { headers: { 'content-type': 'text/plain' }, payload: 'hello' },
          { headers: json, payload: JSON.stringify({ pad: 'x'.repeat(10_000) }) },
        ];
        for (const c of cases) {
          const r = await app.inject({ method: method as 'POST', url, headers: { ...c.headers, ...auth }, payload: c.payload });
          assert.equal(r.statusCode, 401, `${method} ${url} ${JSON.stringify(auth)} ${c.payload.slice(0, 20)}: ${r.statusCode} ${r.body}`);
        }
      }
    }
    // With the right token, the same bodies are refused for what they are.
    const malformed = await app.inject({ method: 'POST', url: '/v1/tallies', headers: { ...json, ...bearer(tokens.ingest) }, payload: '{"tallies": [' });
    assert.equal(malformed.statusCode, 400);
    const large = await app.inject({ method: 'POST', url: '/v1/tallies', headers: { ...json, ...bearer(tokens.ingest) }, payload: JSON.stringify({ pad: 'x'.repeat(10_000) }) });
    assert.equal(large.statusCode, 413);
  });

  it('over a real socket, a 100 MB upload without a token is answered 401 before it is sent', async () => {
    const app = await api();
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/tallies', headers: { ...json, 'content-length': String(100 * 1024 * 1024) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(e)));
      // Only the first kilobyte is ever sent: a server that waited for the body never answers.
      req.write('{"tallies": [' + ' '.repeat(1024));
    });
    assert.equal(status, 401);
  });
});

describe('reset / recalculate / retry are bounded unless forced', () => {
  const limits = { maxHours: 24, maxIds: 3 };
  const body = (over: Record<string, unknown> = {}) => ({ productTag: 'rosa', start: '2026-11-01T00:00:00Z', end: '2026-11-02T00:00:00Z', orgIds: ['org-1'], dryRun: true, ...over });

  for (const action of ['reset', 'recalculate', 'retry']) {
    it(`${action}: more hours or ids than the limits is a 400 that changes nothing; force: true runs it`, async () => {
      const app = await api({ operationLimits: limits });
      const post = (b: unknown) => app.inject({ method: 'POST', url: `/v1/remittances/${action}`, headers: { ...json, ...bearer(tokens.operator) }, payload: JSON.stringify(b) });
      const within = await post(body());
      assert.equal(within.statusCode, 200, within.body);

      const audited = (await auditRows()).length;
      const long = await post(body({ end: '2026-11-02T01:00:00Z', dryRun: false }));
      assert.equal(long.statusCode, 400, long.body);
      assert.match(long.json().errors[0].message, /the range spans 25 remittance hours; at most 24 per request \(REMIT_OPERATION_MAX_HOURS\), or send force: true/);
      const many = await post(body({ orgIds: ['a', 'b', 'c', 'd'], dryRun: false }));
      assert.equal(many.statusCode, 400, many.body);
      assert.match(many.json().errors[0].message, /4 ids; at most 3 per request \(REMIT_OPERATION_MAX_IDS\)/);
      const accounts = await post(body({ orgIds: undefined, billingAccountIds: ['1', '2', '3', '4'] }));
      assert.equal(accounts.statusCode, 400, 'a dry run is bounded too: it previews the request that would run');
      const badForce = await post(body({ force: 'yes' }));
      assert.equal(badForce.statusCode, 400);
      assert.equal((await auditRows()).length, audited, 'a refused request leaves no trace but its answer');

      const forced = await post(body({ orgIds: ['a', 'b', 'c', 'd'], end: '2027-11-02T00:00:00Z', force: true }));
      assert.equal(forced.statusCode, 200, forced.body);
      const entry = (await auditRows()).find((e) => e.id === forced.json().auditId);
      assert.equal(entry.request.force, true, 'the audit trail says the limits were overridden');
    });
  }

  it('the range is counted in remittance hours (REMIT_HOUR_SECONDS scales it)', async () => {
    const app = await api({ operationLimits: limits, time: { ...time, hourMs: 60_000 } });
    const r = await app.inject({ method: 'POST', url: '/v1/remittances/reset', headers: { ...json, ...bearer(tokens.operator) }, payload: JSON.stringify(body({ end: '2026-11-01T00:25:00Z' })) });
    assert.equal(r.statusCode, 400);
    assert.match(r.json().errors[0].message, /spans 25 remittance hours/);
  });
});

describe('the audit trail names the credential, not a header', () => {
  const contract = (accountId: string, metrics: unknown[] = []) => ({ orgId: 'org-audit', billingProvider: 'aws', billingAccountId: accountId, productTag: 'rosa', startDate: '2026-11-01T00:00:00Z', aws: { productCode: 'rosa-hcp', customerAwsAccountId: accountId }, metrics });

  it('a contract change is audited under the token that made it, with the contract before and after; a no-op put is not', async () => {
    const app = await api();
    const put = (id: string, b: unknown, token: string, actor?: string) => app.inject({ method: 'PUT', url: `/v1/contracts/${id}`, headers: { ...json, ...bearer(token), ...(actor ? { 'x-remit-actor': actor } : {}) }, payload: JSON.stringify(b) });
    const before = (await auditRows()).length;
    assert.equal((await put('c-audit', contract('111111111111'), tokens.ingest, 'the-ceo')).statusCode, 201);
    const again = await put('c-audit', contract('111111111111'), tokens.ingest);
    assert.equal(again.statusCode, 200);
    assert.equal(again.json().changed, false, 'the same contract again changes nothing (its aws object comes back from jsonb in another key order)');
    assert.equal((await put('c-audit', contract('222222222222'), tokens.operator, 'alice')).statusCode, 200);
    const rows = (await auditRows()).slice(before);
    assert.deepEqual(rows.map((e) => [e.actor, e.action, e.request.contractId, e.request.claimedBy ?? null]), [
      ['ingest-token', 'put-contract', 'c-audit', 'the-ceo'],
      ['operator-token', 'put-contract', 'c-audit', 'alice'],
    ]);
    assert.equal(rows[0].result.created, true);
    assert.equal(rows[0].result.previous, null);
    assert.equal(rows[1].result.previous.billingAccountId, '111111111111');
    assert.equal(rows[1].request.contract.billingAccountId, '222222222222');
  });

  it('with REMIT_CONTRACTS_TOKEN, only that token (or the operator) changes contracts; the ingest token still reads them', async () => {
    const app = await api({ tokens: { ...tokens, contracts: 'contracts-secret' } });
    const put = (token: string) => app.inject({ method: 'PUT', url: '/v1/contracts/c-sep', headers: { ...json, ...bearer(token) }, payload: JSON.stringify(contract('333333333333')) });
    assert.equal((await put(tokens.ingest)).statusCode, 401);
    assert.equal((await database.pool.query(`SELECT 1 FROM contracts WHERE contract_id = 'c-sep'`)).rowCount, 0);
    const ok = await put('contracts-secret');
    assert.equal(ok.statusCode, 201, ok.body);
    const [last] = (await auditRows()).slice(-1);
    assert.equal(last.actor, 'contracts-token');
    assert.equal((await app.inject({ method: 'GET', url: '/v1/contracts?orgId=org-audit', headers: bearer(tokens.ingest) })).statusCode, 200);
    assert.equal((await app.inject({ method: 'POST', url: '/v1/tallies', headers: { ...json, ...bearer('contracts-secret') }, payload: '{"tallies":[]}' })).statusCode, 401, 'the contracts token does not ingest');
  });

  it('an operator action is audited under the operator token; x-remit-actor is only a note', async () => {
    const app = await api();
    const r = await app.inject({ method: 'POST', url: '/v1/remittances/reset', headers: { ...json, ...bearer(tokens.operator), 'x-remit-actor': 'mallory' }, payload: JSON.stringify({ productTag: 'rosa', start: '2026-11-01T00:00:00Z', end: '2026-11-01T05:00:00Z', orgIds: ['org-1'], dryRun: true }) });
    assert.equal(r.statusCode, 200, r.body);
    const entry = (await auditRows()).find((e) => e.id === r.json().auditId);
    assert.equal(entry.actor, 'operator-token');
    assert.equal(entry.request.claimedBy, 'mallory');
  });
});

describe('no 5xx for bad input, no database text in any answer', () => {
  it('GET /v1/contracts with a NUL or a repeated parameter is a 400', async () => {
    const app = await api();
    for (const url of ['/v1/contracts?orgId=a%00b', '/v1/contracts?billingAccountId=1&billingAccountId=2', '/v1/contracts?cursor=%00']) {
      const r = await app.inject({ method: 'GET', url, headers: bearer(tokens.operator) });
      assert.equal(r.statusCode, 400, `${url}: ${r.body}`);
    }
    const nulId = await app.inject({ method: 'PUT', url: '/v1/contracts/a%00b', headers: { ...json, ...bearer(tokens.ingest) }, payload: '{}' });
    assert.equal(nulId.statusCode, 400, nulId.body);
  });

  it('with the database and Temporal down, /readyz says unavailable and a route says internal error, without their error text', async () => {
    const down = openDatabase('postgres://remit:pw@127.0.0.1:9/nowhere', { max: 1 });
    const temporal = { client: { connection: { workflowService: { getSystemInfo: async () => { throw new Error('14 UNAVAILABLE: dns error: temporal-frontend.internal:7233'); } } } } as never, taskQueue: 'q' };
    const lines: string[] = [];
    const log = createLogger('guard-rails', 'warn');
    const captured = Object.assign(Object.create(log), {
      warn: (o: unknown, m: string) => lines.push(`${m} ${String((o as { err?: Error }).err?.message)}`),
      error: (o: unknown, m: string) => lines.push(`${m} ${String((o as { err?: Error }).err?.message)}`),
    });
    const app = await api({ database: down, temporal, log: captured });
    try {
      const ready = await app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(ready.statusCode, 503);
      assert.deepEqual(ready.json(), { ready: false, checks: { database: 'unavailable', temporal: 'unavailable' } });
      const list = await app.inject({ method: 'GET', url: '/v1/remittances', headers: bearer(tokens.operator) });
      assert.equal(list.statusCode, 500);
      for (const body of [ready.body, list.body]) assert.doesNotMatch(body, /ECONNREFUSED|127\.0\.0\.1|dns|temporal-frontend/);
      assert.match(list.json().error, /internal error/);
      assert.ok(lines.some((l) => /ECONNREFUSED/.test(l)) && lines.some((l) => /temporal-frontend/.test(l)), `the detail is logged: ${lines.join('\n')}`);
    } finally {
      await down.close();
    }
  });
});

describe('GET /metrics can require a token', () => {
  it('with REMIT_METRICS_TOKEN: 401 without it or with another token, 200 with it', async () => {
    const app = await api({ tokens: { ...tokens, metrics: 'metrics-secret' } });
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 401);
    assert.equal((await app.inject({ method: 'GET', url: '/metrics', headers: bearer(tokens.operator) })).statusCode, 401);
    const ok = await app.inject({ method: 'GET', url: '/metrics', headers: bearer('metrics-secret') });
    assert.equal(ok.statusCode, 200);
    assert.match(ok.body, /remit_owing_keys \d+/);
  });

  it('without it, /metrics stays open (a scraper on a private network)', async () => {
    const app = await api();
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
  });
});
