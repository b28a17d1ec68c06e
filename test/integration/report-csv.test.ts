// "What did we remit and what not" as CSV, for spreadsheets: `GET /v1/remittances?format=csv`,
// `Accept: text/csv`, and `remit report --csv` (the CLI as operators run it, a child process),
// on seeded ledger rows whose reasons have commas, quotes and line breaks. The CSV must carry the
// same rows and reasons as the JSON listing.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { keyString, type RemittanceKey } from '../../domain/key';
import { startTestStack, type TestStack } from '../../scripts/lib/stack-harness';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'remit.mjs');
let stack: TestStack;
const orgId = `org-csv-${randomUUID().slice(0, 8)}`;
const key: RemittanceKey = { billingProvider: 'aws', billingAccountId: '123456789012', orgId, productTag: 'rosa', metric: 'Cores', sla: 'Premium', usage: 'Production' };
const REASON = 'The customer is not subscribed, said AWS: "CustomerNotEntitledException"\nsubscribe, then retry';

/** RFC 4180: quoted fields may hold commas, doubled quotes and line breaks. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else field += c;
  }
  assert.equal(field + row.join(''), '', 'the CSV ends with CRLF');
  return rows;
}

before(async () => {
  stack = await startTestStack({ hourMs: 3000 });
  const h = (n: number) => new Date(Date.parse('2026-11-25T10:00:00Z') + n * 3_600_000);
  // Each seeded remittance travels in a marketplace record of its own, which holds the send state
  // (attempts, last error) that the report shows beside the remittance.
  const insert = async (id: string, hour: Date, status: string, extra: { bill: number; claim: string; errorCode?: string; reason?: string; receiptId?: string; billedOn?: Date; lastError?: string; updatedAt: Date }) => {
    const deadline = new Date(hour.getTime() + 6 * 3_600_000);
    await stack.database.pool.query(
      `INSERT INTO marketplace_records (id, marketplace, identity, remittance_hour, customer, dimension, quantity, status, error_code, reason, receipt_id, attempts, last_error, deadline, billed_on, workflow_id)
       VALUES ($1, 'aws', $1, $2, $3, 'four_vcpu_hour', GREATEST($4::int, 1), $5, $6, $7, $8, 1, $9, $10, $11, $12)`,
      [`rec-${id}`, hour, JSON.stringify({ marketplace: 'aws', productCode: 'rosa-product', customerAwsAccountId: key.billingAccountId, licenseArn: null }), extra.bill, status,
       extra.errorCode ?? null, extra.reason ?? null, extra.receiptId ?? null, extra.lastError ?? null, deadline, extra.billedOn ?? null, `remit/${id}`],
    );
    await stack.database.pool.query(
      `INSERT INTO remittances (id, key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, remittance_hour, status, bill, claim, dimension,
         error_code, reason, receipt_id, billed_on, record_id, deadline, workflow_id, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'four_vcpu_hour', $14, $15, $16, $17, $18, $19, $20, $21, $21)`,
      [id, keyString(key), key.billingProvider, key.billingAccountId, key.orgId, key.productTag, key.metric, key.sla, key.usage, hour, status, extra.bill, extra.claim,
       extra.errorCode ?? null, extra.reason ?? null, extra.receiptId ?? null, extra.billedOn ?? null, `rec-${id}`, deadline, `remit/${id}`, extra.updatedAt],
    );
  };
  await insert(`${orgId}-1`, h(0), 'Succeeded', { bill: 4, claim: '3.5', receiptId: 'receipt-1', billedOn: h(1), updatedAt: h(1) });
  await insert(`${orgId}-2`, h(1), 'Failed', { bill: 2, claim: '1.25', errorCode: 'marketplace_customer_not_subscribed', reason: REASON, lastError: 'a, b', updatedAt: h(2) });
  await insert(`${orgId}-3`, h(2), 'Succeeded', { bill: 3, claim: '2.75', receiptId: 'receipt-3', billedOn: h(3), updatedAt: h(3) });
  await stack.database.pool.query(
    `INSERT INTO remittance_parts (remittance_id, key, period, bill, claim, mtd) VALUES ($1, $2, '2026-11', 4, '3.5', '3.5'), ($3, $2, '2026-11', 3, '2.75', '6.25')`,
    [`${orgId}-1`, keyString(key), `${orgId}-3`],
  );
});

after(async () => {
  await stack?.stop();
});

async function get(query: string, headers: Record<string, string> = {}) {
  const r = await fetch(`${stack.apiUrl}/v1/remittances?${query}`, { headers: { authorization: `Bearer ${stack.tokens.operator}`, ...headers } });
  return { status: r.status, type: r.headers.get('content-type') ?? '', next: r.headers.get('x-next-cursor'), text: await r.text() };
}

function remit(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REMIT_')));
  const env = { ...base, REMIT_STACK_FILE: 'none', REMIT_API_URL: stack.apiUrl, REMIT_OPERATOR_TOKEN: stack.tokens.operator };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('remittance reports as CSV', () => {
  it('GET /v1/remittances?format=csv has the rows and reasons of the JSON listing, properly quoted', async () => {
    const json = JSON.parse((await get(`orgId=${orgId}`)).text) as { items: Array<Record<string, any>> };
    assert.equal(json.items.length, 3);
    const csv = await get(`orgId=${orgId}&format=csv`);
    assert.equal(csv.status, 200);
    assert.match(csv.type, /^text\/csv/);
    const [header, ...rows] = parseCsv(csv.text);
    assert.equal(rows.length, json.items.length);
    const col = (name: string) => header!.indexOf(name);
    for (const name of ['remittanceHour', 'billingProvider', 'orgId', 'quantity', 'status', 'errorCode', 'reason', 'receiptId', 'rebilledByRemittanceId', 'accumulationPeriods']) assert.ok(col(name) >= 0, `column ${name}`);
    for (const [i, item] of json.items.entries()) {
      const row = rows[i]!;
      assert.equal(row.length, header!.length);
      assert.equal(row[col('id')], item.id, 'same order as the JSON');
      assert.equal(row[col('remittanceHour')], item.remittanceHour);
      assert.equal(row[col('orgId')], item.key.orgId);
      assert.equal(row[col('quantity')], String(item.quantity));
      assert.equal(row[col('claim')], item.claim);
      assert.equal(row[col('status')], item.status);
      assert.equal(row[col('errorCode')], item.errorCode ?? '');
      assert.equal(row[col('reason')], item.reason ?? '');
      assert.equal(row[col('receiptId')], item.receiptId ?? '');
      assert.equal(row[col('rebilledByRemittanceId')], item.rebilledBy?.remittanceId ?? '');
    }
    const failed = rows.find((r) => r[col('status')] === 'Failed')!;
    assert.equal(failed[col('reason')], REASON, 'commas, quotes and a line break survive');
    assert.equal(failed[col('lastError')], 'a, b');
    assert.equal(failed[col('rebilledByRemittanceId')], `${orgId}-3`, 'the failed amount was billed by the later hour');
    assert.equal(rows.find((r) => r[col('id')] === `${orgId}-3`)![col('accumulationPeriods')], '2026-11:3:2.75');
    assert.match(csv.text, /"The customer is not subscribed, said AWS: ""CustomerNotEntitledException""\nsubscribe, then retry"/);
  });

  it('Accept: text/csv gives the same CSV; pages carry the next cursor in a header; bad format is a 400', async () => {
    const byParam = await get(`orgId=${orgId}&format=csv`);
    const byAccept = await get(`orgId=${orgId}`, { accept: 'text/csv' });
    assert.match(byAccept.type, /^text\/csv/);
    assert.equal(byAccept.text, byParam.text);
    assert.match((await get(`orgId=${orgId}`, { accept: 'application/json, text/csv' })).type, /json/, 'JSON when it is listed first');

    const first = await get(`orgId=${orgId}&format=csv&limit=2`);
    assert.equal(parseCsv(first.text).length, 3, 'header and two rows');
    assert.ok(first.next, 'a next cursor header');
    const second = await get(`orgId=${orgId}&format=csv&limit=2&cursor=${encodeURIComponent(first.next!)}`);
    assert.deepEqual([...parseCsv(first.text).slice(1), ...parseCsv(second.text).slice(1)], parseCsv(byParam.text).slice(1));
    assert.equal(second.next, null);

    const doc = (await (await fetch(`${stack.apiUrl}/openapi.json`)).json()) as any;
    const op = doc.paths['/v1/remittances'].get;
    assert.ok(op.parameters.some((p: { name: string; schema: { enum?: string[] } }) => p.name === 'format' && p.schema.enum?.includes('csv')), 'the OpenAPI document has format=csv');
    assert.ok(op.responses['200'].content['text/csv'], 'and the text/csv answer');

    const bad = await get(`orgId=${orgId}&format=xlsx`);
    assert.equal(bad.status, 400);
    assert.match(bad.text, /format must be json or csv/);
  });

  it('remit report --csv prints the same CSV as the API', async () => {
    const r = await remit(['report', '--org', orgId, '--all', '--csv']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, (await get(`orgId=${orgId}&format=csv`)).text);
    const both = await remit(['report', '--csv', '--json']);
    assert.equal(both.code, 2, both.stderr);
    assert.match(both.stderr, /give --json or --csv, not both/);
  });
});
