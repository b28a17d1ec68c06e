// Review finding: bad input that reached the database or a throwing helper answered 500 instead
// of 4xx: repeated query parameters (Fastify parses them into arrays), a cursor outside the Date
// range, an audit cursor outside bigint, a NUL in operator filters, and an unpaired surrogate in
// a tally field (keyString's encodeURIComponent threw after validation had accepted it).

import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../api/app';
import { openDatabase, type Database } from '../../db/client';
import { loadCatalog } from '../../config/catalog';
import { createLogger } from '../../lib/log';
import { createTestDatabase, type TestDatabase } from '../../scripts/lib/test-database';

let testDb: TestDatabase;
let database: Database;
let app: FastifyInstance;

before(async () => {
  testDb = await createTestDatabase('review_api');
  database = openDatabase(testDb.url, { max: 4 });
  app = await buildApi({ database, catalog: loadCatalog(), time: { hourMs: 3_600_000, graceHours: 0.1667, acceptanceHours: { aws: 6, azure: 24 } } as never, tokens: { ingest: 'i', operator: 'o' }, log: createLogger('review', 'silent') });
});
after(async () => {
  await app?.close();
  await database?.close();
  await testDb?.drop();
});

const op = { authorization: 'Bearer o' };
const cases: Array<[string, string, unknown?]> = [
  ['GET', '/v1/remittances?status=Failed&status=Succeeded'],
  ['GET', '/v1/remittances/summary?groupBy=status&groupBy=orgId'],
  ['GET', `/v1/remittances?cursor=${Buffer.from('99999999999999999.x').toString('base64url')}`],
  ['GET', '/v1/remittances?orgId=a%00b'],
  ['GET', '/v1/contracts?orgId=a%00b'],
  ['GET', '/v1/audit?cursor=1e300'],
  ['POST', '/v1/remittances/recalculate', { productTag: 'rosa', start: '2025-01-01T00:00:00Z', end: '2025-02-01T00:00:00Z', orgIds: ['x\u0000y'], dryRun: true }],
];

for (const [method, url, body] of cases) {
  it(`${method} ${url.slice(0, 60)} is a 4xx, not a 500`, async () => {
    const r = await app.inject({ method: method as 'GET', url, headers: { ...op, ...(body ? { 'content-type': 'application/json' } : {}) }, payload: body ? JSON.stringify(body) : undefined });
    assert.ok(r.statusCode >= 400 && r.statusCode < 500, `${r.statusCode} ${r.body}`);
  });
}

it('a tally field with an unpaired surrogate is a 400 and stores nothing', async () => {
  const tally = { orgId: 'o', productTag: 'rosa', metric: 'Cores', sla: 's', usage: 'u\ud800', billingProvider: 'aws', billingAccountId: '1', hour: '2025-01-01T00:00:00Z', value: 1 };
  const r = await app.inject({ method: 'POST', url: '/v1/tallies', headers: { authorization: 'Bearer i', 'content-type': 'application/json' }, payload: JSON.stringify({ tallies: [tally] }) });
  assert.equal(r.statusCode, 400, r.body);
  const n = await database.pool.query('SELECT COUNT(*)::int AS n FROM tallies');
  assert.equal(n.rows[0].n, 0);
});
