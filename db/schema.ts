// The whole database in one file. Names match the API and docs: tally, contract, remittance,
// key (the remittance key as one string, see domain/key.ts), hour, period (YYYY-MM).
// Quantities in metric units are NUMERIC (exact); bills are whole billing units (integer).

import { sql } from 'drizzle-orm';
import { bigint, bigserial, boolean, check, index, integer, jsonb, numeric, pgTable, primaryKey, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

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
     * The latest remittance hour a workflow was started for. Its computation (at the end of that
     * hour plus grace) covers every change made before it, so the sweep leaves such keys alone.
     */
    scheduledHour: ts('scheduled_hour'),
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
 * One remittance per key and remittance hour (unique): the single record that hour sends.
 * Status vocabulary: see domain/ledger-status.ts. The marketplace identifiers and dimension are
 * frozen at computation so that every send of the record is byte-identical.
 */
export const remittances = pgTable(
  'remittances',
  {
    id: text('id').primaryKey(),
    ...keyColumns(),
    remittanceHour: ts('remittance_hour').notNull(),
    status: text('status').notNull(),
    bill: integer('bill').notNull().default(0),
    claim: numeric('claim').notNull().default('0'),
    dimension: text('dimension'),
    customer: jsonb('customer'),
    licenseId: text('license_id'),
    errorCode: text('error_code'),
    reason: text('reason'),
    receiptId: text('receipt_id'),
    attempts: integer('attempts').notNull().default(0),
    /** A send attempt has begun and not yet come back with an answer (a crash leaves it true). */
    attemptOpen: boolean('attempt_open').notNull().default(false),
    /** Some attempt may have reached the marketplace without a definite answer (lost, crashed). */
    inDoubt: boolean('in_doubt').notNull().default(false),
    lastError: text('last_error'),
    deadline: ts('deadline'),
    billedOn: ts('billed_on'),
    workflowId: text('workflow_id').notNull(),
    createdAt: ts('created_at').notNull().default(sql`now()`),
    updatedAt: ts('updated_at').notNull().default(sql`now()`),
  },
  (t) => [
    uniqueIndex('remittances_key_hour').on(t.key, t.remittanceHour),
    index('remittances_status').on(t.status, t.remittanceHour),
    index('remittances_account').on(t.billingAccountId, t.remittanceHour),
    index('remittances_org').on(t.orgId, t.remittanceHour),
    check('remittances_bill_nonnegative', sql`${t.bill} >= 0`),
  ],
);

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
 * state of the cross-worker rate limiter (db/rate-limiter.ts). Rows older than a minute are
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
    pulledAt: ts('pulled_at'),
  },
  (t) => [index('usage_pulls_status').on(t.status, t.hour), check('usage_pulls_status_known', sql`${t.status} IN ('pulling', 'pulled', 'failed')`)],
);
