// The remittance ledger: the database side of every remittance decision.
//
// Exactly-once rests on three database facts, not on Temporal running one thing at a time:
// - every computation for a key holds that key's row lock (`SELECT ... FOR UPDATE` on
//   remittance_keys) from reading tallies and earlier claims to writing its own claim, so two
//   computations for one key (two windows closing together, a retry racing the next hour, two
//   workers) are serialized and the second sees the first's claim;
// - one remittance per key and hour (unique index): a retried activity finds its own row;
// - the intent to send (status Sending, attempts + 1) is committed before the marketplace call,
//   so a crash after the call is resolved by asking the marketplace, never by a blind re-send
//   of a different record.

import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { Database } from './client';
import { keyString, remittanceWorkflowId, type RemittanceKey } from '../domain/key';
import { monthOf, nextMonthStartMs, previousMonth } from '../domain/time';
import type { RemittanceStatus } from '../workflows/definitions';
import type { MarketplaceCustomer } from '../marketplaces/types';
import { decideRemittance, type PeriodDecision } from '../domain/remittance';
import type { Catalog } from '../domain/catalog';
import type { Contract } from '../domain/contracts';
import { NOT_REMITTED, RECOMPUTABLE, sourcesOf } from '../domain/lifecycle';
import type { TimeSettings } from '../config/env';
import { forgetLatePeriods, latePeriodsOf } from './late-periods';
import { NOT_PARKED, clearRejections, countRejection, holdIfParked } from './parking';

export { NOT_REMITTED };

export type { TimeSettings };

export interface RemittanceRow {
  id: string;
  key: string;
  billingProvider: string;
  billingAccountId: string;
  orgId: string;
  productTag: string;
  metric: string;
  sla: string;
  usage: string;
  remittanceHour: string;
  status: RemittanceStatus;
  bill: number;
  claim: string;
  dimension: string | null;
  customer: MarketplaceCustomer | null;
  licenseId: string | null;
  errorCode: string | null;
  reason: string | null;
  receiptId: string | null;
  attempts: number;
  /** An attempt began and has not come back (true after a crash mid-call). */
  attemptOpen: boolean;
  /** Some attempt may have reached the marketplace without a definite answer. */
  inDoubt: boolean;
  lastError: string | null;
  deadline: string | null;
  billedOn: string | null;
  workflowId: string;
  createdAt: string;
  updatedAt: string;
  periods: Array<{ period: string; bill: number; claim: string; mtd: string; coverage: string; gratis: boolean }>;
}

export interface ComputeOutcome {
  remittanceId: string;
  status: RemittanceStatus;
  bill: number;
  dimension: string | null;
  errorCode: string | null;
  reason: string | null;
  deadlineMs: number;
  /** True when the row already existed and was returned unchanged. */
  existing: boolean;
}

const ROW_COLUMNS = `r.id, r.key, r.billing_provider AS "billingProvider", r.billing_account_id AS "billingAccountId",
  r.org_id AS "orgId", r.product_tag AS "productTag", r.metric, r.sla, r.usage, r.remittance_hour AS "remittanceHour",
  r.status, r.bill, r.claim, r.dimension, r.customer, r.license_id AS "licenseId", r.error_code AS "errorCode",
  r.reason, r.receipt_id AS "receiptId", r.attempts, r.attempt_open AS "attemptOpen", r.in_doubt AS "inDoubt", r.last_error AS "lastError", r.deadline, r.billed_on AS "billedOn",
  r.workflow_id AS "workflowId", r.created_at AS "createdAt", r.updated_at AS "updatedAt"`;

export async function withTransaction<T>(database: Database, fn: (c: PoolClient) => Promise<T>): Promise<T> {
  const c = await database.pool.connect();
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

/** Make sure the key's row exists, then lock it for the rest of the transaction. */
export async function lockKey(c: PoolClient, key: RemittanceKey): Promise<{ changeSeq: number }> {
  const k = keyString(key);
  await c.query(
    `INSERT INTO remittance_keys (key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, change_seq, computed_seq)
     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,0,0) ON CONFLICT (key) DO NOTHING`,
    [k, key.billingProvider, key.billingAccountId, key.orgId, key.productTag, key.metric, key.sla, key.usage],
  );
  const r = await c.query<{ changeSeq: number }>('SELECT change_seq AS "changeSeq" FROM remittance_keys WHERE key = $1 FOR UPDATE', [k]);
  return r.rows[0]!;
}

/** Something changed that can change what a key owes: the hourly sweep will pick it up. */
export async function markKeysOwing(c: PoolClient | Database['pool'], keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  await c.query(
    `UPDATE remittance_keys SET change_seq = change_seq + 1, last_change_at = now()
     WHERE key IN (SELECT unnest($1::text[]) ORDER BY 1)`,
    [keys],
  );
}

export async function loadContractsFor(c: PoolClient | Database['pool'], key: RemittanceKey): Promise<Contract[]> {
  const r = await c.query(
    `SELECT contract_id AS "contractId", org_id AS "orgId", billing_provider AS "billingProvider",
            billing_account_id AS "billingAccountId", product_tag AS "productTag",
            start_date AS "startDate", end_date AS "endDate", license_id AS "licenseId", aws, azure, metrics
     FROM contracts WHERE org_id = $1 AND billing_provider = $2 AND billing_account_id = $3 AND product_tag = $4`,
    [key.orgId, key.billingProvider, key.billingAccountId, key.productTag],
  );
  return r.rows.map((row) => ({
    ...row,
    startDate: new Date(row.startDate).toISOString(),
    endDate: row.endDate ? new Date(row.endDate).toISOString() : null,
  })) as Contract[];
}

/**
 * Everything the pure decision needs for one key at one remittance hour, read inside the key's
 * lock. `excludeId` leaves out the row being recomputed (an operator retry of that hour).
 */
async function gatherPeriods(c: PoolClient, key: RemittanceKey, k: string, hourMs: number, remittanceHourMs: number, excludeId: string | null) {
  const current = monthOf(remittanceHourMs);
  // Current and previous month always; older months only while they hold an amount that did
  // not reach the marketplace (failed / expired / voided) or usage that waited for a contract, so
  // such an amount is never dropped.
  // And months that received late usage since the key's last computation (issue 9: usage of any
  // earlier month is billed, up to REMIT_MAX_USAGE_AGE_DAYS, without a full-history scan).
  const older = await c.query<{ period: string }>(
    `SELECT DISTINCT p.period FROM remittance_parts p JOIN remittances r ON r.id = p.remittance_id
     WHERE p.key = $1 AND (r.status = ANY($2) OR r.status = 'WaitingForContract') AND p.period < $3
     UNION SELECT ${latePeriodsOf('$1', '$4')}`,
    [k, NOT_REMITTED, previousMonth(current), current],
  );
  const periods = [...new Set([previousMonth(current), current, ...older.rows.map((r) => r.period)])].sort();
  const out = [];
  for (const period of periods) {
    // MTD through the remittance hour (current month) or through the month's last hour.
    const evaluatedAtMs = Math.min(remittanceHourMs, nextMonthStartMs(period) - hourMs);
    const mtd = await c.query<{ mtd: string; n: string }>(
      `SELECT COALESCE(SUM(value), 0)::text AS mtd, COUNT(*)::text AS n FROM tallies WHERE key = $1 AND period = $2 AND hour <= $3`,
      [k, period, new Date(evaluatedAtMs)],
    );
    // The claim (metric units) too: billing.md counts what was remitted in metric units, so a
    // billing factor changed mid-month re-values the month's earlier claims (domain/billing.ts).
    const earlier = await c.query<{ status: RemittanceStatus; bill: number; claim: string; gratis: boolean }>(
      `SELECT r.status, p.bill, p.claim::text AS claim, p.gratis FROM remittance_parts p JOIN remittances r ON r.id = p.remittance_id
       WHERE p.key = $1 AND p.period = $2 AND ($3::text IS NULL OR r.id <> $3)`,
      [k, period, excludeId],
    );
    if (mtd.rows[0]!.n === '0' && earlier.rows.length === 0) continue;
    out.push({ period, evaluatedAtMs, mtd: mtd.rows[0]!.mtd, earlier: earlier.rows });
  }
  return out;
}

export interface ComputeArgs {
  key: RemittanceKey;
  remittanceHourMs: number;
  /** initial: the hour's first computation; retry: an operator asked to recompute this hour. */
  mode: 'initial' | 'retry';
  workflowId?: string;
  catalog: Catalog;
  time: TimeSettings;
  nowMs: number;
}

/** Compute (or return) the single remittance of a key and hour, under the key's lock. */
export async function computeRemittance(database: Database, a: ComputeArgs): Promise<ComputeOutcome> {
  return withTransaction(database, (c) => computeInTransaction(c, a, false));
}

/** The same computation, rolled back: what would be billed now (dry runs). */
export async function previewRemittance(database: Database, a: Omit<ComputeArgs, 'mode'>): Promise<{ bill: number; status: RemittanceStatus; periods: PeriodDecision[] }> {
  const c = await database.pool.connect();
  try {
    await c.query('BEGIN');
    const out = await computeInTransaction(c, { ...a, mode: 'initial' }, true);
    return { bill: out.bill, status: out.status, periods: out.periods };
  } finally {
    await c.query('ROLLBACK').catch(() => undefined);
    c.release();
  }
}

async function computeInTransaction(c: PoolClient, a: ComputeArgs, dryRun: boolean): Promise<ComputeOutcome & { periods: PeriodDecision[] }> {
  const k = keyString(a.key);
  const { changeSeq } = await lockKey(c, a.key);
  const hour = new Date(a.remittanceHourMs);
  const deadlineMs = a.remittanceHourMs + a.time.hourMs * (a.time.acceptanceHours[a.key.billingProvider] ?? 6);
  const found = await c.query<RemittanceRow>(`SELECT ${ROW_COLUMNS} FROM remittances r WHERE r.key = $1 AND r.remittance_hour = $2`, [k, hour]);
  const existing = dryRun ? undefined : found.rows[0];
  if (existing) {
    const recomputable = a.mode === 'retry' && RECOMPUTABLE.includes(existing.status) && a.nowMs < deadlineMs;
    if (!recomputable) {
      return { remittanceId: existing.id, status: existing.status, bill: existing.bill, dimension: existing.dimension, errorCode: existing.errorCode, reason: existing.reason, deadlineMs, existing: true, periods: [] };
    }
  }

  const contracts = await loadContractsFor(c, a.key);
  const periods = await gatherPeriods(c, a.key, k, a.time.hourMs, a.remittanceHourMs, existing?.id ?? null);
  const decision = await holdIfParked(c, k, decideRemittance({ key: a.key, catalog: a.catalog, contracts, periods }), a.mode, dryRun);

  const id = existing?.id ?? randomUUID();
  if (dryRun) {
    return { remittanceId: id, status: decision.status, bill: decision.bill, dimension: decision.dimension, errorCode: decision.errorCode, reason: decision.reason, deadlineMs, existing: false, periods: decision.periods };
  }
  const values = [
    id, k, a.key.billingProvider, a.key.billingAccountId, a.key.orgId, a.key.productTag, a.key.metric, a.key.sla, a.key.usage,
    hour, decision.status, decision.bill, decision.claim, decision.dimension, decision.customer ? JSON.stringify(decision.customer) : null,
    decision.licenseId, decision.errorCode, decision.reason, new Date(deadlineMs), a.workflowId ?? remittanceWorkflowId(a.key, a.remittanceHourMs),
  ];
  if (existing) {
    await c.query('DELETE FROM remittance_parts WHERE remittance_id = $1', [id]);
    await c.query(
      `UPDATE remittances SET status=$2, bill=$3, claim=$4, dimension=$5, customer=$6, license_id=$7, error_code=$8, reason=$9,
         deadline=$10, workflow_id=$11, last_error=NULL, updated_at=now() WHERE id=$1`,
      [id, ...values.slice(10)],
    );
  } else {
    await c.query(
      `INSERT INTO remittances (id, key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage,
         remittance_hour, status, bill, claim, dimension, customer, license_id, error_code, reason, deadline, workflow_id)
       VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)`,
      values,
    );
  }
  // Waiting months are recorded too (bill 0): they are what brings an old month back into the
  // computation once a contract arrives, however late.
  for (const p of decision.periods.filter((p) => p.bill > 0 || p.gratis || p.kind === 'waiting_for_contract')) {
    await c.query(
      `INSERT INTO remittance_parts (remittance_id, key, period, bill, claim, mtd, coverage, gratis) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
      [id, k, p.period, p.bill, p.claim, p.mtd, p.coverage, p.gratis],
    );
  }
  await forgetLatePeriods(c, k, monthOf(a.remittanceHourMs));
  // The computation has seen every change up to now. A failure of this record later marks the
  // key owing again (markOutcome). Only the key's newest hour may say so: a recomputation of an
  // older hour (an operator retry) sees usage only up to that hour, so a later hour's failure it
  // does not bill must stay owing for the sweep.
  // Likewise usage of later tally hours (stored during this hour's grace) is not billed here.
  await c.query(
    `UPDATE remittance_keys SET computed_seq = $2 WHERE key = $1
       AND NOT EXISTS (SELECT 1 FROM remittances WHERE key = $1 AND remittance_hour > $3)
       AND NOT EXISTS (SELECT 1 FROM tallies WHERE key = $1 AND hour > $3)`,
    [k, changeSeq, hour],
  );
  return { remittanceId: id, status: decision.status, bill: decision.bill, dimension: decision.dimension, errorCode: decision.errorCode, reason: decision.reason, deadlineMs, existing: false, periods: decision.periods };
}

export async function getRemittance(database: Database | PoolClient, id: string): Promise<RemittanceRow | undefined> {
  const q = 'pool' in database ? database.pool : database;
  const r = await q.query<RemittanceRow>(`SELECT ${ROW_COLUMNS} FROM remittances r WHERE r.id = $1`, [id]);
  return r.rows[0];
}

/** Record the intent to send before calling the marketplace. Returns the state before. */
export async function markSending(database: Database, id: string): Promise<{ row: RemittanceRow; wasInFlight: boolean } | undefined> {
  return withTransaction(database, async (c) => {
    const r = await c.query<RemittanceRow>(`SELECT ${ROW_COLUMNS} FROM remittances r WHERE r.id = $1 FOR UPDATE`, [id]);
    const row = r.rows[0];
    if (!row) return undefined;
    if (!sourcesOf('Sending').includes(row.status)) return { row, wasInFlight: false };
    // An attempt still open means the previous one died mid-call: it may have reached the
    // marketplace, and nothing but the marketplace can say.
    const inDoubt = row.inDoubt || row.attemptOpen;
    await c.query(`UPDATE remittances SET status='Sending', attempts = attempts + 1, attempt_open = false, in_doubt = $2, updated_at = now() WHERE id = $1`, [id, inDoubt]);
    return { row: { ...row, status: 'Sending', attempts: row.attempts + 1, attemptOpen: false, inDoubt }, wasInFlight: row.status === 'Sending' };
  });
}

export type Outcome =
  | { status: 'Succeeded'; receiptId: string }
  | { status: 'Failed' | 'Expired' | 'Unconfirmed'; errorCode: string; reason: string };

/**
 * Record a final marketplace outcome. Only a row still in flight changes (a late duplicate of
 * an outcome cannot overwrite an operator's void). A failed or expired amount stops counting as
 * remitted and the key is marked owing, so a later hour bills it.
 */
export async function markOutcome(database: Database, id: string, o: Outcome): Promise<RemittanceRow | undefined> {
  return withTransaction(database, async (c) => {
    if (o.status === 'Succeeded') {
      await c.query(
        `UPDATE remittances SET status='Succeeded', receipt_id=$2, billed_on=now(), error_code=NULL, reason=NULL, attempt_open=false, updated_at=now()
         WHERE id=$1 AND status = ANY($3)`,
        [id, o.receiptId, sourcesOf('Succeeded')],
      );
      await clearRejections(c, id);
    } else {
      const r = await c.query<{ key: string }>(
        `UPDATE remittances SET status=$2, error_code=$3, reason=$4, attempt_open=false, updated_at=now() WHERE id=$1 AND status = ANY($5) RETURNING key`,
        [id, o.status, o.errorCode, o.reason, sourcesOf(o.status).filter((s) => s === 'Pending' || s === 'Sending')],
      );
      // An unconfirmed amount still counts as remitted: billing it again could bill it twice.
      if (o.status !== 'Unconfirmed') await markKeysOwing(c, r.rows.map((x) => x.key));
      if (o.status === 'Failed') await countRejection(c, r.rows.map((x) => x.key), o);
    }
    return getRemittance(c, id);
  });
}

/** The record's call is about to go out: from here on, a crash leaves the send in doubt. */
export async function markDispatched(database: Database, id: string): Promise<void> {
  await database.pool.query(`UPDATE remittances SET attempt_open = true WHERE id = $1 AND status = 'Sending'`, [id]);
}

/** An attempt came back without a final answer; `lost` when it may have been recorded anyway. */
export async function recordAttemptError(database: Database, id: string, message: string, lost: boolean): Promise<void> {
  await database.pool.query('UPDATE remittances SET last_error=$2, attempt_open=false, in_doubt = in_doubt OR $3, updated_at=now() WHERE id=$1', [id, message.slice(0, 2000), lost]);
}

/** Void remittances (operator reset): their amounts are billed again by a later hour. */
export async function voidRemittances(c: PoolClient, ids: string[], reason: string): Promise<number> {
  if (ids.length === 0) return 0;
  const r = await c.query<{ key: string }>(
    `UPDATE remittances SET status='Voided', reason=$2, updated_at=now() WHERE id = ANY($1) AND status = ANY($3) RETURNING key`,
    [ids, reason, sourcesOf('Voided')],
  );
  await markKeysOwing(c, [...new Set(r.rows.map((x) => x.key))]);
  return r.rowCount ?? 0;
}

/**
 * Keys whose owed amount changed since their last computation, and that no started workflow is
 * still about to compute: a workflow for hour S computes at S + hour x (1 + grace). So a key
 * ingested during hour R (workflow R started) is not swept at R + 1; a key still owing after its
 * last scheduled computation (a failure recorded later, usage of a later hour whose workflow the
 * API could not start) is.
 */
export async function findOwingKeys(database: Database, time: Pick<TimeSettings, 'hourMs' | 'graceHours'>, limit: number, afterKey = ''): Promise<RemittanceKey[]> {
  const r = await database.pool.query<RemittanceKey>(
    `SELECT billing_provider AS "billingProvider", billing_account_id AS "billingAccountId", org_id AS "orgId",
            product_tag AS "productTag", metric, sla, usage
     FROM remittance_keys
     WHERE change_seq > computed_seq AND key > $1 AND ${NOT_PARKED}
       AND (scheduled_hour IS NULL OR scheduled_hour + make_interval(secs => $3) <= now())
     ORDER BY key LIMIT $2`,
    [afterKey, limit, (time.hourMs * (1 + time.graceHours)) / 1000],
  );
  return r.rows;
}

/** Remember that the remittance of these keys for `hourMs` has been started. */
export async function markScheduled(q: Database['pool'] | PoolClient, keys: string[], hourMs: number): Promise<void> {
  if (keys.length === 0) return;
  await q.query(
    `UPDATE remittance_keys SET scheduled_hour = GREATEST(COALESCE(scheduled_hour, $2), $2) WHERE key = ANY($1::text[])`,
    [keys, new Date(hourMs)],
  );
}

export async function recordAudit(q: Database['pool'] | PoolClient, e: { actor: string; action: string; dryRun?: boolean; request: unknown; result?: unknown }): Promise<number> {
  const r = await q.query<{ id: number }>(
    'INSERT INTO audit_log (actor, action, dry_run, request, result) VALUES ($1,$2,$3,$4,$5) RETURNING id',
    [e.actor, e.action, e.dryRun ?? false, JSON.stringify(e.request ?? null), e.result === undefined ? null : JSON.stringify(e.result)],
  );
  return r.rows[0]!.id;
}

export { ROW_COLUMNS };
