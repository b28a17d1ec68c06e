// The API remembers which keys it started a workflow for in the current hour, so that a stream of
// batches costs one Temporal round trip per key and hour. A start of hour H that is still in
// flight when the hour turns must not mark its keys as started for H+1: their tallies of H+1
// would then never get a workflow of their own (found by npm run chaos, where it lost usage).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../api/app';
import { openDatabase, type Database } from '../../db/client';
import { loadCatalog } from '../../domain/catalog';
import { createLogger } from '../../lib/log';
import { createTestDatabase, type TestDatabase } from '../helpers/db';

const HOUR_MS = 2000;

describe('the API start cache across an hour boundary', () => {
  let tdb: TestDatabase;
  let database: Database;
  let api: FastifyInstance;
  let clock = 0;
  const starts: Array<{ org: string; hour: string }> = [];
  let holdOrgA: (() => void) | undefined;
  let holding = false;

  before(async () => {
    tdb = await createTestDatabase('startcache');
    database = openDatabase(tdb.url);
    // A Temporal client whose first start for org-a hangs until released: a slow round trip.
    const client = {
      workflow: {
        async start(_type: string, o: { workflowId: string }) {
          const parts = o.workflowId.split('/');
          starts.push({ org: parts[3]!, hour: parts[parts.length - 1]! });
          if (parts[3] === 'org-a' && !holding) {
            holding = true;
            await new Promise<void>((r) => (holdOrgA = r));
          }
        },
      },
    };
    api = await buildApi({
      database,
      catalog: loadCatalog(),
      time: { hourMs: HOUR_MS, graceHours: 0.25, acceptanceHours: { aws: 6, azure: 24 } },
      temporal: { client: client as never, taskQueue: 'start-cache' },
      tokens: { ingest: 'ingest', operator: 'operator' },
      log: createLogger('start-cache', 'error'),
      now: () => clock,
    });
  });
  after(async () => {
    await api?.close();
    await database?.close();
    await tdb?.drop();
  });

  const post = (orgId: string, hourMs: number) =>
    api.inject({
      method: 'POST',
      url: '/v1/tallies',
      headers: { authorization: 'Bearer ingest', 'content-type': 'application/json' },
      payload: { tallies: [{ orgId, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: '123456789012', hour: new Date(hourMs).toISOString(), value: 1 }] },
    });

  it('a slow start of hour H does not hide the keys from hour H+1', async () => {
    const h = (Math.floor(Date.now() / HOUR_MS) + 1) * HOUR_MS;
    clock = h + HOUR_MS - 100; // late in hour H
    const slow = post('org-a', h);
    while (!holdOrgA) await new Promise((r) => setTimeout(r, 5));
    clock = h + HOUR_MS + 100; // the hour turns while org-a's start is in flight
    assert.equal((await post('org-b', h + HOUR_MS)).statusCode, 202);
    holdOrgA();
    assert.equal((await slow).statusCode, 202);

    const next = await post('org-a', h + HOUR_MS);
    assert.equal(next.statusCode, 202);
    assert.equal(next.json().remittancesStarted, 1, 'org-a gets its H+1 workflow');
    const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');
    assert.deepEqual(
      starts.filter((s) => s.org === 'org-a').map((s) => s.hour),
      [iso(h), iso(h + HOUR_MS)],
    );
    // Within one hour the cache still saves the round trip.
    const again = await post('org-a', h + HOUR_MS);
    assert.equal(again.json().remittancesStarted, 0);
  });
});
