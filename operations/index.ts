// Operator actions: reset, recalculate, retry. Shared by the HTTP API and the `remit` CLI.
// Each one selects with the same filters, can preview (dry run: nothing changes), and is
// recorded in the audit trail (who, when, what, result), dry runs included.
//
// All three end the same way: the affected keys are marked owing, so the sweep that closes the
// current hour computes them and whatever is owed goes out in that hour's single record per
// marketplace customer and dimension. Nothing ever re-sends a past hour blind.

import type { Client } from '@temporalio/client';
import type { Database } from '../db/client';
import { previewRemittance, recordAudit, markKeysOwing, voidRemittances, withTransaction, type TimeSettings } from '../db/ledger';
import { resumeKeys } from '../db/parking';
import { keysWithActivity, listRemittances, type RemittanceFilter, type RemittanceItem } from '../db/reports';
import type { Catalog } from '../domain/catalog';
import { keyString, parseKeyString, type RemittanceKey } from '../domain/key';
import { RESETTABLE, RETRYABLE } from '../domain/lifecycle';
import { hourStart } from '../domain/time';
import { signalRetryIfRunning } from '../workflows/client';

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
  /** Past the per-request limits on purpose (`force: true`); recorded in the audit trail. */
  force: boolean;
  /** The credential that asked (e.g. `operator-token`): the audit trail's actor. */
  actor: string;
  /** Who the client says it is (the x-remit-actor header): an unverified note in the audit trail. */
  claimedBy?: string;
}

/**
 * Bounds of one request, so that a typo (a year instead of a day, every org) cannot void or
 * resend a whole ledger: at most `maxHours` remittance hours and `maxIds` org or account ids,
 * unless the request says `force: true`. Dry runs are bounded the same way: a preview must be
 * of the request that would run. Configured by REMIT_OPERATION_MAX_HOURS / REMIT_OPERATION_MAX_IDS.
 */
export interface OperationLimits {
  maxHours: number;
  maxIds: number;
}

export const DEFAULT_OPERATION_LIMITS: OperationLimits = { maxHours: 168, maxIds: 100 };

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
  /** Workflows of failed records signalled to retry in their own hour; empty on a dry run. */
  started: string[];
  /** Keys marked owing: the sweep that closes the current hour bills them. 0 on a dry run. */
  owing: number;
  auditId: number;
}

/** Parse and check an operator request body; returns a message per problem. */
export function parseOperationRequest(body: unknown, actor: string, opts: { withStatus?: boolean; limits?: OperationLimits; hourMs?: number; claimedBy?: string } = {}): { ok: true; value: OperationRequest } | { ok: false; errors: Array<{ field: string; message: string }> } {
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
    if (!s.every((x) => (RETRYABLE as readonly unknown[]).includes(x))) errors.push({ field: 'status', message: `status must be ${RETRYABLE.join(' or ')} (or a list of them)` });
    else status = s as string[];
  }
  if (b.force !== undefined && typeof b.force !== 'boolean') errors.push({ field: 'force', message: 'force must be a boolean' });
  const force = b.force === true;
  if (opts.limits && !force) {
    const { maxHours, maxIds } = opts.limits;
    const hours = (end.getTime() - start.getTime()) / (opts.hourMs ?? 3_600_000);
    if (hours > maxHours) errors.push({ field: 'end', message: `the range spans ${Math.ceil(hours)} remittance hours; at most ${maxHours} per request (REMIT_OPERATION_MAX_HOURS), or send force: true` });
    for (const [f, ids] of [['orgIds', orgIds], ['billingAccountIds', billingAccountIds]] as const) {
      if (ids && ids.length > maxIds) errors.push({ field: f, message: `${ids.length} ids; at most ${maxIds} per request (REMIT_OPERATION_MAX_IDS), or send force: true` });
    }
  }
  if (errors.length) return { ok: false, errors };
  return { ok: true, value: { productTag, metric: typeof b.metric === 'string' ? b.metric : undefined, start, end, orgIds, billingAccountIds, status, dryRun: b.dryRun === true, force, actor, claimedBy: opts.claimedBy } };
}

function filterOf(r: OperationRequest, status: readonly string[]): RemittanceFilter {
  return { productTag: r.productTag, metric: r.metric, orgIds: r.orgIds, billingAccountIds: r.billingAccountIds, from: r.start, to: r.end, status: [...status] };
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

function uniqueKeys(keys: RemittanceKey[]): RemittanceKey[] {
  return [...new Map(keys.map((k) => [keyString(k), k])).values()];
}

/**
 * Reset: void what was recorded as remitted in the range (RESETTABLE: Succeeded, Gratis, Unconfirmed), so it is billed
 * again in the current hour. Records still in flight (Pending, Sending) are never voided: their
 * send may still be accepted, and voiding them could bill twice.
 */
export async function resetRemittances(d: OperationDeps, r: OperationRequest): Promise<OperationResult> {
  const rows = await selectAll(d.database, filterOf(r, RESETTABLE));
  const changes = rows.map((x) => ({ key: keyOf(x), remittanceId: x.id, remittanceHour: new Date(x.remittanceHour).toISOString(), status: x.status, quantity: x.bill, claim: x.claim, action: 'void' }));
  let owing = 0;
  if (!r.dryRun && rows.length) {
    // Voiding marks the keys owing in the same transaction.
    await withTransaction(d.database, (c) => voidRemittances(c, rows.map((x) => x.id), `reset by ${r.actor}`));
    owing = uniqueKeys(changes.map((c) => c.key)).length;
  }
  return finish(d, 'reset', r, changes, [], owing);
}

/** Recalculate: recompute each key from current tallies and contracts; bill the difference now. */
export async function recalculateRemittances(d: OperationDeps, r: OperationRequest): Promise<OperationResult> {
  const keys = (await keysWithActivity(d.database, filterOf(r, []))).map(parseKeyString);
  const hour = hourStart((d.now ?? Date.now)(), d.time.hourMs);
  const changes: OperationChange[] = [];
  for (const key of keys) {
    const p = await previewRemittance(d.database, { key, remittanceHourMs: hour, catalog: d.catalog, time: d.time, nowMs: (d.now ?? Date.now)() });
    changes.push({ key, quantity: p.bill, status: p.status, action: p.bill > 0 ? 'bill-difference' : 'no-change' });
  }
  if (!r.dryRun && keys.length) await markKeysOwing(d.database.pool, keys.map(keyString));
  return finish(d, 'recalculate', r, changes, [], r.dryRun ? 0 : keys.length);
}

/**
 * Retry failed (or expired) remittances. A failed record whose workflow still waits for an
 * operator gets the `retry` signal (it recomputes and resends in its own hour while the
 * marketplace accepts it); otherwise the key is marked owing and the current hour's record
 * bills the amount.
 */
export async function retryRemittances(d: OperationDeps, r: OperationRequest): Promise<OperationResult> {
  const rows = await selectAll(d.database, filterOf(r, r.status ?? ['Failed']));
  const changes = rows.map((x) => ({ key: keyOf(x), remittanceId: x.id, remittanceHour: new Date(x.remittanceHour).toISOString(), status: x.status, quantity: x.bill, claim: x.claim, action: 'retry' }));
  const started = new Set<string>();
  const rest: RemittanceKey[] = [];
  if (!r.dryRun && rows.length) {
    await resumeKeys(d.database.pool, uniqueKeys(changes.map((c) => c.key)).map(keyString)); // before the recomputations below
    for (const x of rows) {
      const id = x.recordId ? x.workflowId : null;
      const signalled = id && (started.has(id) || (d.temporal && (await signalRetryIfRunning(d.temporal.client, id, { actor: r.actor, reason: 'retry requested through the API' }))));
      if (signalled) started.add(id);
      else rest.push(keyOf(x));
    }
    await markKeysOwing(d.database.pool, uniqueKeys(rest).map(keyString));
  }
  return finish(d, 'retry', r, changes, [...started], uniqueKeys(rest).length);
}

async function finish(d: OperationDeps, action: OperationResult['action'], r: OperationRequest, changes: OperationChange[], started: string[], owing: number): Promise<OperationResult> {
  const request = { productTag: r.productTag, metric: r.metric, start: r.start.toISOString(), end: r.end.toISOString(), orgIds: r.orgIds, billingAccountIds: r.billingAccountIds, status: r.status, ...(r.force ? { force: true } : {}), ...(r.claimedBy ? { claimedBy: r.claimedBy } : {}) };
  const auditId = await recordAudit(d.database.pool, {
    actor: r.actor,
    action,
    dryRun: r.dryRun,
    request,
    result: { changes: changes.length, quantity: changes.reduce((s, c) => s + c.quantity, 0), started: started.length, owing },
  });
  return { action, dryRun: r.dryRun, changes, started, owing, auditId };
}
