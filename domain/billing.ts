// The billing calculation of billing.md for one key and one accumulation period, as a pure
// function: no I/O, no clock, no database, so it is exhaustively testable and safe to call from
// anywhere (activities, workflow code, the audit, dry runs).
//
// The rule is stated in metric units:
//   applicable = max(0, MTD - coverage/bf); remitted = sum of earlier claims (not failed/expired/voided)
//   bill = max(0, ceil((applicable - remitted) x bf)); claim = bill / bf
// Multiplying through by bf (bf > 0) gives the same number in billing units:
//   (applicable - remitted) x bf = max(0, MTD x bf - coverage) - remitted x bf
// and remitted x bf is the sum of earlier bills, because each claim is bill / bf. A sum of bills
// is an integer n, and ceil(x - n) = ceil(x) - n, so
//   bill = max(0, ceil(max(0, MTD x bf - coverage)) - sum of bills)
// We compute in billing units: MTD x bf is an exact product of decimals, nothing is divided,
// and a billing factor whose reciprocal does not terminate (0.3333) costs no precision. The
// claim (bill / bf) is only reported and stored; see claimFor for its rounding.

import { Decimal } from './decimal';
import type { CatalogMetric } from './catalog';
import { activeContracts, coverageFor, isGratis, licenseOf, selectLicenseContract, selectTargetContract, type Contract } from './contracts';
import type { Marketplace } from './key';
import { NOT_REMITTED, type RemittanceStatus } from './lifecycle';
import { customerOf, type MarketplaceCustomer } from './record';
import { monthOf } from './time';

/** An earlier remittance of the same key and period. */
export interface EarlierRemittance {
  /** Only Failed, Expired and Voided stop counting as remitted (domain/lifecycle.ts, NOT_REMITTED). */
  status: RemittanceStatus;
  /** Whole billing units it billed (a JSON number, or a NUMERIC string). */
  bill: number | string;
  /**
   * Metric units it claimed, when stored. Only consulted when it differs from bill / bf, i.e. the
   * billing factor changed since: billing.md counts what was claimed in metric units, so such a
   * claim is re-valued at today's factor instead of trusting the old bill.
   */
  claim?: string | null;
  /** A gratis part counts as remitted whatever status the record it travels with ends in. */
  gratis?: boolean;
}

export function countsAsRemitted(e: Pick<EarlierRemittance, 'status' | 'gratis'>): boolean {
  // A gratis part counts whatever happens to the record it travels with (failed, expired), but
  // an operator's void un-counts it like anything else, so a reset re-evaluates the month.
  if (e.gratis === true) return e.status !== 'Voided';
  return !NOT_REMITTED.includes(e.status);
}

/**
 * Metric units claimed by `bill` billing units: bill / bf. Exact when the quotient terminates
 * (every factor of the form 2^-a x 5^-b: 1, 0.5, 0.25, 0.2, 0.125 ...). Otherwise (bf 0.3333)
 * rounded UP to DIV_SCALE (20) fractional digits: anyone who re-derives "remitted" from stored
 * claims then sees slightly more than was billed, never less, so a recomputation from claims can
 * never bill the same unit twice. Store claims in an unconstrained NUMERIC to keep all digits.
 */
export function claimFor(bill: Decimal | number | bigint, bf: Decimal | string): Decimal {
  return Decimal.from(bill).div(Decimal.from(bf), { rounding: 'ceil' });
}

/** Billing units counted as already remitted for a period (see EarlierRemittance.claim). */
export function remittedBillingUnits(earlier: readonly EarlierRemittance[], bf: Decimal | string): Decimal {
  const factor = Decimal.from(bf);
  let total = Decimal.ZERO;
  for (const e of earlier) {
    if (!countsAsRemitted(e)) continue;
    const bill = Decimal.from(e.bill);
    if (bill.isNegative()) throw new RangeError(`an earlier remittance has a negative bill: ${e.bill}`);
    let units = bill;
    if (e.claim !== undefined && e.claim !== null) {
      const claim = Decimal.from(e.claim);
      if (!claim.eq(claimFor(bill, factor))) units = claim.mul(factor);
    }
    total = total.add(units);
  }
  return total;
}

/**
 * Whole billing units owed for a period so far: ceil(max(0, MTD x bf - coverage)). With no
 * coverage this is ceil(MTD x bf), what a month must add up to at the marketplace (audit).
 */
export function owedBillingUnits(mtd: Decimal | string, bf: Decimal | string, coverage: Decimal | string = Decimal.ZERO): bigint {
  const usage = Decimal.from(mtd).mul(Decimal.from(bf));
  return Decimal.max(Decimal.ZERO, usage.sub(Decimal.from(coverage))).ceil();
}

/**
 * The largest bill one record may carry. AWS takes quantities up to 2^31 - 1 and the ledger
 * stores bills as PostgreSQL integer; anything due beyond it is carried to the next hour, which
 * bills it because it is not yet remitted.
 */
export const MAX_BILL = 2_147_483_647;

export interface RemittanceInput {
  entry: CatalogMetric;
  marketplace: Marketplace;
  /** The key's billing account: the AWS customer when no contract names one (see computeRemittance). */
  billingAccountId: string;
  /** Accumulation period, `YYYY-MM`; must be the month of evaluatedAtMs. */
  period: string;
  /** Month-to-date total in metric units through the evaluated hour (decimal string, >= 0). */
  mtd: Decimal | string;
  /** The hour whose MTD this is; contracts are looked up as active at this instant. */
  evaluatedAtMs: number;
  /**
   * Contracts of the key's org, product, marketplace and billing account, any dates. Contracts of
   * another marketplace, product or billing account are ignored.
   */
  contracts: readonly Contract[];
  /** Earlier remittances of this key and period, whatever their status. */
  earlier: readonly EarlierRemittance[];
  /** Cap on one record's bill; defaults to MAX_BILL. */
  maxBill?: number;
}

/** The numbers behind a decision, for the ledger, the API and the reason a person reads. */
export interface RemittanceBasis {
  period: string;
  dimension: string;
  billingFactor: string;
  /** Metric units. */
  mtd: string;
  /** MTD x bf, billing units, exact. */
  usage: string;
  /** Committed billing units of the active contracts on this dimension (0 without contracts). */
  coverage: string;
  /** Billing units counted as already remitted this period. */
  remitted: string;
  /** Whole billing units due now, before the per-record cap. */
  due: string;
}

interface Billed {
  /** Whole billing units in this record: > 0, <= maxBill, a safe integer. */
  bill: number;
  /** Metric units the record claims: bill / bf (see claimFor). */
  claim: string;
  /** Due units left for a later hour because of the per-record cap (usually "0"). */
  carried: string;
  basis: RemittanceBasis;
  dimension: string;
  /** The contract the license comes from, or the one supplying the identifiers; null without. */
  contractId: string | null;
  licenseId: string | null;
}

export type RemittanceDecision =
  | ({
      kind: 'bill';
      /** Null when nothing supplies identifiers the marketplace cannot do without (Azure's resource, an AWS product code). */
      target: MarketplaceCustomer | null;
      /** Why the target is missing or incomplete; the send will fail with this reason. Null when complete. */
      targetProblem: string | null;
    } & Billed)
  /** Recorded as remitted, never sent: the month a gratis metric's contracts start is free. */
  | ({ kind: 'gratis' } & Billed)
  | { kind: 'nothing_due'; reason: string; basis: RemittanceBasis; dimension: string }
  /** Nothing billed, nothing lost: the usage is billed once a contract makes it billable. */
  | { kind: 'waiting_for_contract'; reason: string; basis: RemittanceBasis; dimension: string }
  | { kind: 'unsupported_metric'; errorCode: 'unsupported_metric'; reason: string };

/**
 * The calculation of billing.md for one key and period at one evaluated hour.
 *
 * Order of decisions:
 * 1. no dimension on this marketplace -> unsupported_metric;
 * 2. contract-enabled product without a contract active at the evaluated hour ->
 *    waiting_for_contract (the MTD keeps the usage; the first computation with a contract bills it);
 * 3. due = max(0, ceil(max(0, MTD x bf - coverage) - remitted)), billing units; 0 -> nothing_due;
 * 4. gratis metric whose active contracts all start after the month's first instant -> gratis;
 * 5. otherwise bill, capped at maxBill per record, to the marketplace identifiers of the license
 *    contract, else of the newest active contract.
 *
 * Without an active contract carrying identifiers (non-contract products only), billing still
 * happens: billing.md bills such products with no contract, and what is owed must not depend on
 * whether we know where to send it. On AWS the customer is the key's billingAccountId (a billing
 * account on AWS is the customer's AWS account) and the product code is the catalog's
 * awsProductCode, possibly null. On Azure a resource id and plan id exist only in a contract, so
 * the target is null. In both incomplete cases targetProblem says so: the send fails with that
 * reason, visibly, and the failed amount is billed again by a later hour, once a contract exists.
 *
 * Throws on inputs that no caller should produce: a negative MTD or bill, or evaluatedAtMs
 * outside `period`.
 */
export function computeRemittance(input: RemittanceInput): RemittanceDecision {
  const { entry, marketplace, period, evaluatedAtMs } = input;
  if (monthOf(evaluatedAtMs) !== period) {
    throw new RangeError(`evaluated hour ${new Date(evaluatedAtMs).toISOString()} is not in period ${period}`);
  }
  const dimension = entry.dimensions[marketplace] ?? null;
  if (dimension === null) {
    return {
      kind: 'unsupported_metric',
      errorCode: 'unsupported_metric',
      reason: `${entry.productTag} ${entry.metric} has no ${marketplace} dimension in the catalog, so it cannot be remitted to ${marketplace}`,
    };
  }
  const mtd = Decimal.from(input.mtd);
  if (mtd.isNegative()) throw new RangeError(`month-to-date total is negative: ${mtd}`);
  const bf = Decimal.parse(entry.billingFactor);
  const maxBill = input.maxBill ?? MAX_BILL;
  if (!Number.isSafeInteger(maxBill) || maxBill < 1) throw new RangeError(`maxBill must be a positive safe integer, got ${maxBill}`);

  const mine = input.contracts.filter((c) => c.billingProvider === marketplace && c.productTag === entry.productTag && c.billingAccountId === input.billingAccountId);
  const active = activeContracts(mine, evaluatedAtMs);
  const hourIso = new Date(evaluatedAtMs).toISOString();

  const usage = mtd.mul(bf);
  const coverage = entry.contractEnabled ? coverageFor(active, evaluatedAtMs, dimension) : Decimal.ZERO;
  const remitted = remittedBillingUnits(input.earlier, bf);
  const dueUnits = Decimal.max(Decimal.ZERO, Decimal.max(Decimal.ZERO, usage.sub(coverage)).sub(remitted)).ceil();
  const basis: RemittanceBasis = {
    period,
    dimension,
    billingFactor: bf.toString(),
    mtd: mtd.toString(),
    usage: usage.toString(),
    coverage: coverage.toString(),
    remitted: remitted.toString(),
    due: dueUnits.toString(),
  };

  if (entry.contractEnabled && active.length === 0) {
    const later = mine.length > 0 ? `; its ${mine.length} contract(s) are not active at ${hourIso}` : '';
    return {
      kind: 'waiting_for_contract',
      reason: `${entry.productTag} needs an active ${marketplace} contract for billing account ${input.billingAccountId}${later}; the usage is kept and billed once one exists`,
      basis,
      dimension,
    };
  }

  if (dueUnits === 0n) {
    const owed = Decimal.max(Decimal.ZERO, usage.sub(coverage)).ceil();
    const net = coverage.isZero() ? `usage ${usage}` : `usage ${usage} minus coverage ${coverage}`;
    const why = usage.isZero()
      ? `no usage in ${period} so far`
      : !coverage.isZero() && usage.lte(coverage)
        ? `usage ${usage} ${dimension} is within the contract coverage of ${coverage}`
        : `${period} owes ${owed} ${dimension} (${net}, rounded up) and ${remitted} are already remitted`;
    return { kind: 'nothing_due', reason: why, basis, dimension };
  }

  const billBig = dueUnits > BigInt(maxBill) ? BigInt(maxBill) : dueUnits;
  const bill = Number(billBig);
  const licensed = selectLicenseContract(active, evaluatedAtMs);
  const billed: Billed = {
    bill,
    claim: claimFor(billBig, bf).toString(),
    carried: (dueUnits - billBig).toString(),
    basis,
    dimension,
    contractId: null,
    licenseId: licensed ? licenseOf(licensed) : null,
  };

  if (entry.gratis && isGratis(active, evaluatedAtMs)) {
    return { kind: 'gratis', ...billed, contractId: (licensed ?? selectTargetContract(active, evaluatedAtMs))?.contractId ?? null };
  }

  const withIds = active.filter((c) => customerOf(c, marketplace) !== null);
  const chosen = selectTargetContract(withIds, evaluatedAtMs);
  if (chosen) return { kind: 'bill', ...billed, contractId: chosen.contractId, target: customerOf(chosen, marketplace), targetProblem: null };
  const none = active.length > 0 ? `none of the ${active.length} active contract(s) carries` : `no contract active at ${hourIso} carries`;
  if (marketplace === 'aws') {
    const productCode = entry.awsProductCode;
    return {
      kind: 'bill',
      ...billed,
      target: productCode === null ? null : { marketplace: 'aws', productCode, customerAwsAccountId: input.billingAccountId, licenseArn: null },
      targetProblem: productCode === null ? `${none} an AWS product code and the catalog names no awsProductCode for ${entry.productTag}` : null,
    };
  }
  return { kind: 'bill', ...billed, target: null, targetProblem: `${none} the Azure resource id and plan id the record needs` };
}
