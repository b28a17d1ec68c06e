// Serialization of a key's computations is enforced by PostgreSQL, not by Temporal running one
// activity at a time: computeGroup and recomputeRecord (db/ledger.ts) are called here directly,
// many times at once for the same key, on many pool connections, with no workflow in between. Whatever the order the
// database lets them through in, the billed total of a key and month must be ceil(MTD x bf)
// exactly, and each (key, remittance hour) must have exactly one row.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomUUID } from 'node:crypto';
import { openDatabase, type Database } from '../../db/client';
import { putContract } from '../../db/contracts';
import { computeGroup, markOutcome, recomputeRecord, type TimeSettings } from '../../db/ledger';
import { storeTallies } from '../../db/tallies';
import { type Catalog } from '../../domain/catalog';
import { loadCatalog } from '../../config/catalog';
import { keyString, type RemittanceKey } from '../../domain/key';
import { createTestDatabase, type TestDatabase } from '../../scripts/lib/test-database';

const HOUR = 3_600_000;
const time: TimeSettings = { hourMs: HOUR, graceHours: 0.1667, acceptanceHours: { aws: 6, azure: 24 } };
/** Hour i of a fixed month (2025-03), far from any month boundary. */
const hourAt = (i: number) => Date.UTC(2025, 2, 10, 0) + i * HOUR;
const POOL_SIZE = 16;

let testDb: TestDatabase;
let database: Database;
let catalog: Catalog;

before(async () => {
  testDb = await createTestDatabase('concurrency');
  database = openDatabase(testDb.url, { max: POOL_SIZE });
  catalog = loadCatalog();
});
after(async () => {
  await database?.close();
  await testDb?.drop();
});

/** A rosa Cores key (bf 0.25, so rounding up matters) with a contract that covers nothing. */
async function newKey(): Promise<RemittanceKey> {
  const customer = String(300_000_000_000 + Math.floor(Math.random() * 1e9));
  const key: RemittanceKey = { billingProvider: 'aws', billingAccountId: customer, orgId: `org-${randomUUID().slice(0, 8)}`, productTag: 'rosa', metric: 'Cores', sla: 'Premium', usage: 'Production' };
  await putContract(database, {
    contractId: `c-${key.orgId}`,
    orgId: key.orgId,
    billingProvider: 'aws',
    billingAccountId: customer,
    productTag: 'rosa',
    startDate: '2020-01-01T00:00:00.000Z',
    endDate: null,
    licenseId: null,
    aws: { productCode: 'rosa-product', customerAwsAccountId: customer, licenseArn: null },
    metrics: [],
  }, { actor: 'test' });
  return key;
}

/** Values in thousandths of a Core, so the expected total is exact integer arithmetic. */
function randomMilli(): number {
  return 1 + Math.floor(Math.random() * 9999);
}
/** ceil(MTD x 0.25) for an MTD given in thousandths. */
const owed = (mtdMilli: number) => Math.ceil(mtdMilli / 4000);

async function store(key: RemittanceKey, hours: number[], milli: Map<number, number>, minMilli = 0): Promise<void> {
  for (const h of hours) milli.set(h, minMilli + randomMilli());
  await storeTallies(database, hours.map((h) => ({ key, hourMs: h, value: (milli.get(h)! / 1000).toFixed(3) })));
}

/** The close of hour `hourMs` for this key alone (its own record: one customer per key here). Returns the rows it computed. */
async function compute(key: RemittanceKey, hourMs: number): Promise<number> {
  // nowMs as the sweep sees it: the hour's window has closed, its acceptance deadline has not.
  const target = { customer: { marketplace: 'aws' as const, productCode: 'rosa-product', customerAwsAccountId: key.billingAccountId, licenseArn: null }, dimension: 'four_vcpu_hour' };
  const out = await computeGroup(database, { keys: [key], hourMs, target, catalog, time, nowMs: hourMs + 1.5 * HOUR });
  return out.computed.length;
}

/** An operator's retry of a failed record, in its own hour. */
function retry(recordId: string, hourMs: number) {
  return recomputeRecord(database, recordId, { catalog, time, nowMs: hourMs + 1.5 * HOUR });
}

interface Row {
  id: string;
  recordId: string | null;
  hour: number;
  status: string;
  bill: number;
}

async function rowsOf(key: RemittanceKey): Promise<Row[]> {
  const r = await database.pool.query<{ id: string; record_id: string | null; hour: Date; status: string; bill: number }>(
    'SELECT id, record_id, remittance_hour AS hour, status, bill FROM remittances WHERE key = $1 ORDER BY remittance_hour',
    [keyString(key)],
  );
  return r.rows.map((x) => ({ id: x.id, recordId: x.record_id, hour: x.hour.getTime(), status: x.status, bill: x.bill }));
}

const COUNTS = (s: string) => !['Failed', 'Expired', 'Voided'].includes(s);

/** Sum of billing units that count as remitted, and the check that parts agree with rows. */
async function billedTotal(key: RemittanceKey): Promise<number> {
  const r = await database.pool.query<{ rows: number; parts: number }>(
    `SELECT COALESCE(SUM(r.bill), 0)::int AS rows,
            COALESCE((SELECT SUM(p.bill) FROM remittance_parts p JOIN remittances x ON x.id = p.remittance_id
                      WHERE x.key = $1 AND x.status NOT IN ('Failed','Expired','Voided')), 0)::int AS parts
     FROM remittances r WHERE r.key = $1 AND r.status NOT IN ('Failed','Expired','Voided')`,
    [keyString(key)],
  );
  assert.equal(r.rows[0]!.parts, r.rows[0]!.rows, 'the parts of the records add up to the records');
  return r.rows[0]!.rows;
}

function assertOneRowPerHour(rows: Row[]) {
  const hours = rows.map((r) => r.hour);
  assert.equal(new Set(hours).size, hours.length, `one row per (key, hour): ${hours.map((h) => new Date(h).toISOString()).join(', ')}`);
}

/** Shuffled in place (Fisher-Yates), so the start order differs from run to run. */
function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

describe('computations of a key serialized by the database', () => {
  it('ten remittance hours of one key, each computed twice, all at once: one row per hour and ceil(MTD x bf) billed in total', async () => {
    const KEYS = 4;
    const HOURS = 10;
    const keys = await Promise.all(Array.from({ length: KEYS }, () => newKey()));
    const milli = keys.map(() => new Map<number, number>());
    const hours = Array.from({ length: HOURS }, (_, i) => hourAt(i));
    await Promise.all(keys.map((k, i) => store(k, hours, milli[i]!)));

    // 4 keys x 10 hours x 2 = 80 computations in flight on a pool of 16 connections.
    const calls = shuffle(keys.flatMap((k, ki) => hours.flatMap((h) => [0, 1].map(() => ({ ki, h, run: () => compute(k, h) })))));
    const outcomes = await Promise.all(calls.map(async (c) => ({ ...c, out: await c.run() })));
    assert.ok(database.pool.totalCount > 1, `ran on ${database.pool.totalCount} connection(s)`);

    for (const [ki, key] of keys.entries()) {
      const rows = await rowsOf(key);
      // An hour closed after later usage was stored, with nothing due through it, leaves no row
      // (the key still owes; a later close bills it). Every other hour has exactly one.
      assert.ok(rows.length >= 1 && rows.length <= HOURS, `${rows.length} rows`);
      assert.ok(rows.some((r) => r.hour === hours[HOURS - 1]), 'the last hour, with no usage after it, always has its row');
      assertOneRowPerHour(rows);
      assert.ok(rows.every((r) => r.status === 'Pending' || r.status === 'NothingDue'), JSON.stringify(rows));
      // The same hour closed twice: at most one of the two computed the key's row, and it is the row.
      for (const h of hours) {
        const twins = outcomes.filter((o) => o.ki === ki && o.h === h);
        assert.equal(twins.reduce((n, t) => n + t.out, 0), rows.filter((r) => r.hour === h).length);
      }
      const mtd = [...milli[ki]!.values()].reduce((a, b) => a + b, 0);
      assert.equal(await billedTotal(key), owed(mtd), `key ${ki}: billed = ceil(${mtd / 1000} x 0.25)`);
    }
  });

  it('retries of failed hours race the next hours and their own twins: failed amounts billed again exactly once', async () => {
    const key = await newKey();
    const milli = new Map<number, number>();
    const first = Array.from({ length: 6 }, (_, i) => hourAt(i));
    // At least 4 Cores (1 billing unit) an hour, computed hour by hour (each with its twin), so
    // that every one of these hours has an amount of its own to fail.
    await store(key, first, milli, 4000);
    for (const h of first) await Promise.all([compute(key, h), compute(key, h)]);
    const billedRows = (await rowsOf(key)).filter((r) => r.bill > 0);
    assert.equal(billedRows.length, first.length, 'every hour billed its own increment');

    // The marketplace refused two of them for good and let one expire: those amounts no longer count.
    const [f1, f2, x1] = billedRows;
    await markOutcome(database, f1!.recordId!, { status: 'Failed', errorCode: 'marketplace_customer_not_subscribed', reason: 'test' });
    if (f2) await markOutcome(database, f2.recordId!, { status: 'Failed', errorCode: 'unknown', reason: 'test' });
    if (x1) await markOutcome(database, x1.recordId!, { status: 'Expired', errorCode: 'expired', reason: 'test' });

    // More usage arrives, then everything at once: operator retries of the failed hours (twice
    // each), and the next hours' first computations (twice each).
    const next = Array.from({ length: 4 }, (_, i) => hourAt(6 + i));
    await store(key, next, milli);
    const failed = [f1!, ...(f2 ? [f2] : [])];
    await Promise.all(
      shuffle([
        ...failed.flatMap((f) => [retry(f.recordId!, f.hour), retry(f.recordId!, f.hour)]),
        ...next.flatMap((h) => [compute(key, h), compute(key, h)]),
      ]),
    );

    const rows = await rowsOf(key);
    assert.ok(rows.length <= first.length + next.length);
    assertOneRowPerHour(rows);
    if (x1) assert.equal(rows.find((r) => r.id === x1.id)?.status, 'Expired', 'an expired hour is never recomputed in place');
    const mtd = [...milli.values()].reduce((a, b) => a + b, 0);
    assert.equal(await billedTotal(key), owed(mtd), `billed = ceil(${mtd / 1000} x 0.25) after failures and racing retries`);
    assert.ok(rows.filter((r) => COUNTS(r.status)).every((r) => r.bill >= 0));
  });

  it('tallies stored while computations run: every computation sees a consistent MTD, nothing is billed twice', async () => {
    const key = await newKey();
    const milli = new Map<number, number>();
    const hours = Array.from({ length: 8 }, (_, i) => hourAt(i));
    // Each hour's tally is stored concurrently with the computations of all hours.
    await Promise.all(shuffle([...hours.map((h) => store(key, [h], milli)), ...hours.flatMap((h) => [compute(key, h), compute(key, h)])]));
    // Whatever the interleaving, a final computation of a later hour settles the month.
    await compute(key, hourAt(8));
    const rows = await rowsOf(key);
    assertOneRowPerHour(rows);
    const mtd = [...milli.values()].reduce((a, b) => a + b, 0);
    assert.equal(await billedTotal(key), owed(mtd));
  });
});
