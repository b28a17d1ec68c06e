// One remittance hour's record for one key: the billing decisions of every accumulation period
// the computation looks at (billing.ts, one per period) folded into the single record that hour
// may send. Pure, like billing.ts; the ledger supplies the inputs read under the key's lock.

import { computeRemittance, type EarlierRemittance, type RemittanceDecision } from './billing';
import { lookupMetric, type Catalog } from './catalog';
import type { Contract } from './contracts';
import { Decimal } from './decimal';
import type { RemittanceKey } from './key';
import { recordTargetOf, type MarketplaceCustomer } from './record';
import type { RemittanceStatus } from './lifecycle';

export interface PeriodInput {
  period: string;
  /** The hour whose month-to-date total `mtd` is (the remittance hour, or the month's last hour). */
  evaluatedAtMs: number;
  mtd: string;
  earlier: EarlierRemittance[];
}

/** What the record claims for one period (stored as a remittance part). */
export interface PeriodDecision {
  period: string;
  kind: RemittanceDecision['kind'];
  bill: number;
  claim: string;
  mtd: string;
  coverage: string;
  gratis: boolean;
  reason: string;
}

export interface RecordDecision {
  status: RemittanceStatus;
  /** Billing units the record sends (or, for Gratis, records as free). */
  bill: number;
  claim: string;
  dimension: string | null;
  customer: MarketplaceCustomer | null;
  licenseId: string | null;
  errorCode: string | null;
  reason: string | null;
  periods: PeriodDecision[];
}

/**
 * The remittance of one key for remittance hour `remittanceHourMs`: each period's bill (billing.ts)
 * folded into what the key adds to the hour's marketplace record, whose customer and dimension
 * come from recordTargetOf (the contract in force at the remittance hour).
 */
export function decideRemittance(input: { key: RemittanceKey; catalog: Catalog; contracts: readonly Contract[]; periods: readonly PeriodInput[]; remittanceHourMs: number }): RecordDecision {
  const { key } = input;
  const entry = lookupMetric(input.catalog, key.productTag, key.metric);
  const empty = { bill: 0, claim: '0', dimension: null, customer: null, licenseId: null, periods: [] };
  if (!entry) {
    return { ...empty, status: 'Failed', errorCode: 'unsupported_metric', reason: `${key.productTag} ${key.metric} is not in the product catalog` };
  }
  const decided = input.periods.map((p) => ({
    p,
    d: computeRemittance({ entry, marketplace: key.billingProvider, billingAccountId: key.billingAccountId, period: p.period, mtd: p.mtd, evaluatedAtMs: p.evaluatedAtMs, contracts: input.contracts, earlier: p.earlier }),
  }));
  const periods: PeriodDecision[] = decided.map(({ p, d }) => ({
    period: p.period,
    kind: d.kind,
    bill: d.kind === 'bill' || d.kind === 'gratis' ? d.bill : 0,
    claim: d.kind === 'bill' || d.kind === 'gratis' ? d.claim : '0',
    mtd: p.mtd,
    coverage: 'basis' in d ? d.basis.coverage : '0',
    gratis: d.kind === 'gratis',
    reason: reasonOf(d),
  }));
  const dimension = entry.dimensions[key.billingProvider] ?? null;
  const sum = (ps: PeriodDecision[]) => ({ bill: ps.reduce((s, x) => s + x.bill, 0), claim: ps.reduce((s, x) => s.add(Decimal.parse(x.claim)), Decimal.ZERO).toString() });
  const billed = decided.filter((x): x is { p: PeriodInput; d: Extract<RemittanceDecision, { kind: 'bill' }> } => x.d.kind === 'bill');
  const gratis = periods.filter((x) => x.gratis);
  const reason = periods.map((x) => `${x.period}: ${x.reason}`).join('\n') || 'no usage for this key in the months looked at';

  if (billed.length > 0) {
    // One record per hour: every period the key bills (late usage of earlier months, failed
    // amounts) goes to the customer in force now, with the current timestamp.
    const last = billed[billed.length - 1]!.d;
    const total = sum(periods.filter((x) => x.kind === 'bill'));
    const target = recordTargetOf(key, entry, input.contracts, input.remittanceHourMs);
    if ('problem' in target) {
      return { ...total, status: 'Failed', dimension, customer: null, licenseId: last.licenseId, errorCode: target.problem, reason: target.reason, periods };
    }
    return { ...total, status: 'Pending', dimension: target.dimension, customer: target.customer, licenseId: last.licenseId, errorCode: null, reason, periods };
  }
  if (gratis.length > 0) {
    // Nothing is sent, but reports and the audit must say which license the free usage fell
    // under: the newest gratis period's, chosen by billing.md's license rule like a billed one.
    const newest = decided.filter((x) => x.d.kind === 'gratis').at(-1)!.d as Extract<RemittanceDecision, { kind: 'gratis' }>;
    return { ...sum(gratis), status: 'Gratis', dimension, customer: null, licenseId: newest.licenseId, errorCode: null, reason, periods };
  }
  const unsupported = decided.find((x) => x.d.kind === 'unsupported_metric');
  if (unsupported) return { ...empty, status: 'Failed', dimension, errorCode: 'unsupported_metric', reason: reasonOf(unsupported.d), periods };
  if (periods.some((x) => x.kind === 'waiting_for_contract')) return { ...empty, status: 'WaitingForContract', dimension, errorCode: 'contract_missing', reason, periods };
  return { ...empty, status: 'NothingDue', dimension, errorCode: null, reason, periods };
}

function reasonOf(d: RemittanceDecision): string {
  switch (d.kind) {
    case 'bill':
    case 'gratis':
      return `${d.kind === 'gratis' ? 'gratis' : 'bills'} ${d.bill} ${d.dimension} (usage ${d.basis.usage}, coverage ${d.basis.coverage}, already remitted ${d.basis.remitted})`;
    default:
      return d.reason;
  }
}
