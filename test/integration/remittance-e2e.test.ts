// One remittance end to end on the real stack: tallies in through the API, the hourly workflow
// on the real Temporal server, the real AWS SDK client against the emulator, the ledger in real
// PostgreSQL, the result visible in the API and in Temporal's search attributes.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomUUID } from 'node:crypto';
import { buildApi } from '../../api/app';
import { createLogger } from '../../lib/log';
import { eventually, pastPreviousClose, startTestStack, type TestStack } from '../../scripts/lib/stack-harness';

const HOUR_MS = 3000;
let stack: TestStack;

before(async () => {
  stack = await startTestStack({ hourMs: HOUR_MS, graceHours: 0.25 });
});
after(async () => {
  await stack?.stop();
});

function tally(over: Record<string, unknown> = {}) {
  return {
    orgId: 'org-e2e',
    productTag: 'rhel-for-x86-els-payg-addon',
    metric: 'vCPUs',
    sla: 'Premium',
    usage: 'Production',
    billingProvider: 'aws',
    billingAccountId: '111122223333',
    hour: new Date(stack.currentHourMs()).toISOString(),
    value: 1,
    ...over,
  };
}

async function remittancesOf(orgId: string) {
  const r = await stack.request('GET', `/v1/remittances?orgId=${orgId}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.items as Array<Record<string, any>>;
}

async function tallyCount(orgId: string): Promise<number> {
  const r = await stack.database.pool.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM tallies WHERE org_id = $1', [orgId]);
  return r.rows[0]!.n;
}

describe('one remittance end to end', () => {
  it('bills posted tallies once, in one record, visible in the emulator, the API and Temporal', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    // Past the previous hour's close, with time left, so that both posts are computed when this hour closes.
    const hour = await pastPreviousClose(stack, HOUR_MS / 2);
    const earlier = hour - HOUR_MS;
    // Two tally hours, one of them corrected within the batch and again in a second batch.
    const first = await stack.request('POST', '/v1/tallies', { tallies: [tally({ orgId, hour: new Date(earlier).toISOString(), value: 9 }), tally({ orgId, value: 2.5 })] }, stack.tokens.ingest);
    assert.equal(first.status, 202, JSON.stringify(first.body));
    assert.equal(first.body.accepted, 2);
    const correction = await stack.request('POST', '/v1/tallies', { tallies: [tally({ orgId, hour: new Date(earlier).toISOString(), value: 3 })] }, stack.tokens.ingest);
    assert.equal(correction.status, 202);

    const [done] = await eventually(async () => {
      const items = await remittancesOf(orgId);
      return items.length > 0 && items.every((i) => !['Pending', 'Sending'].includes(i.status)) ? items : undefined;
    }, 30_000, 'the remittance to finish');
    assert.ok(done);
    // MTD 3 + 2.5 = 5.5 vCPUs at billing factor 1 -> ceil = 6 (3 + ceil(2.5) if the hours straddle a month).
    assert.equal(done.status, 'Succeeded', `${done.status}: ${done.reason}`);
    assert.equal(done.quantity, 6);
    assert.equal(done.remittanceHour, new Date(hour).toISOString());
    assert.ok(done.receiptId);

    const records = stack.aws.records().filter((r) => r.customer === '111122223333' && r.receiptId === done.receiptId);
    assert.equal(records.length, 1, 'exactly one accepted record');
    assert.equal(records[0]!.quantity, 6);
    assert.equal(records[0]!.dimension, 'vCPU_hours');
    assert.equal(records[0]!.timestampMs, hour);

    // Visible in Temporal through the search attributes (visibility is eventually consistent).
    const listed = await eventually(async () => {
      const ids: string[] = [];
      for await (const wf of stack.client.workflow.list({ query: `OrgId="${orgId}" AND RemittanceStatus="Succeeded" AND Marketplace="aws"` })) ids.push(wf.workflowId);
      return ids.length ? ids : undefined;
    }, 15_000, 'the workflow in Temporal visibility');
    assert.deepEqual(listed, [done.workflowId]);
    const desc = await stack.client.workflow.getHandle(done.workflowId).describe();
    assert.equal(desc.typedSearchAttributes.get({ name: 'RemittanceHour', type: 'DATETIME' } as never)?.toString(), new Date(hour).toString());
  });

  it('re-sending the same tallies in a later hour bills nothing more', async () => {
    const orgId = `org-${randomUUID().slice(0, 8)}`;
    const body = { tallies: [tally({ orgId, value: 4 })] };
    assert.equal((await stack.request('POST', '/v1/tallies', body, stack.tokens.ingest)).status, 202);
    await eventually(async () => (await remittancesOf(orgId)).find((i) => i.status === 'Succeeded'), 30_000, 'first remittance');
    // Wait for the next hour, then replay the identical batch.
    const next = stack.currentHourMs() + HOUR_MS;
    await new Promise((r) => setTimeout(r, next - Date.now() + 50));
    assert.equal((await stack.request('POST', '/v1/tallies', body, stack.tokens.ingest)).status, 202);
    const items = await eventually(async () => {
      const all = await remittancesOf(orgId);
      return all.length === 2 && all.every((i) => !['Pending', 'Sending'].includes(i.status)) ? all : undefined;
    }, 30_000, 'second remittance');
    assert.deepEqual(items.map((i) => i.status).sort(), ['NothingDue', 'Succeeded']);
    const billed = stack.aws.records().filter((r) => r.customer === '111122223333' && items.some((i) => i.receiptId === r.receiptId));
    assert.equal(billed.reduce((s, r) => s + r.quantity, 0), 4);
  });

  describe('bad requests to POST /v1/tallies get a 4xx with a clear message and store nothing', () => {
    const cases: Array<[string, unknown, number, RegExp]> = [
      ['malformed JSON', '{"tallies": [', 400, /malformed JSON/i],
      ['missing tallies', {}, 400, /tallies/],
      ['missing field', { tallies: [{ ...tallyShape(), orgId: undefined }] }, 400, /orgId/],
      ['NaN as a string', { tallies: [{ ...tallyShape(), value: 'NaN' }] }, 400, /value/],
      ['negative value', { tallies: [{ ...tallyShape(), value: -1 }] }, 400, /value/],
      ['unknown product', { tallies: [{ ...tallyShape(), productTag: 'no-such-product' }] }, 400, /productTag/],
      ['unknown metric', { tallies: [{ ...tallyShape(), metric: 'Sockets' }] }, 400, /metric/],
      ['unknown marketplace', { tallies: [{ ...tallyShape(), billingProvider: 'gcp' }] }, 400, /billingProvider/],
      ['hour not on the hour', { tallies: [{ ...tallyShape(), hour: 'OFFSET' }] }, 400, /hour/],
    ];
    for (const [name, body, status, message] of cases) {
      it(name, async () => {
        const orgId = `org-bad-${randomUUID().slice(0, 8)}`;
        const b = typeof body === 'string' ? body : JSON.parse(JSON.stringify(body, (k, v) => (k === 'orgId' && v === 'ORG' ? orgId : k === 'hour' && v === 'OFFSET' ? new Date(stack.currentHourMs() + 1500).toISOString() : k === 'hour' && v === 'HOUR' ? new Date(stack.currentHourMs()).toISOString() : v)));
        // A valid tally travels with the bad one: all-or-nothing means it is not stored either.
        if (typeof b === 'object' && Array.isArray(b.tallies)) b.tallies.push({ ...tally({ orgId }) });
        const r = await stack.request('POST', '/v1/tallies', b, stack.tokens.ingest);
        assert.equal(r.status, status, JSON.stringify(r.body));
        assert.match(JSON.stringify(r.body), message);
        if (typeof b === 'object' && Array.isArray(b.tallies)) {
          assert.ok(Array.isArray(r.body.errors) && r.body.errors.every((e: any) => typeof e.index === 'number' && typeof e.field === 'string' && typeof e.message === 'string'));
        }
        assert.equal(await tallyCount(orgId), 0);
      });
    }
    it('no token, or the operator token, is refused with 401', async () => {
      const orgId = `org-bad-${randomUUID().slice(0, 8)}`;
      const body = { tallies: [tally({ orgId })] };
      assert.equal((await stack.request('POST', '/v1/tallies', body, null)).status, 401);
      assert.equal((await stack.request('POST', '/v1/tallies', body, 'wrong')).status, 401);
      assert.equal((await stack.request('POST', '/v1/tallies', body, stack.tokens.operator)).status, 401);
      assert.equal(await tallyCount(orgId), 0);
    });
    it('an oversized body gets 413 and a body that is not JSON gets 415, storing nothing', async () => {
      const orgId = `org-bad-${randomUUID().slice(0, 8)}`;
      const small = await buildApi({ database: stack.database, catalog: stack.catalog, time: stack.time, tokens: stack.tokens, log: createLogger('test', 'silent'), bodyLimitBytes: 2048 });
      const url = await small.listen({ port: 0, host: '127.0.0.1' });
      try {
        const big = { tallies: Array.from({ length: 50 }, () => tally({ orgId })) };
        const r = await fetch(`${url}/v1/tallies`, { method: 'POST', headers: { authorization: `Bearer ${stack.tokens.ingest}`, 'content-type': 'application/json' }, body: JSON.stringify(big) });
        assert.equal(r.status, 413);
        assert.match(await r.text(), /too large/i);
      } finally {
        await small.close();
      }
      const text = await fetch(`${stack.apiUrl}/v1/tallies`, { method: 'POST', headers: { authorization: `Bearer ${stack.tokens.ingest}`, 'content-type': 'text/plain' }, body: JSON.stringify({ tallies: [tally({ orgId })] }) });
      assert.equal(text.status, 415);
      assert.match(await text.text(), /application\/json/);
      assert.equal(await tallyCount(orgId), 0);
    });
    it('the service keeps serving after bad input', async () => {
      const r = await stack.request('GET', '/healthz', undefined, null);
      assert.equal(r.status, 200);
    });
  });
});

function tallyShape() {
  return {
    orgId: 'ORG',
    productTag: 'rhel-for-x86-els-payg-addon',
    metric: 'vCPUs',
    sla: 'Premium',
    usage: 'Production',
    billingProvider: 'aws',
    billingAccountId: '111122223333',
    hour: 'HOUR',
    value: 1,
  };
}
