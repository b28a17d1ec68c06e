// The whole database in one file. Names match the API and docs: tally, contract, remittance,
// key (the remittance key as one string, see domain/key.ts), hour, period (YYYY-MM).
// Quantities in metric units are NUMERIC (exact); bills are whole billing units (integer).

import { sql } from 'drizzle-orm';
import { bigint, bigserial, boolean, check, index, integer, jsonb, numeric, pgTable, primaryKey, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';
import type { RemittanceStatus } from '../domain/lifecycle';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/** Key columns, repeated on each table that is filtered by them (API filters, reports). */
const keyColumns = () => ({
  key: text('key').notNull(),
  billingProvider: text('billing_provider').notNull(),
  billingAccountId: text('billing_account_id').notNull(),
  orgId: text('org_id').notNull(),
  productTag: text('product_tag').notNull(),
  metric: text('metric').notNull(),
  sla: text('sla').notNull(),
  usage: text('usage').notNull(),
});

/** Measured usage of one key in one hour. A re-sent tally replaces the value (a correction). */
export const tallies = pgTable(
  'tallies',
  {
    ...keyColumns(),
    hour: ts('hour').notNull(),
    period: text('period').notNull(),
    value: numeric('value').notNull(),
    receivedAt: ts('received_at').notNull().default(sql`now()`),
  },
  (t) => [primaryKey({ columns: [t.key, t.hour] }), index('tallies_key_period_hour').on(t.key, t.period, t.hour), check('tallies_value_nonnegative', sql`${t.value} >= 0`)],
);

/**
 * One row per key: the lock that serializes every computation for the key (SELECT ... FOR
 * UPDATE), and the "owes" marker the hourly sweep reads: `changeSeq` grows whenever something
 * that can change the bill happens (tally, contract, failure, void); `computedSeq` is the
 * value the last computation saw.
 */
export const remittanceKeys = pgTable(
  'remittance_keys',
  {
    ...keyColumns(),
    changeSeq: bigint('change_seq', { mode: 'number' }).notNull().default(1),
    computedSeq: bigint('computed_seq', { mode: 'number' }).notNull().default(0),
    lastChangeAt: ts('last_change_at').notNull().default(sql`now()`),
    /**
     * Months (`YYYY-MM`) before the month they arrived in that received usage since the key's last
     * computation: the next computation looks at them too, then forgets them (db/tallies.ts, ledger).
     */
    latePeriods: text('late_periods').array().notNull().default(sql`'{}'::text[]`),
    /** Error code of the key's latest terminal rejections, and how many in a row (db/parking.ts). */
    rejectionCode: text('rejection_code'),
    rejections: integer('rejections').notNull().default(0),
    /** Set while the key is parked: nothing is sent for it, its amount stays owed (db/parking.ts). */
    parkedAt: ts('parked_at'),
    parkedReason: text('parked_reason'),
  },
  (t) => [
    primaryKey({ columns: [t.key] }),
    index('remittance_keys_owing').on(t.key).where(sql`${t.changeSeq} > ${t.computedSeq}`),
    index('remittance_keys_parked').on(t.key).where(sql`${t.parkedAt} IS NOT NULL`),
  ],
);

export const contracts = pgTable(
  'contracts',
  {
    contractId: text('contract_id').primaryKey(),
    orgId: text('org_id').notNull(),
    billingProvider: text('billing_provider').notNull(),
    billingAccountId: text('billing_account_id').notNull(),
    productTag: text('product_tag').notNull(),
    startDate: ts('start_date').notNull(),
    endDate: ts('end_date'),
    licenseId: text('license_id'),
    aws: jsonb('aws'),
    azure: jsonb('azure'),
    metrics: jsonb('metrics').notNull().default(sql`'[]'::jsonb`),
    updatedAt: ts('updated_at').notNull().default(sql`now()`),
  },
  (t) => [index('contracts_lookup').on(t.orgId, t.billingProvider, t.billingAccountId, t.productTag)],
);

/**
 * One marketplace record: what one workflow sends (docs/design.md, "The unit of work"). Its
 * identity is what the marketplace allows once per hour (AWS: customer, product code or license,
 * dimension; Azure: resource, dimension), so the unique index is the marketplace's own rule; its
 * quantity is the sum of the bills of the remittances that point to it. The send state lives
 * here: one intent, one attempt count, one doubt for the one call that carries the record.
 */
export const marketplaceRecords = pgTable(
  'marketplace_records',
  {
    id: text('id').primaryKey(),
    marketplace: text('marketplace').notNull(),
    /** The record's identity without the hour (domain/record.ts recordIdentity). */
    identity: text('identity').notNull(),
    remittanceHour: ts('remittance_hour').notNull(),
    customer: jsonb('customer').notNull(),
    dimension: text('dimension').notNull(),
    quantity: integer('quantity').notNull(),
    status: text('status').$type<RemittanceStatus>().notNull(),
    errorCode: text('error_code'),
    reason: text('reason'),
    receiptId: text('receipt_id'),
    attempts: integer('attempts').notNull().default(0),
    /** A send attempt has begun and not yet come back with an answer (a crash leaves it true). */
    attemptOpen: boolean('attempt_open').notNull().default(false),
    /** Some attempt may have reached the marketplace without a definite answer (lost, crashed). */
    inDoubt: boolean('in_doubt').notNull().default(false),
    lastError: text('last_error'),
    deadline: ts('deadline').notNull(),
    billedOn: ts('billed_on'),
    workflowId: text('workflow_id').notNull(),
    createdAt: ts('created_at').notNull().default(sql`now()`),
    updatedAt: ts('updated_at').notNull().default(sql`now()`),
  },
  (t) => [
    uniqueIndex('marketplace_records_identity_hour').on(t.identity, t.remittanceHour),
    index('marketplace_records_status').on(t.status, t.marketplace, t.updatedAt),
    check('marketplace_records_quantity_positive', sql`${t.quantity} > 0`),
  ],
);

/**
 * One remittance per key and remittance hour (unique): what the key contributes to the hour's
 * marketplace record (`recordId`), or why it contributes nothing (NothingDue, Gratis,
 * WaitingForContract, Failed before sending). Status vocabulary: domain/lifecycle.ts. The status,
 * error, reason and receipt of a sent remittance mirror its record's; the send state itself
 * (attempts, doubt, last error) is the record's.
 */
export const remittances = pgTable(
  'remittances',
  {
    id: text('id').primaryKey(),
    ...keyColumns(),
    remittanceHour: ts('remittance_hour').notNull(),
    status: text('status').$type<RemittanceStatus>().notNull(),
    bill: integer('bill').notNull().default(0),
    claim: numeric('claim').notNull().default('0'),
    dimension: text('dimension'),
    customer: jsonb('customer'),
    licenseId: text('license_id'),
    errorCode: text('error_code'),
    reason: text('reason'),
    receiptId: text('receipt_id'),
    deadline: ts('deadline'),
    billedOn: ts('billed_on'),
    /** The marketplace record this remittance's bill travels in; null when it sends nothing. */
    recordId: text('record_id').references(() => marketplaceRecords.id),
    /** The workflow that shows this remittance; null for an hour with nothing to show (NothingDue). */
    workflowId: text('workflow_id'),
    createdAt: ts('created_at').notNull().default(sql`now()`),
    updatedAt: ts('updated_at').notNull().default(sql`now()`),
  },
  (t) => [
    uniqueIndex('remittances_key_hour').on(t.key, t.remittanceHour),
    index('remittances_status').on(t.status, t.remittanceHour),
    index('remittances_account').on(t.billingAccountId, t.remittanceHour),
    index('remittances_org').on(t.orgId, t.remittanceHour),
    index('remittances_record').on(t.recordId),
    check('remittances_bill_nonnegative', sql`${t.bill} >= 0`),
  ],
);

/**
 * The hours whose window has closed: the sweep that closes hour H computes every owing key for H
 * and makes H's records, exactly once (`closedBy` is the sweep run that owns it, so a retried
 * activity of that run continues, and any other run leaves the hour alone).
 */
export const hourCloses = pgTable('hour_closes', {
  hour: ts('hour').primaryKey(),
  closedBy: text('closed_by').notNull(),
  startedAt: ts('started_at').notNull().default(sql`now()`),
  finishedAt: ts('finished_at'),
});

/** What a remittance claims for each accumulation period it bills (usually one). */
export const remittanceParts = pgTable(
  'remittance_parts',
  {
    remittanceId: text('remittance_id').notNull().references(() => remittances.id, { onDelete: 'cascade' }),
    key: text('key').notNull(),
    period: text('period').notNull(),
    bill: integer('bill').notNull(),
    claim: numeric('claim').notNull(),
    mtd: numeric('mtd').notNull(),
    coverage: numeric('coverage').notNull().default('0'),
    /** Gratis parts count as remitted whatever happens to the record they travel with. */
    gratis: boolean('gratis').notNull().default(false),
  },
  (t) => [primaryKey({ columns: [t.remittanceId, t.period] }), index('remittance_parts_key_period').on(t.key, t.period)],
);

/** Every operator action: who, when, what, with which filters, and the result. */
export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: ts('at').notNull().default(sql`now()`),
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    dryRun: boolean('dry_run').notNull().default(false),
    request: jsonb('request').notNull(),
    result: jsonb('result'),
  },
  (t) => [index('audit_log_at').on(t.at)],
);

/**
 * Marketplace calls in the last moments, per rate key (seller account + region): the shared
 * state of the cross-worker rate limiter (marketplaces/rate-limiter.ts). Rows older than a minute are
 * deleted as new ones arrive.
 */
export const marketplaceCalls = pgTable(
  'marketplace_calls',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    rateKey: text('rate_key').notNull(),
    /** When the call started, then (on release) when it finished: it counts until at + window. */
    at: ts('at').notNull().default(sql`clock_timestamp()`),
  },
  (t) => [index('marketplace_calls_key_at').on(t.rateKey, t.at)],
);

/**
 * Progress of the usage pull (docs/usage-source.md): one row per hour read from the usage source.
 * `pulling`: being read, or retrying after a read failure (`last_error`, `attempts`); `pulled`: its
 * tallies are stored (`tallies` of them, at `pulled_at`); `failed`: the source's data for the hour
 * cannot be billed (`last_error` says why) and nothing of it was stored. Hours without a row, or
 * left `pulling` by a run that stopped, are back-filled by the next run.
 */
export const usagePulls = pgTable(
  'usage_pulls',
  {
    hour: ts('hour').primaryKey(),
    status: text('status').notNull(),
    attempts: integer('attempts').notNull().default(0),
    lastError: text('last_error'),
    tallies: integer('tallies'),
    /** Series of the last read left out because they cannot be billed (issue 12; reasons in last_error). */
    rejected: integer('rejected').notNull().default(0),
    pulledAt: ts('pulled_at'),
  },
  (t) => [index('usage_pulls_status').on(t.status, t.hour), check('usage_pulls_status_known', sql`${t.status} IN ('pulling', 'pulled', 'failed')`)],
);
