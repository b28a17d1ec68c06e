// Ingestion at scale on the real stack: one POST /v1/tallies of 10,000 tallies (every key and hour
// sent twice, the second value a correction; 200 keys x 25 hours) is stored whole, starts one workflow per
// distinct key (not per tally), bills each key once, is idempotent on replay and all-or-nothing.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomUUID } from 'node:crypto';
import { eventually, pastPreviousClose, startTestStack, type TestStack } from '../../scripts/lib/stack-harness';
import { monthOf } from '../../domain/time';

const HOUR_MS = 5000;
const KEYS = 200;
const HOURS = 25;
const PRODUCT = { productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs' };

let stack: TestStack;

before(async () => {
  // Hundreds of remittances closing together take a loaded 2-core machine's Temporal dev server up to a
  // minute to compute and send: the scaled AWS window (60 h x 5 s) leaves room for that. This
  // test is about ingestion, not about the window.
  stack = await startTestStack({ hourMs: HOUR_MS, graceHours: 0.25, awsAcceptanceHours: 60 });
});
after(async () => {
  await stack?.stop();
});

interface Batch {
  orgId: string;
  accounts: string[];
  tallies: Array<Record<string, unknown>>;
  /** Per account and month: the month-to-date total after the batch, in thousandths (last value wins). */
  mtdMilli: Map<string, number>;
}

/**
 * KEYS accounts x HOURS hours, each (key, hour) twice: first a value, then its correction. One
 * org, one product: keys differ by billing account (= AWS customer), so every key's record goes
 * to its own customer.
 */
function makeBatch(hour: number): Batch {
  const orgId = `org-scale-${randomUUID().slice(0, 8)}`;
  const base = 400_000_000_000 + Math.floor(Math.random() * 1e8) * 1000;
  const accounts = Array.from({ length: KEYS }, (_, i) => String(base + i));
  const tallies: Array<Record<string, unknown>> = [];
  const mtdMilli = new Map<string, number>();
  const item = (account: string, h: number, milli: number) => ({
    orgId,
    ...PRODUCT,
    sla: 'Premium',
    usage: 'Production',
    billingProvider: 'aws',
    billingAccountId: account,
    hour: new Date(h).toISOString(),
    value: milli / 1000,
  });
  for (const pass of [0, 1]) {
    for (const [a, account] of accounts.entries()) {
      for (let k = 0; k < HOURS; k++) {
        const milli = 1 + ((a * 7919 + k * 104_729 + pass * 15_485_863) % 5000);
        tallies.push(item(account, hour - k * HOUR_MS, milli));
        const m = `${account}/${monthOf(hour - k * HOUR_MS)}`;
        if (pass === 1) mtdMilli.set(m, (mtdMilli.get(m) ?? 0) + milli);
      }
    }
  }
  return { orgId, accounts, tallies, mtdMilli };
}

async function post(body: unknown) {
  const started = performance.now();
  const r = await stack.request('POST', '/v1/tallies', body, stack.tokens.ingest);
  return { ...r, ms: performance.now() - started };
}

async function storedTallies(orgId: string): Promise<{ n: number; sumMilli: number }> {
  const r = await stack.database.pool.query<{ n: number; sum: string }>(
    `SELECT COUNT(*)::int AS n, COALESCE(SUM(value), 0)::text AS sum FROM tallies WHERE org_id = $1`,
    [orgId],
  );
  return { n: r.rows[0]!.n, sumMilli: Math.round(Number(r.rows[0]!.sum) * 1000) };
}

async function remittanceTotals(orgId: string) {
  const r = await stack.database.pool.query<{ n: number; inFlight: number; billed: number; bad: number }>(
    `SELECT COUNT(*)::int AS n,
            COUNT(*) FILTER (WHERE status IN ('Pending','Sending'))::int AS "inFlight",
            COALESCE(SUM(bill) FILTER (WHERE status NOT IN ('Failed','Expired','Voided')), 0)::int AS billed,
            COUNT(*) FILTER (WHERE status NOT IN ('Pending','Sending','Succeeded','NothingDue'))::int AS bad
     FROM remittances WHERE org_id = $1`,
    [orgId],
  );
  return r.rows[0]!;
}

/** Statuses, error codes and a sample reason, for failure messages. */
async function statusReport(orgId: string): Promise<string> {
  const r = await stack.database.pool.query(
    `SELECT status, error_code AS "errorCode", COUNT(*)::int AS n, MIN(reason) AS sample
     FROM remittances WHERE org_id = $1 GROUP BY 1, 2 ORDER BY 1, 2`,
    [orgId],
  );
  return JSON.stringify(r.rows);
}

async function settledTotals(orgId: string, count: number) {
  return eventually(async () => {
    const t = await remittanceTotals(orgId);
    return t.n === count && t.inFlight === 0 ? t : undefined;
  }, 240_000, `${count} settled remittances of ${orgId}`);
}

const workflowCount = async (orgId: string) => (await stack.client.workflow.count(`OrgId="${orgId}"`)).count;

describe('POST /v1/tallies with 10,000 tallies', () => {
  it('stores them all in one request, one workflow per distinct customer when the hour closes, bills each key once; a replay changes nothing', async () => {
    const hour = await pastPreviousClose(stack, HOUR_MS / 2);
    const b = makeBatch(hour);
    assert.equal(b.tallies.length, 10_000);
    // billing.md: ceil(MTD x bf) per key and month, bf 1.
    const expectedOwed = [...b.mtdMilli.values()].reduce((s, m) => s + Math.ceil(m / 1000), 0);
    const expectedSum = [...b.mtdMilli.values()].reduce((s, m) => s + m, 0);

    const first = await post({ tallies: b.tallies });
    assert.equal(first.status, 202, JSON.stringify(first.body));
    // One stored tally per key and hour: the second item of each pair replaced the first.
    assert.equal(first.body.accepted, KEYS * HOURS);
    assert.equal(first.body.keys, KEYS);
    assert.equal(first.body.windowClosesAt, new Date(hour + HOUR_MS * 1.25).toISOString(), 'computed when this hour closes; the 202 waits for no workflow');
    const stored = await storedTallies(b.orgId);
    assert.deepEqual(stored, { n: KEYS * HOURS, sumMilli: expectedSum }, 'all stored, corrections applied');
    console.log(`# 10,000 tallies: POST answered in ${first.ms.toFixed(0)} ms (validation, one INSERT; no workflow start)`);

    // Temporal has exactly one workflow per key (visibility is eventually consistent).
    await eventually(async () => (await workflowCount(b.orgId)) === KEYS, 30_000, `${KEYS} workflows in Temporal visibility`);

    const done = await settledTotals(b.orgId, KEYS);
    console.log(`# ${KEYS} remittances settled ${((Date.now() - hour) / 1000).toFixed(1)} s after the start of their hour (window closes at ${1.25 * HOUR_MS / 1000} s)`);
    assert.equal(done.bad, 0, `every remittance succeeded or had nothing due: ${await statusReport(b.orgId)}`);
    assert.equal(done.billed, expectedOwed, 'sum over keys of ceil(MTD)');
    const records = stack.aws.records().filter((r) => b.accounts.includes(r.customer));
    assert.equal(records.length, KEYS, 'one record per key');
    assert.equal(records.reduce((s, r) => s + r.quantity, 0), expectedOwed);

    // Replay the identical request: the same rows, nothing more billed.
    const replay = await post({ tallies: b.tallies });
    assert.equal(replay.status, 202, JSON.stringify(replay.body));
    assert.equal(replay.body.accepted, KEYS * HOURS);
    assert.deepEqual(await storedTallies(b.orgId), stored, 'a replay stores the same rows');
    // The replay marks the keys owing; the next close computes them: nothing due, so no record
    // and no workflow.
    const after = await settledTotals(b.orgId, 2 * KEYS);
    assert.equal(after.billed, expectedOwed, 'the replay bills nothing');
    assert.equal(await workflowCount(b.orgId), KEYS, 'no workflow for an hour with nothing due');
    assert.equal(stack.aws.records().filter((r) => b.accounts.includes(r.customer)).length, KEYS, 'no new record');
  });

  it('10,000 valid tallies (the batch the first test stores whole) and one invalid: 400 naming the bad one, nothing stored, nothing started', async () => {
    const b = makeBatch(stack.currentHourMs());
    const bad = { ...b.tallies[0], value: -1 };
    const r = await post({ tallies: [...b.tallies, bad] });
    assert.equal(r.status, 400, JSON.stringify(r.body).slice(0, 500));
    assert.deepEqual(r.body.errors, [{ index: 10_000, field: 'value', message: 'must be >= 0, got -1' }]);
    assert.deepEqual(await storedTallies(b.orgId), { n: 0, sumMilli: 0 });
    const keys = await stack.database.pool.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM remittance_keys WHERE org_id = $1', [b.orgId]);
    assert.equal(keys.rows[0]!.n, 0, 'no key marked owing');
    // Nothing to wait for: the request started no workflow, and visibility lags only behind starts.
    assert.equal(await workflowCount(b.orgId), 0);
  });
});
