// Operator actions: reset, recalculate, retry. Shared by the HTTP API and the `remit` CLI.
// Each one selects with the same filters, can preview (dry run: nothing changes), and is
// recorded in the audit trail (who, when, what, result), dry runs included.
//
// All three end the same way: the affected keys are marked owing and the *current* hour's
// remittance is started for each, so whatever is owed goes out in that hour's single record.
// Nothing ever re-sends a past hour blind.

import type { Client } from '@temporalio/client';
import type { Database } from '../db/client';
import { previewRemittance, recordAudit, markKeysOwing, voidRemittances, withTransaction, type TimeSettings } from '../db/ledger';
import { resumeKeys } from '../db/parking';
import { listRemittances, type RemittanceFilter, type RemittanceItem } from '../db/reports';
import type { Catalog } from '../domain/catalog';
import { keyString, parseKeyString, type RemittanceKey } from '../domain/key';
import { hourStart } from '../domain/time';
import { startRemittances } from '../lib/remittance-client';
import { retrySignal } from '../workflows/definitions';

export interface OperationDeps {
  database: Database;
  catalog: Catalog;
  time: TimeSettings;
  temporal?: { client: Client; taskQueue: string };
  now?: () => number;
}

export interface OperationRequest {
  productTag: string;
  /** Optional: only this metric of the product (the canonical id, e.g. `Cores`). */
  metric?: string;
  start: Date;
  end: Date;
  orgIds?: string[];
  billingAccountIds?: string[];
  /** retry only: which statuses to retry (default Failed). */
  status?: string[];
  dryRun: boolean;
  actor: string;
}

export interface OperationChange {
  key: RemittanceKey;
  remittanceId?: string;
  remittanceHour?: string;
  status?: string;
  /** Billing units affected (voided, retried) or that would be billed now (recalculate). */
  quantity: number;
  claim?: string;
  action: string;
}

export interface OperationResult {
  action: 'reset' | 'recalculate' | 'retry';
  dryRun: boolean;
  changes: OperationChange[];
  /** Remittances started (or signalled) to bill the change; empty on a dry run. */
  started: string[];
  auditId: number;
}

/** Parse and check an operator request body; returns a message per problem. */
export function parseOperationRequest(body: unknown, actor: string, opts: { withStatus?: boolean } = {}): { ok: true; value: OperationRequest } | { ok: false; errors: Array<{ field: string; message: string }> } {
  const errors: Array<{ field: string; message: string }> = [];
  if (!body || typeof body !== 'object' || Array.isArray(body)) return { ok: false, errors: [{ field: '', message: 'body must be a JSON object' }] };
  const b = body as Record<string, unknown>;
  const str = (f: string) => (typeof b[f] === 'string' && (b[f] as string).length > 0 && !(b[f] as string).includes('\u0000') ? (b[f] as string) : (errors.push({ field: f, message: `${f} is required (a non-empty string without NUL)` }), ''));
  const productTag = str('productTag');
  const date = (f: string) => {
    const v = b[f];
    const d = typeof v === 'string' ? new Date(v) : undefined;
    if (!d || Number.isNaN(d.getTime())) {
      errors.push({ field: f, message: `${f} must be an ISO-8601 instant` });
      return new Date(NaN);
    }
    return d;
  };
  const start = date('start');
  const end = date('end');
  if (!Number.isNaN(start.getTime()) && !Number.isNaN(end.getTime()) && end <= start) errors.push({ field: 'end', message: 'end must be after start' });
  const list = (f: string) => {
    if (b[f] === undefined) return undefined;
    if (!Array.isArray(b[f]) || (b[f] as unknown[]).length === 0 || !(b[f] as unknown[]).every((x) => typeof x === 'string' && x.length > 0 && !x.includes('\u0000'))) {
      errors.push({ field: f, message: `${f} must be a non-empty array of strings (without NUL)` });
      return undefined;
    }
    return b[f] as string[];
  };
  const orgIds = list('orgIds');
  const billingAccountIds = list('billingAccountIds');
  if ((b.orgIds === undefined) === (b.billingAccountIds === undefined)) errors.push({ field: 'orgIds', message: 'give exactly one of orgIds and billingAccountIds' });
  if (b.dryRun !== undefined && typeof b.dryRun !== 'boolean') errors.push({ field: 'dryRun', message: 'dryRun must be a boolean' });
  if (b.metric !== undefined && (typeof b.metric !== 'string' || b.metric.length === 0)) errors.push({ field: 'metric', message: 'metric must be a non-empty string' });
  let status: string[] | undefined;
  if (opts.withStatus && b.status !== undefined) {
    const s = Array.isArray(b.status) ? b.status : [b.status];
    if (!s.every((x) => x === 'Failed' || x === 'Expired')) errors.push({ field: 'status', message: 'status must be Failed or Expired (or a list of them)' });
    else status = s as string[];
  }
  if (errors.length) return { ok: false, errors };
  return { ok: true, value: { productTag, metric: typeof b.metric === 'string' ? b.metric : undefined, start, end, orgIds, billingAccountIds, status, dryRun: b.dryRun === true, actor } };
}

function filterOf(r: OperationRequest, status: string[]): RemittanceFilter {
  return { productTag: r.productTag, metric: r.metric, orgIds: r.orgIds, billingAccountIds: r.billingAccountIds, from: r.start, to: r.end, status };
}

async function selectAll(database: Database, f: RemittanceFilter): Promise<RemittanceItem[]> {
  const out: RemittanceItem[] = [];
  let cursor: string | undefined;
  do {
    const page = await listRemittances(database, f, { cursor, limit: 1000 });
    out.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return out;
}

const keyOf = (r: RemittanceItem): RemittanceKey => parseKeyString(r.key);

async function startCurrentHour(d: OperationDeps, keys: RemittanceKey[]): Promise<string[]> {
  if (!d.temporal || keys.length === 0) return [];
  return startRemittances({ ...d.temporal, time: d.time, database: d.database }, keys, hourStart((d.now ?? Date.now)(), d.time.hourMs));
}

function uniqueKeys(keys: RemittanceKey[]): RemittanceKey[] {
  return [...new Map(keys.map((k) => [keyString(k), k])).values()];
}

/**
 * Reset: void what was recorded as remitted in the range (Succeeded, Gratis, Unconfirmed), so it is billed
 * again in the current hour. Records still in flight (Pending, Sending) are never voided: their
 * send may still be accepted, and voiding them could bill twice.
 */
export async function resetRemittances(d: OperationDeps, r: OperationRequest): Promise<OperationResult> {
  const rows = await selectAll(d.database, filterOf(r, ['Succeeded', 'Gratis', 'Unconfirmed']));
  const changes = rows.map((x) => ({ key: keyOf(x), remittanceId: x.id, remittanceHour: new Date(x.remittanceHour).toISOString(), status: x.status, quantity: x.bill, claim: x.claim, action: 'void' }));
  let started: string[] = [];
  if (!r.dryRun && rows.length) {
    await withTransaction(d.database, (c) => voidRemittances(c, rows.map((x) => x.id), `reset by ${r.actor}`));
    started = await startCurrentHour(d, uniqueKeys(changes.map((c) => c.key)));
  }
  return finish(d, 'reset', r, changes, started);
}

/** Recalculate: recompute each key from current tallies and contracts; bill the difference now. */
export async function recalculateRemittances(d: OperationDeps, r: OperationRequest): Promise<OperationResult> {
  const params: unknown[] = [r.productTag, r.start, r.end, r.orgIds ?? null, r.billingAccountIds ?? null, r.metric ?? null];
  const res = await d.database.pool.query<{ key: string }>(
    `SELECT DISTINCT key FROM (
       SELECT key, org_id, billing_account_id, metric FROM tallies WHERE product_tag = $1 AND hour >= $2 AND hour < $3
       UNION SELECT key, org_id, billing_account_id, metric FROM remittances WHERE product_tag = $1 AND remittance_hour >= $2 AND remittance_hour < $3
     ) s WHERE ($4::text[] IS NULL OR org_id = ANY($4)) AND ($5::text[] IS NULL OR billing_account_id = ANY($5)) AND ($6::text IS NULL OR metric = $6) ORDER BY key`,
    params,
  );
  const keys = res.rows.map((x) => parseKeyString(x.key));
  const hour = hourStart((d.now ?? Date.now)(), d.time.hourMs);
  const changes: OperationChange[] = [];
  for (const key of keys) {
    const p = await previewRemittance(d.database, { key, remittanceHourMs: hour, catalog: d.catalog, time: d.time, nowMs: (d.now ?? Date.now)() });
    changes.push({ key, quantity: p.bill, status: p.status, action: p.bill > 0 ? 'bill-difference' : 'no-change' });
  }
  let started: string[] = [];
  if (!r.dryRun && keys.length) {
    await markKeysOwing(d.database.pool, keys.map(keyString));
    started = await startCurrentHour(d, keys);
  }
  return finish(d, 'recalculate', r, changes, started);
}

/**
 * Retry failed (or expired) remittances now. A failed hour whose workflow still waits for an
 * operator gets the `retry` signal (it recomputes and resends in its own hour while the
 * marketplace accepts it); otherwise the current hour's remittance of the key bills the amount.
 */
export async function retryRemittances(d: OperationDeps, r: OperationRequest): Promise<OperationResult> {
  const rows = await selectAll(d.database, filterOf(r, r.status ?? ['Failed']));
  const changes = rows.map((x) => ({ key: keyOf(x), remittanceId: x.id, remittanceHour: new Date(x.remittanceHour).toISOString(), status: x.status, quantity: x.bill, claim: x.claim, action: 'retry' }));
  const started: string[] = [];
  if (!r.dryRun && rows.length) {
    await resumeKeys(d.database.pool, uniqueKeys(changes.map((c) => c.key)).map(keyString)); // before the recomputations below
    const rest: RemittanceKey[] = [];
    for (const x of rows) {
      const signalled = d.temporal ? await signalIfWaiting(d.temporal.client, x.workflowId, r.actor) : false;
      if (signalled) started.push(x.workflowId);
      else rest.push(keyOf(x));
    }
    await markKeysOwing(d.database.pool, uniqueKeys(rest).map(keyString));
    started.push(...(await startCurrentHour(d, uniqueKeys(rest))));
  }
  return finish(d, 'retry', r, changes, started);
}

async function signalIfWaiting(client: Client, workflowId: string, actor: string): Promise<boolean> {
  try {
    const h = client.workflow.getHandle(workflowId);
    const desc = await h.describe();
    if (desc.status.name !== 'RUNNING') return false;
    await h.signal(retrySignal, { actor, reason: 'retry requested through the API' });
    return true;
  } catch {
    return false;
  }
}

async function finish(d: OperationDeps, action: OperationResult['action'], r: OperationRequest, changes: OperationChange[], started: string[]): Promise<OperationResult> {
  const request = { productTag: r.productTag, metric: r.metric, start: r.start.toISOString(), end: r.end.toISOString(), orgIds: r.orgIds, billingAccountIds: r.billingAccountIds, status: r.status };
  const auditId = await recordAudit(d.database.pool, {
    actor: r.actor,
    action,
    dryRun: r.dryRun,
    request,
    result: { changes: changes.length, quantity: changes.reduce((s, c) => s + c.quantity, 0), started: started.length },
  });
  return { action, dryRun: r.dryRun, changes, started, auditId };
}
