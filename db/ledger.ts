// The remittance ledger: the database side of every remittance decision.
//
// Exactly-once rests on four database facts, not on Temporal running one thing at a time:
// - every computation for a key holds that key's row lock (`SELECT ... FOR UPDATE` on
//   remittance_keys) from reading tallies and earlier claims to writing its own claim, so two
//   computations for one key (an operator retry racing the next hour, two workers) are
//   serialized and the second sees the first's claim;
// - one remittance per key and hour (unique index): a retried activity finds its own row;
// - one marketplace record per identity and hour (unique index, the marketplace's own rule): the
//   keys that bill one customer and dimension are computed together and their bills summed into
//   it, in the same transaction;
// - the intent to send (status Sending, attempts + 1) is committed before the marketplace call,
//   so a crash after the call is resolved by asking the marketplace, never by a blind re-send
//   of a different record.

import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { Database } from './client';
import { keyString, parseKeyString, type Marketplace, type RemittanceKey } from '../domain/key';
import { recordIdentity } from '../domain/record';
import { recordWorkflowId, unsentWorkflowId } from '../workflows/definitions';
import { monthOf, nextMonthStartMs, previousMonth } from '../domain/time';
import type { RemittanceStatus } from '../domain/lifecycle';
import type { MarketplaceCustomer } from '../domain/record';
import { decideRemittance, type PeriodDecision, type PeriodInput, type RecordDecision } from '../domain/remittance';
import { MAX_BILL, type EarlierRemittance } from '../domain/billing';
import type { Catalog } from '../domain/catalog';
import type { Contract } from '../domain/contracts';
import { NOT_REMITTED, RECOMPUTABLE, sourcesOf } from '../domain/lifecycle';
import type { TimeSettings } from '../config/env';
import { forgetLatePeriods, forgetLatePeriodsMany, latePeriodsOf } from './late-periods';
import { NOT_PARKED, countRejection, holdIfParked, holdParked } from './parking';

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
  deadline: string | null;
  billedOn: string | null;
  /** The marketplace record its bill travels in (null: it sends nothing). */
  recordId: string | null;
  /** Send attempts of its record (0 without one). */
  attempts: number;
  /** The record's last error of a send attempt that did not go through. */
  lastError: string | null;
  workflowId: string | null;
  createdAt: string;
  updatedAt: string;
  periods: Array<{ period: string; bill: number; claim: string; mtd: string; coverage: string; gratis: boolean }>;
}

/** A marketplace record: one customer, dimension and hour, the sum of its remittances' bills. */
export interface RecordRow {
  id: string;
  marketplace: Marketplace;
  identity: string;
  remittanceHour: string;
  customer: MarketplaceCustomer;
  dimension: string;
  quantity: number;
  status: RemittanceStatus;
  errorCode: string | null;
  reason: string | null;
  receiptId: string | null;
  attempts: number;
  /** An attempt began and has not come back (true after a crash mid-call). */
  attemptOpen: boolean;
  /** Some attempt may have reached the marketplace without a definite answer. */
  inDoubt: boolean;
  lastError: string | null;
  deadline: string;
  workflowId: string;
}

const ROW_COLUMNS = `r.id, r.key, r.billing_provider AS "billingProvider", r.billing_account_id AS "billingAccountId",
  r.org_id AS "orgId", r.product_tag AS "productTag", r.metric, r.sla, r.usage, r.remittance_hour AS "remittanceHour",
  r.status, r.bill, r.claim, r.dimension, r.customer, r.license_id AS "licenseId", r.error_code AS "errorCode",
  r.reason, r.receipt_id AS "receiptId", r.deadline, r.billed_on AS "billedOn", r.record_id AS "recordId",
  COALESCE(m.attempts, 0) AS attempts, m.last_error AS "lastError",
  r.workflow_id AS "workflowId", r.created_at AS "createdAt", r.updated_at AS "updatedAt"`;
/** FROM clause for ROW_COLUMNS: a remittance with its record's send state. */
const ROW_FROM = 'remittances r LEFT JOIN marketplace_records m ON m.id = r.record_id';

const RECORD_COLUMNS = `id, marketplace, identity, remittance_hour AS "remittanceHour", customer, dimension, quantity, status,
  error_code AS "errorCode", reason, receipt_id AS "receiptId", attempts, attempt_open AS "attemptOpen", in_doubt AS "inDoubt",
  last_error AS "lastError", deadline, workflow_id AS "workflowId"`;

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

/** What a computation reads of a key under its lock. */
interface LockedKey {
  changeSeq: number;
  parked: { at: Date; reason: string } | null;
}

/**
 * Make sure the keys' rows exist, then lock them, in key order (every locker takes keys in that
 * order, so two computations never wait on each other in a cycle), for the rest of the transaction.
 */
export async function lockKeys(c: PoolClient, keys: RemittanceKey[]): Promise<Map<string, LockedKey>> {
  const sorted = [...new Map(keys.map((k) => [keyString(k), k])).entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  const col = (f: (k: RemittanceKey) => string) => sorted.map(([, k]) => f(k));
  await c.query(
    `INSERT INTO remittance_keys (key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, change_seq, computed_seq)
     SELECT *, 0, 0 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) ORDER BY 1
     ON CONFLICT (key) DO NOTHING`,
    [sorted.map(([k]) => k), col((k) => k.billingProvider), col((k) => k.billingAccountId), col((k) => k.orgId), col((k) => k.productTag), col((k) => k.metric), col((k) => k.sla), col((k) => k.usage)],
  );
  const r = await c.query<{ key: string; changeSeq: number; parkedAt: Date | null; parkedReason: string | null }>(
    `SELECT key, change_seq AS "changeSeq", parked_at AS "parkedAt", parked_reason AS "parkedReason"
     FROM remittance_keys WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE`,
    [sorted.map(([k]) => k)],
  );
  return new Map(r.rows.map((x) => [x.key, { changeSeq: x.changeSeq, parked: x.parkedAt ? { at: x.parkedAt, reason: x.parkedReason ?? '' } : null }]));
}

/** Make sure the key's row exists, then lock it for the rest of the transaction. */
export async function lockKey(c: PoolClient, key: RemittanceKey): Promise<LockedKey> {
  return (await lockKeys(c, [key])).get(keyString(key))!;
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

const CONTRACT_COLUMNS = `contract_id AS "contractId", org_id AS "orgId", billing_provider AS "billingProvider",
  billing_account_id AS "billingAccountId", product_tag AS "productTag",
  start_date AS "startDate", end_date AS "endDate", license_id AS "licenseId", aws, azure, metrics`;

function toContract(row: Record<string, unknown>): Contract {
  return { ...row, startDate: new Date(row.startDate as string).toISOString(), endDate: row.endDate ? new Date(row.endDate as string).toISOString() : null } as Contract;
}

export async function loadContractsFor(c: PoolClient | Database['pool'], key: RemittanceKey): Promise<Contract[]> {
  const r = await c.query(
    `SELECT ${CONTRACT_COLUMNS} FROM contracts WHERE org_id = $1 AND billing_provider = $2 AND billing_account_id = $3 AND product_tag = $4`,
    [key.orgId, key.billingProvider, key.billingAccountId, key.productTag],
  );
  return r.rows.map(toContract);
}

/**
 * Everything the pure decision needs for some keys at one remittance hour, read inside their
 * locks, in three statements whatever the number of keys. `excludeId` leaves out the row being
 * recomputed (an operator retry of that hour).
 */
async function gatherPeriodsMany(c: PoolClient, ks: string[], hourMs: number, remittanceHourMs: number, excludeId: string | null): Promise<Map<string, PeriodInput[]>> {
  const current = monthOf(remittanceHourMs);
  // Current and previous month always; older months only while they hold an amount that did
  // not reach the marketplace (failed / expired / voided) or usage that waited for a contract, so
  // such an amount is never dropped.
  // And months that received late usage since the key's last computation (issue 9: usage of any
  // earlier month is billed, up to REMIT_MAX_USAGE_AGE_DAYS, without a full-history scan).
  const older = await c.query<{ key: string; period: string }>(
    `SELECT DISTINCT p.key, p.period FROM remittance_parts p JOIN remittances r ON r.id = p.remittance_id
     WHERE p.key = ANY($1::text[]) AND (r.status = ANY($2) OR r.status = 'WaitingForContract') AND p.period < $3
     UNION SELECT ${latePeriodsOf('ANY($1::text[])', '$4')}`,
    [ks, NOT_REMITTED, previousMonth(current), current],
  );
  const periodsOf = new Map(ks.map((k) => [k, new Set([previousMonth(current), current])]));
  for (const r of older.rows) periodsOf.get(r.key)?.add(r.period);
  // MTD through the remittance hour (current month) or through the month's last hour.
  const wanted = [...periodsOf].flatMap(([key, ps]) => [...ps].sort().map((period) => ({ key, period, evaluatedAtMs: Math.min(remittanceHourMs, nextMonthStartMs(period) - hourMs) })));
  const keysCol = wanted.map((w) => w.key);
  const periodsCol = wanted.map((w) => w.period);
  const mtd = await c.query<{ key: string; period: string; mtd: string; n: number }>(
    `SELECT q.key, q.period, COALESCE(SUM(t.value), 0)::text AS mtd, COUNT(t.value)::int AS n
     FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS q(key, period, upto)
     LEFT JOIN tallies t ON t.key = q.key AND t.period = q.period AND t.hour <= q.upto
     GROUP BY q.key, q.period`,
    [keysCol, periodsCol, wanted.map((w) => new Date(w.evaluatedAtMs).toISOString())],
  );
  // The claim (metric units) too: billing.md counts what was remitted in metric units, so a
  // billing factor changed mid-month re-values the month's earlier claims (domain/billing.ts).
  const earlier = await c.query<{ key: string; period: string; status: RemittanceStatus; bill: number; claim: string; gratis: boolean }>(
    `SELECT p.key, p.period, r.status, p.bill, p.claim::text AS claim, p.gratis
     FROM unnest($1::text[], $2::text[]) AS q(key, period)
     JOIN remittance_parts p ON p.key = q.key AND p.period = q.period JOIN remittances r ON r.id = p.remittance_id
     WHERE $3::text IS NULL OR r.id <> $3`,
    [keysCol, periodsCol, excludeId],
  );
  const at = (key: string, period: string) => `${key}\u0000${period}`;
  const mtdOf = new Map(mtd.rows.map((r) => [at(r.key, r.period), r]));
  const earlierOf = new Map<string, EarlierRemittance[]>();
  for (const { key, period, ...e } of earlier.rows) earlierOf.set(at(key, period), [...(earlierOf.get(at(key, period)) ?? []), e]);
  const out = new Map<string, PeriodInput[]>(ks.map((k) => [k, []]));
  for (const w of wanted) {
    const m = mtdOf.get(at(w.key, w.period));
    const e = earlierOf.get(at(w.key, w.period)) ?? [];
    if (!m?.n && e.length === 0) continue;
    out.get(w.key)!.push({ period: w.period, evaluatedAtMs: w.evaluatedAtMs, mtd: m?.mtd ?? '0', earlier: e });
  }
  return out;
}

async function gatherPeriods(c: PoolClient, k: string, hourMs: number, remittanceHourMs: number, excludeId: string | null): Promise<PeriodInput[]> {
  return (await gatherPeriodsMany(c, [k], hourMs, remittanceHourMs, excludeId)).get(k)!;
}

export interface ComputeSettings {
  catalog: Catalog;
  time: TimeSettings;
  nowMs: number;
}

/** Where a group of keys goes: one marketplace record (customer and dimension), or none. */
export type GroupTarget = { customer: MarketplaceCustomer; dimension: string } | null;

/** One key computed for an hour. */
export interface ComputedRemittance {
  key: RemittanceKey;
  remittanceId: string;
  status: RemittanceStatus;
  bill: number;
  errorCode: string | null;
  reason: string | null;
  workflowId: string | null;
}

export interface GroupOutcome {
  /** Keys computed now (keys already computed for the hour are not repeated). */
  computed: ComputedRemittance[];
  /** Keys left owing for a later hour: their record for this hour was already made. */
  deferred: RemittanceKey[];
  /** The record made for the hour, if any key had something to send. */
  record: RecordRow | null;
}

function deadlineOf(key: Pick<RemittanceKey, 'billingProvider'>, hourMs: number, time: TimeSettings): number {
  return hourMs + time.hourMs * (time.acceptanceHours[key.billingProvider] ?? 6);
}

/** One group of keys to compute: the owing keys whose usage goes to one record, or to none. */
export interface KeyGroup {
  keys: RemittanceKey[];
  target: GroupTarget;
}

/**
 * Compute, for remittance hour `hourMs`, every key of one group: the owing keys whose usage goes
 * to one marketplace record (`target`), or to none (`target` null: no contract says where, or
 * the metric has no dimension there). In one transaction, under every key's lock (taken in key
 * order): each key's remittance and parts, and the record whose quantity is the sum of their
 * bills. A key whose record turns out to be another (a contract changed since the group was
 * formed), or whose record for this hour already exists, is left owing for the next hour.
 */
export async function computeGroup(database: Database, a: ComputeSettings & KeyGroup & { hourMs: number }): Promise<GroupOutcome> {
  return (await computeGroups(database, { ...a, groups: [{ keys: a.keys, target: a.target }] }))[0]!;
}

/**
 * computeGroup for many groups in one transaction, with set-based statements (a dozen whatever
 * the number of keys, instead of a dozen per key): an hour's close of thousands of one-key groups
 * (a seller with many customers) is otherwise bound by round trips. The rules per group are
 * computeGroup's.
 */
export async function computeGroups(database: Database, a: ComputeSettings & { groups: KeyGroup[]; hourMs: number }): Promise<GroupOutcome[]> {
  return withTransaction(database, async (c) => {
    const hour = new Date(a.hourMs);
    const all = a.groups.flatMap((g) => g.keys);
    const ks = [...new Set(all.map(keyString))];
    const locked = await lockKeys(c, all);
    const identities = a.groups.flatMap((g) => (g.target ? [recordIdentity(g.target.customer, g.target.dimension)] : []));
    const made = new Set(
      (await c.query<{ identity: string }>('SELECT identity FROM marketplace_records WHERE identity = ANY($1::text[]) AND remittance_hour = $2', [identities, hour])).rows.map((r) => r.identity),
    );
    const existing = new Set((await c.query<{ key: string }>('SELECT key FROM remittances WHERE key = ANY($1::text[]) AND remittance_hour = $2', [ks, hour])).rows.map((r) => r.key));
    const usageAfter = new Set((await c.query<{ key: string }>('SELECT DISTINCT key FROM tallies WHERE key = ANY($1::text[]) AND hour > $2', [ks, hour])).rows.map((r) => r.key));
    const contractsOf = await loadContractsForScopes(c, all);
    const periodsOf = await gatherPeriodsMany(c, ks.filter((k) => !existing.has(k)), a.time.hourMs, a.hourMs, null);

    const outcomes: GroupOutcome[] = [];
    const records: Array<{ id: string; target: NonNullable<GroupTarget>; identity: string; quantity: number; deadlineMs: number; workflowId: string }> = [];
    const rows: Array<{ id: string; key: RemittanceKey; decision: RecordDecision; deadlineMs: number; recordId: string | null; workflowId: string | null }> = [];
    for (const g of a.groups) {
      const keys = [...g.keys].sort((x, y) => (keyString(x) < keyString(y) ? -1 : 1));
      const identity = g.target ? recordIdentity(g.target.customer, g.target.dimension) : null;
      if (identity && made.has(identity)) {
        outcomes.push({ computed: [], deferred: keys, record: null });
        continue;
      }
      const recordId = identity ? randomUUID() : null;
      const recordWorkflow = g.target ? recordWorkflowId(g.target.customer, g.target.dimension, a.hourMs) : null;
      const deferred: RemittanceKey[] = [];
      const writes: Array<{ key: RemittanceKey; decision: RecordDecision }> = [];
      for (const key of keys) {
        const k = keyString(key);
        if (existing.has(k)) continue;
        // A parked key (repeated terminal rejections, db/parking.ts) sends nothing; its amount stays owed.
        const decision = holdParked(decideRemittance({ key, catalog: a.catalog, contracts: contractsOf(key), periods: periodsOf.get(k)!, remittanceHourMs: a.hourMs }), locked.get(k)!.parked);
        if (decision.status === 'Pending' && (!decision.customer || !decision.dimension || recordIdentity(decision.customer, decision.dimension) !== identity)) {
          deferred.push(key);
          continue;
        }
        // Usage stored during this hour's grace for the next hour is that hour's business: a key
        // with nothing due through this hour but usage after it gets no row now (it stays owing).
        if (decision.status === 'NothingDue' && usageAfter.has(k)) continue;
        writes.push({ key, decision });
      }
      // One record carries at most MAX_BILL units (AWS's limit, the column's type): keys beyond it
      // wait for the next hour's record.
      let quantity = 0;
      const kept: typeof writes = [];
      for (const w of writes) {
        if (w.decision.status === 'Pending' && quantity + w.decision.bill > MAX_BILL) {
          deferred.push(w.key);
          continue;
        }
        if (w.decision.status === 'Pending') quantity += w.decision.bill;
        kept.push(w);
      }
      const sending = kept.filter((w) => w.decision.status === 'Pending');
      const hasRecord = recordId !== null && identity !== null && g.target !== null && sending.length > 0;
      if (hasRecord) {
        made.add(identity);
        records.push({ id: recordId, target: g.target!, identity, quantity, deadlineMs: deadlineOf(sending[0]!.key, a.hourMs, a.time), workflowId: recordWorkflow! });
      }
      const computed: ComputedRemittance[] = [];
      for (const w of kept) {
        const d = w.decision;
        const shown = d.status === 'Pending' ? recordWorkflow : d.status === 'Failed' || d.status === 'WaitingForContract' ? unsentWorkflowId(w.key, a.hourMs) : null;
        const id = randomUUID();
        rows.push({ id, key: w.key, decision: d, deadlineMs: deadlineOf(w.key, a.hourMs, a.time), recordId: d.status === 'Pending' ? recordId : null, workflowId: shown });
        computed.push({ key: w.key, remittanceId: id, status: d.status, bill: d.bill, errorCode: d.errorCode, reason: d.reason, workflowId: shown });
      }
      outcomes.push({ computed, deferred, record: hasRecord ? ({ id: recordId } as RecordRow) : null });
    }

    const inserted = await insertRecords(c, records, hour);
    for (const o of outcomes) if (o.record) o.record = inserted.get(o.record.id)!;
    await insertRemittances(c, rows, a.hourMs);
    const written = [...new Set(rows.map((r) => keyString(r.key)))];
    await forgetLatePeriodsMany(c, written, monthOf(a.hourMs));
    await advanceComputedSeqs(c, written.map((k) => ({ key: k, changeSeq: locked.get(k)!.changeSeq })), hour);
    return outcomes;
  });
}

async function insertRecords(c: PoolClient, records: Array<{ id: string; target: NonNullable<GroupTarget>; identity: string; quantity: number; deadlineMs: number; workflowId: string }>, hour: Date): Promise<Map<string, RecordRow>> {
  if (records.length === 0) return new Map();
  const r = await c.query<RecordRow>(
    `INSERT INTO marketplace_records (id, marketplace, identity, remittance_hour, customer, dimension, quantity, status, deadline, workflow_id)
     SELECT x.id, x.marketplace, x.identity, $1, x.customer, x.dimension, x.quantity, 'Pending', x.deadline, x.workflow_id
     FROM jsonb_to_recordset($2::jsonb) AS x(id text, marketplace text, identity text, customer jsonb, dimension text, quantity int, deadline timestamptz, workflow_id text)
     RETURNING ${RECORD_COLUMNS}`,
    [
      hour,
      JSON.stringify(records.map((x) => ({ id: x.id, marketplace: x.target.customer.marketplace, identity: x.identity, customer: x.target.customer, dimension: x.target.dimension, quantity: x.quantity, deadline: new Date(x.deadlineMs).toISOString(), workflow_id: x.workflowId }))),
    ],
  );
  return new Map(r.rows.map((x) => [x.id, x]));
}

/** Remittances and their parts, all in two statements. */
async function insertRemittances(c: PoolClient, rows: Array<{ id: string; key: RemittanceKey; decision: RecordDecision; deadlineMs: number; recordId: string | null; workflowId: string | null }>, hourMs: number): Promise<void> {
  if (rows.length === 0) return;
  await c.query(
    `INSERT INTO remittances (id, key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage,
       remittance_hour, status, bill, claim, dimension, customer, license_id, error_code, reason, deadline, record_id, workflow_id)
     SELECT x.id, x.key, x.billing_provider, x.billing_account_id, x.org_id, x.product_tag, x.metric, x.sla, x.usage,
       $1, x.status, x.bill, x.claim, x.dimension, x.customer, x.license_id, x.error_code, x.reason, x.deadline, x.record_id, x.workflow_id
     FROM jsonb_to_recordset($2::jsonb) AS x(id text, key text, billing_provider text, billing_account_id text, org_id text, product_tag text,
       metric text, sla text, usage text, status text, bill int, claim numeric, dimension text, customer jsonb, license_id text, error_code text,
       reason text, deadline timestamptz, record_id text, workflow_id text)`,
    [
      new Date(hourMs),
      JSON.stringify(
        rows.map(({ id, key, decision: d, deadlineMs, recordId, workflowId }) => ({
          id, key: keyString(key), billing_provider: key.billingProvider, billing_account_id: key.billingAccountId, org_id: key.orgId,
          product_tag: key.productTag, metric: key.metric, sla: key.sla, usage: key.usage, status: d.status, bill: d.bill, claim: d.claim,
          dimension: d.dimension, customer: d.customer, license_id: d.licenseId, error_code: d.errorCode, reason: d.reason,
          deadline: new Date(deadlineMs).toISOString(), record_id: recordId, workflow_id: workflowId,
        })),
      ),
    ],
  );
  await insertPartsMany(c, rows.flatMap((r) => partsOf(r.decision.periods).map((p) => ({ ...p, remittanceId: r.id, key: keyString(r.key) }))));
}

// Waiting months are recorded too (bill 0): they are what brings an old month back into the
// computation once a contract arrives, however late.
function partsOf(periods: PeriodDecision[]): PeriodDecision[] {
  return periods.filter((p) => p.bill > 0 || p.gratis || p.kind === 'waiting_for_contract');
}

async function insertPartsMany(c: PoolClient, parts: Array<PeriodDecision & { remittanceId: string; key: string }>): Promise<void> {
  if (parts.length === 0) return;
  await c.query(
    `INSERT INTO remittance_parts (remittance_id, key, period, bill, claim, mtd, coverage, gratis)
     SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(remittance_id text, key text, period text, bill int, claim numeric, mtd numeric, coverage numeric, gratis boolean)`,
    [JSON.stringify(parts.map((p) => ({ remittance_id: p.remittanceId, key: p.key, period: p.period, bill: p.bill, claim: p.claim, mtd: p.mtd, coverage: p.coverage, gratis: p.gratis })))],
  );
}

async function insertParts(c: PoolClient, id: string, k: string, periods: PeriodDecision[]): Promise<void> {
  await insertPartsMany(c, partsOf(periods).map((p) => ({ ...p, remittanceId: id, key: k })));
}

/**
 * The computation has seen every change up to now. A failure of this record later marks the
 * key owing again (markOutcome). Only the key's newest hour may say so: a recomputation of an
 * older hour (an operator retry) sees usage only up to that hour, so a later hour's failure it
 * does not bill must stay owing for the sweep. Likewise usage of later tally hours (stored during
 * this hour's grace) is not billed here.
 */
async function advanceComputedSeqs(c: PoolClient, keys: Array<{ key: string; changeSeq: number }>, hour: Date): Promise<void> {
  if (keys.length === 0) return;
  await c.query(
    `UPDATE remittance_keys k SET computed_seq = q.seq FROM unnest($1::text[], $2::bigint[]) AS q(key, seq)
     WHERE k.key = q.key
       AND NOT EXISTS (SELECT 1 FROM remittances r WHERE r.key = q.key AND r.remittance_hour > $3)
       AND NOT EXISTS (SELECT 1 FROM tallies t WHERE t.key = q.key AND t.hour > $3)`,
    [keys.map((x) => x.key), keys.map((x) => x.changeSeq), hour],
  );
}

/**
 * An operator's retry or recalculate of a failed record, in its own hour: recompute every key
 * that contributed to it from the current tallies and contracts (never a stale quantity), under
 * their locks. Whatever a later hour already billed counts as remitted, so a retry racing the
 * next hour cannot bill twice. Returns the record, Pending again with its new quantity, or
 * NothingDue when nothing is left to send in this hour.
 */
export async function recomputeRecord(database: Database, recordId: string, a: ComputeSettings): Promise<RecordRow> {
  return withTransaction(database, async (c) => {
    const rec = (await c.query<RecordRow>(`SELECT ${RECORD_COLUMNS} FROM marketplace_records WHERE id = $1`, [recordId])).rows[0];
    if (!rec) throw new Error(`marketplace record ${recordId} does not exist`);
    const hourMs = new Date(rec.remittanceHour).getTime();
    const rows = (await c.query<RemittanceRow>(`SELECT ${ROW_COLUMNS} FROM ${ROW_FROM} WHERE r.record_id = $1 ORDER BY r.key`, [recordId])).rows;
    const recomputable = RECOMPUTABLE.includes(rec.status) && a.nowMs < new Date(rec.deadline).getTime();
    if (!recomputable) return rec;
    let quantity = 0;
    for (const row of rows) {
      const key = parseKeyString(row.key);
      const { changeSeq } = await lockKey(c, key);
      if (!RECOMPUTABLE.includes(row.status)) continue;
      const contracts = await loadContractsFor(c, key);
      const periods = await gatherPeriods(c, row.key, a.time.hourMs, hourMs, row.id);
      // An operator asked for this recomputation: it resumes a parked key (db/parking.ts).
      const d = await holdIfParked(c, row.key, decideRemittance({ key, catalog: a.catalog, contracts, periods, remittanceHourMs: hourMs }), 'retry', false);
      const same = d.status === 'Pending' && d.customer && d.dimension && recordIdentity(d.customer, d.dimension) === rec.identity;
      // A key whose usage now goes to another customer (its contract changed) leaves this record
      // failed: the next hour bills it there.
      const decision: RecordDecision = d.status === 'Pending' && !same ? { ...d, status: 'Failed', errorCode: 'usage_context_lookup', reason: 'its contract now names another marketplace customer; billed in a later hour' } : d;
      await c.query('DELETE FROM remittance_parts WHERE remittance_id = $1', [row.id]);
      await c.query(
        `UPDATE remittances SET status=$2, bill=$3, claim=$4, dimension=$5, customer=$6, license_id=$7, error_code=$8, reason=$9,
           record_id=$10, updated_at=now() WHERE id=$1`,
        [row.id, decision.status, decision.bill, decision.claim, decision.dimension, decision.customer ? JSON.stringify(decision.customer) : null, decision.licenseId, decision.errorCode, decision.reason, decision.status === 'Pending' || decision.status === 'Failed' ? recordId : null],
      );
      await insertParts(c, row.id, row.key, decision.status === 'Failed' ? [] : decision.periods);
      if (decision.status === 'Pending') quantity += decision.bill;
      else if (decision.status === 'Failed') await markKeysOwing(c, [row.key]);
      await forgetLatePeriods(c, row.key, monthOf(hourMs));
      await advanceComputedSeqs(c, [{ key: row.key, changeSeq }], new Date(hourMs));
    }
    const status: RemittanceStatus = quantity > 0 ? 'Pending' : 'NothingDue';
    const r = await c.query<RecordRow>(
      `UPDATE marketplace_records SET status=$2, quantity=CASE WHEN $3::int > 0 THEN $3::int ELSE quantity END, error_code=NULL,
         reason=CASE WHEN $3::int > 0 THEN NULL ELSE 'recomputed: nothing is left to send in this hour (a later hour billed it, or the usage changed)' END,
         last_error=NULL, updated_at=now() WHERE id=$1 RETURNING ${RECORD_COLUMNS}`,
      [recordId, status, quantity],
    );
    return r.rows[0]!;
  });
}

/** What would be billed now for one key (dry runs, the audit): the computation, rolled back. */
export async function previewRemittance(database: Database, a: ComputeSettings & { key: RemittanceKey; remittanceHourMs: number }): Promise<{ bill: number; status: RemittanceStatus; periods: PeriodDecision[] }> {
  const c = await database.pool.connect();
  try {
    await c.query('BEGIN');
    await lockKey(c, a.key);
    const contracts = await loadContractsFor(c, a.key);
    const periods = await gatherPeriods(c, keyString(a.key), a.time.hourMs, a.remittanceHourMs, null);
    const d = decideRemittance({ key: a.key, catalog: a.catalog, contracts, periods, remittanceHourMs: a.remittanceHourMs });
    return { bill: d.bill, status: d.status, periods: d.periods };
  } finally {
    await c.query('ROLLBACK').catch(() => undefined);
    c.release();
  }
}

export async function getRemittance(database: Database | PoolClient, id: string): Promise<RemittanceRow | undefined> {
  const q = 'pool' in database ? database.pool : database;
  const r = await q.query<RemittanceRow>(`SELECT ${ROW_COLUMNS} FROM ${ROW_FROM} WHERE r.id = $1`, [id]);
  return r.rows[0];
}

export async function getRecord(database: Database | PoolClient, id: string): Promise<RecordRow | undefined> {
  const q = 'pool' in database ? database.pool : database;
  const r = await q.query<RecordRow>(`SELECT ${RECORD_COLUMNS} FROM marketplace_records WHERE id = $1`, [id]);
  return r.rows[0];
}

/** The orgs whose usage a record carries (the OrgId search attribute). */
export async function recordOrgs(database: Database, recordId: string): Promise<string[]> {
  const r = await database.pool.query<{ org_id: string }>('SELECT DISTINCT org_id FROM remittances WHERE record_id = $1 ORDER BY org_id', [recordId]);
  return r.rows.map((x) => x.org_id);
}

/**
 * Record the intent to send before calling the marketplace, for several records at once (the
 * records of one marketplace call arrive together: db/group-commit.ts). One statement: lock the
 * records, move those that may send to Sending (attempts + 1) and their Pending remittances with
 * them. Returns, per id, the record as it is now and whether it was already in flight.
 */
export async function markSendingMany(database: Database, ids: string[]): Promise<Array<{ row: RecordRow; wasInFlight: boolean } | undefined>> {
  const r = await database.pool.query<RecordRow>(
    `WITH before AS (
       SELECT ${RECORD_COLUMNS} FROM marketplace_records WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
     ), sending AS (
       UPDATE marketplace_records m SET status = 'Sending', attempts = m.attempts + 1, attempt_open = false,
         in_doubt = m.in_doubt OR m.attempt_open, updated_at = now()
       FROM before b WHERE m.id = b.id AND b.status = ANY($2)
     ), pending AS (
       UPDATE remittances r SET status = 'Sending', updated_at = now()
       FROM before b WHERE r.record_id = b.id AND b.status = 'Pending' AND r.status = 'Pending'
     )
     SELECT * FROM before`,
    [ids, sourcesOf('Sending')],
  );
  const byId = new Map(r.rows.map((row) => [row.id, row]));
  return ids.map((id) => {
    const row = byId.get(id);
    if (!row) return undefined;
    if (!sourcesOf('Sending').includes(row.status)) return { row, wasInFlight: false };
    // An attempt still open means the previous one died mid-call: it may have reached the
    // marketplace, and nothing but the marketplace can say.
    const inDoubt = row.inDoubt || row.attemptOpen;
    return { row: { ...row, status: 'Sending', attempts: row.attempts + 1, attemptOpen: false, inDoubt }, wasInFlight: row.status === 'Sending' };
  });
}

/** Record the intent to send one record before calling the marketplace. */
export async function markSending(database: Database, id: string): Promise<{ row: RecordRow; wasInFlight: boolean } | undefined> {
  return (await markSendingMany(database, [id]))[0];
}

export type Outcome =
  | { status: 'Succeeded'; receiptId: string }
  | { status: 'Failed' | 'Expired' | 'Unconfirmed'; errorCode: string; reason: string };

/**
 * Record a final marketplace outcome on the record and every remittance in it. Only what is
 * still in flight changes (a late duplicate of an outcome cannot overwrite an operator's void).
 * A failed or expired amount stops counting as remitted and its keys are marked owing, so a
 * later hour bills it.
 */
export async function markOutcome(database: Database, id: string, o: Outcome): Promise<RecordRow | undefined> {
  if (o.status === 'Succeeded') return (await markSucceededMany(database, [{ id, receiptId: o.receiptId }]))[0];
  return withTransaction(database, async (c) => {
    const inFlight = (to: RemittanceStatus) => sourcesOf(to).filter((s) => s === 'Pending' || s === 'Sending');
    const r = await c.query(
      `UPDATE marketplace_records SET status=$2, error_code=$3, reason=$4, attempt_open=false, updated_at=now() WHERE id=$1 AND status = ANY($5)`,
      [id, o.status, o.errorCode, o.reason, inFlight(o.status)],
    );
    if (r.rowCount) {
      const keys = await c.query<{ key: string }>(
        `UPDATE remittances SET status=$2, error_code=$3, reason=$4, updated_at=now() WHERE record_id=$1 AND status = ANY($5) RETURNING key`,
        [id, o.status, o.errorCode, o.reason, inFlight(o.status)],
      );
      // An unconfirmed amount still counts as remitted: billing it again could bill it twice.
      if (o.status !== 'Unconfirmed') await markKeysOwing(c, keys.rows.map((x) => x.key));
      if (o.status === 'Failed') await countRejection(c, keys.rows.map((x) => x.key), o);
    }
    return getRecord(c, id);
  });
}

/**
 * The marketplace accepted these records: each record and every remittance in it Succeeded with
 * its receipt, and its keys' rejection count cleared, in one statement for the whole call. Only
 * what is still in flight changes (see markOutcome). Returns each record as it is now.
 */
export async function markSucceededMany(database: Database, accepted: Array<{ id: string; receiptId: string }>): Promise<Array<RecordRow | undefined>> {
  const r = await database.pool.query<RecordRow>(
    `WITH o AS (
       SELECT * FROM unnest($1::text[], $2::text[]) AS o(rid, receipt)
     ), m AS (
       UPDATE marketplace_records SET status = 'Succeeded', receipt_id = o.receipt, billed_on = now(), error_code = NULL, reason = NULL,
         attempt_open = false, updated_at = now()
       FROM o WHERE marketplace_records.id = o.rid AND marketplace_records.status = ANY($3)
       RETURNING ${RECORD_COLUMNS}
     ), r AS (
       UPDATE remittances SET status = 'Succeeded', receipt_id = m."receiptId", billed_on = now(), error_code = NULL, reason = NULL, updated_at = now()
       FROM m WHERE remittances.record_id = m.id AND remittances.status = ANY($3)
       RETURNING remittances.key
     ), cleared AS (
       UPDATE remittance_keys SET rejection_code = NULL, rejections = 0 WHERE key IN (SELECT key FROM r) AND rejections > 0
     )
     SELECT * FROM m
     UNION ALL
     SELECT ${RECORD_COLUMNS} FROM marketplace_records WHERE id IN (SELECT rid FROM o) AND id NOT IN (SELECT id FROM m)`,
    [accepted.map((a) => a.id), accepted.map((a) => a.receiptId), sourcesOf('Succeeded')],
  );
  const byId = new Map(r.rows.map((row) => [row.id, row]));
  return accepted.map((a) => byId.get(a.id));
}

/** The records' call is about to go out: from here on, a crash leaves their send in doubt. */
export async function markDispatchedMany(database: Database, ids: string[]): Promise<void[]> {
  await database.pool.query(`UPDATE marketplace_records SET attempt_open = true WHERE id = ANY($1::text[]) AND status = 'Sending'`, [ids]);
  return ids.map(() => undefined);
}

/** An attempt came back without a final answer; `lost` when it may have been recorded anyway. */
export async function recordAttemptError(database: Database, id: string, message: string, lost: boolean): Promise<void> {
  await database.pool.query('UPDATE marketplace_records SET last_error=$2, attempt_open=false, in_doubt = in_doubt OR $3, updated_at=now() WHERE id=$1', [id, message.slice(0, 2000), lost]);
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

/** An operator's reset of a whole record (the `reset` signal): every remittance in it is voided. */
export async function voidRecord(database: Database, recordId: string, reason: string): Promise<void> {
  await withTransaction(database, async (c) => {
    const ids = await c.query<{ id: string }>('SELECT id FROM remittances WHERE record_id = $1', [recordId]);
    await voidRemittances(c, ids.rows.map((x) => x.id), reason);
    await c.query(`UPDATE marketplace_records SET status='Voided', reason=$2, updated_at=now() WHERE id=$1 AND status = ANY($3)`, [recordId, reason, sourcesOf('Voided')]);
  });
}

/** Keys whose owed amount changed since their last computation: the next hour's close computes them. */
export async function findOwingKeys(database: Database, limit: number, afterKey = ''): Promise<RemittanceKey[]> {
  const r = await database.pool.query<RemittanceKey>(
    `SELECT billing_provider AS "billingProvider", billing_account_id AS "billingAccountId", org_id AS "orgId",
            product_tag AS "productTag", metric, sla, usage
     FROM remittance_keys
     WHERE change_seq > computed_seq AND key > $1 AND ${NOT_PARKED}
     ORDER BY key LIMIT $2`,
    [afterKey, limit],
  );
  return r.rows;
}

/**
 * Claim the close of hour `hourMs` for the sweep run `closer`. True when this run owns it (it
 * claimed it now, or earlier: a retried activity of the same run continues); false when another
 * run closed or is closing it, and this one must leave the hour alone.
 */
export async function claimHourClose(database: Database, hourMs: number, closer: string): Promise<boolean> {
  await database.pool.query('INSERT INTO hour_closes (hour, closed_by) VALUES ($1, $2) ON CONFLICT (hour) DO NOTHING', [new Date(hourMs), closer]);
  const r = await database.pool.query<{ closed_by: string }>('SELECT closed_by FROM hour_closes WHERE hour = $1', [new Date(hourMs)]);
  return r.rows[0]?.closed_by === closer;
}

export async function finishHourClose(database: Database, hourMs: number): Promise<void> {
  await database.pool.query('UPDATE hour_closes SET finished_at = now() WHERE hour = $1', [new Date(hourMs)]);
}

/**
 * What closes made but whose workflows may not have started, read back from the ledger as
 * computeGroup returned it: every record still Pending of an hour before `beforeHourMs` (a close
 * retried past the next hour's close, or a sweep run ended mid-close), and, with `hourMs`, that
 * hour's records and the remittances that went to no record (a retried close of that hour). Their
 * workflows are started again, idempotently: a running one is left alone.
 */
export async function unstartedGroups(database: Database, a: { beforeHourMs: number; hourMs?: number }): Promise<GroupOutcome[]> {
  const hour = a.hourMs === undefined ? null : new Date(a.hourMs);
  const records = (await database.pool.query<RecordRow>(
    `SELECT ${RECORD_COLUMNS} FROM marketplace_records
     WHERE status = 'Pending' AND remittance_hour < $1 OR remittance_hour = $2 AND status IN ('Pending', 'Sending')`,
    [new Date(a.beforeHourMs), hour],
  )).rows;
  if (records.length === 0 && !hour) return [];
  const rows = (await database.pool.query<RemittanceRow>(
    `SELECT ${ROW_COLUMNS} FROM ${ROW_FROM} WHERE r.record_id = ANY($2) OR r.remittance_hour = $1 AND r.status IN ('Failed', 'WaitingForContract') AND r.record_id IS NULL`,
    [hour, records.map((x) => x.id)],
  )).rows;
  const computed = (rs: RemittanceRow[]): ComputedRemittance[] =>
    rs.map((r) => ({ key: parseKeyString(r.key), remittanceId: r.id, status: r.status, bill: r.bill, errorCode: r.errorCode, reason: r.reason, workflowId: r.workflowId }));
  return [
    ...records.map((record) => ({ record, deferred: [], computed: computed(rows.filter((r) => r.recordId === record.id)).map((c) => ({ ...c, status: 'Pending' as const })) })),
    { record: null, deferred: [], computed: computed(rows.filter((r) => r.recordId === null)) },
  ];
}

/**
 * Of `keys`, those whose every tally is of an hour after `hourMs` and that were never remitted:
 * nothing can be owed for them at `hourMs`, so a close of that hour leaves them owing for the next.
 */
export async function keysWithUsageOnlyAfter(database: Database, keys: string[], hourMs: number): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const r = await database.pool.query<{ key: string }>(
    `SELECT t.key FROM tallies t WHERE t.key = ANY($1::text[])
     GROUP BY t.key HAVING min(t.hour) > $2
        AND NOT EXISTS (SELECT 1 FROM remittances r WHERE r.key = t.key)`,
    [keys, new Date(hourMs)],
  );
  return new Set(r.rows.map((x) => x.key));
}

/**
 * Contracts of many keys in one query: a function from a key to the contracts of its org,
 * marketplace, billing account and product.
 */
export async function loadContractsForScopes(q: PoolClient | Database['pool'], keys: RemittanceKey[]): Promise<(key: RemittanceKey) => Contract[]> {
  const scope = (k: { orgId: string; billingProvider: string; billingAccountId: string; productTag: string }) => [k.orgId, k.billingProvider, k.billingAccountId, k.productTag].join('\u0000');
  const wanted = [...new Map(keys.map((k) => [scope(k), k])).values()];
  const byScope = new Map<string, Contract[]>();
  for (let i = 0; i < wanted.length; i += 5000) {
    const part = wanted.slice(i, i + 5000);
    const r = await q.query(
      `SELECT ${CONTRACT_COLUMNS} FROM contracts
       WHERE (org_id, billing_provider, billing_account_id, product_tag) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]))`,
      [part.map((k) => k.orgId), part.map((k) => k.billingProvider), part.map((k) => k.billingAccountId), part.map((k) => k.productTag)],
    );
    for (const c of r.rows.map(toContract)) byScope.set(scope(c), [...(byScope.get(scope(c)) ?? []), c]);
  }
  return (key) => byScope.get(scope(key)) ?? [];
}

export async function recordAudit(q: Database['pool'] | PoolClient, e: { actor: string; action: string; dryRun?: boolean; request: unknown; result?: unknown }): Promise<number> {
  const r = await q.query<{ id: number }>(
    'INSERT INTO audit_log (actor, action, dry_run, request, result) VALUES ($1,$2,$3,$4,$5) RETURNING id',
    [e.actor, e.action, e.dryRun ?? false, JSON.stringify(e.request ?? null), e.result === undefined ? null : JSON.stringify(e.result)],
  );
  return r.rows[0]!.id;
}

export { ROW_COLUMNS, ROW_FROM };
