// The marketplace record: what a marketplace accepts once per hour, and so what one remittance
// workflow sends. Pure: the customer a record goes to, its identity, and which contract's
// identifiers a key's usage of a remittance hour goes to (its workflow id is Temporal wiring:
// workflows/definitions.ts).
//
// Keys that differ only by org, SLA or usage but bill the same marketplace customer and dimension
// share one record per hour: its quantity is the sum of their bills (docs/design.md, "The unit of
// work").

import type { CatalogMetric } from './catalog';
import { activeContracts, selectTargetContract, type Contract } from './contracts';
import type { Marketplace, RemittanceKey } from './key';

/** Where a record goes: the identifiers the marketplace needs, frozen when the record is made. */
export type MarketplaceCustomer =
  | { marketplace: 'aws'; productCode: string; customerAwsAccountId: string; licenseArn?: string | null }
  | { marketplace: 'azure'; resourceId: string; planId: string };

/**
 * The record's identity without its hour: exactly what the marketplace allows once per hour.
 * AWS: one record per customer, product code or license, and dimension (marketplaces.md).
 * Azure: one usage event per resource and dimension; the plan travels with it but does not make
 * a second event acceptable.
 */
export function recordIdentity(customer: MarketplaceCustomer, dimension: string): string {
  const parts =
    customer.marketplace === 'aws'
      ? ['aws', customer.customerAwsAccountId, customer.licenseArn ? `license:${customer.licenseArn}` : `product:${customer.productCode}`, dimension]
      : ['azure', customer.resourceId, dimension];
  return parts.map(encodeURIComponent).join('|');
}

/** Where a key's usage of one remittance hour goes, or why it cannot go anywhere yet. */
export type RecordTarget = { customer: MarketplaceCustomer; dimension: string } | { problem: 'unsupported_metric' | 'usage_context_lookup'; reason: string };

/** The identifiers contract `c` supplies for a record on `marketplace`, if it has them. */
export function customerOf(c: Contract, marketplace: Marketplace): MarketplaceCustomer | null {
  if (marketplace === 'aws' && c.aws) return { marketplace: 'aws', productCode: c.aws.productCode, customerAwsAccountId: c.aws.customerAwsAccountId, licenseArn: c.aws.licenseArn ?? null };
  if (marketplace === 'azure' && c.azure) return { marketplace: 'azure', resourceId: c.azure.resourceId, planId: c.azure.planId };
  return null;
}

const startOf = (c: Contract) => Date.parse(c.startDate);

/**
 * The record a key's usage of remittance hour `hourMs` goes to, late usage of earlier months
 * included (it is sent with the current timestamp, so to the customer the marketplace knows now):
 * 1. the contract in force at the hour that supplies the identifiers (the license contract first,
 *    else the newest start: billing.md's license rule);
 * 2. none in force (the contract ended, earlier months still owe): the newest contract that
 *    started by then;
 * 3. none at all: on AWS the key's billing account with the catalog's product code (a product
 *    billed without contracts); on Azure nothing (a resource and plan exist only in a contract).
 * The same function decides the record's identity when the hour's window closes and when a
 * key's bill is computed, so the two cannot disagree.
 */
export function recordTargetOf(key: RemittanceKey, entry: CatalogMetric | null, contracts: readonly Contract[], hourMs: number): RecordTarget {
  const marketplace = key.billingProvider;
  const dimension = entry?.dimensions[marketplace] ?? null;
  if (!entry || dimension === null) {
    return { problem: 'unsupported_metric', reason: entry ? `${entry.productTag} ${entry.metric} has no ${marketplace} dimension in the catalog, so it cannot be remitted to ${marketplace}` : `${key.productTag} ${key.metric} is not in the product catalog` };
  }
  const mine = contracts.filter((c) => c.billingProvider === marketplace && c.productTag === key.productTag && c.billingAccountId === key.billingAccountId && customerOf(c, marketplace) !== null);
  const inForce = selectTargetContract(activeContracts(mine, hourMs), hourMs);
  const chosen = inForce ?? [...mine].filter((c) => startOf(c) <= hourMs).sort((a, b) => startOf(b) - startOf(a) || a.contractId.localeCompare(b.contractId))[0];
  if (chosen) return { customer: customerOf(chosen, marketplace)!, dimension };
  if (marketplace === 'aws') {
    if (entry.awsProductCode) return { customer: { marketplace: 'aws', productCode: entry.awsProductCode, customerAwsAccountId: key.billingAccountId, licenseArn: null }, dimension };
    return { problem: 'usage_context_lookup', reason: `no contract carries an AWS product code for ${key.productTag} of billing account ${key.billingAccountId}, and the catalog names no awsProductCode; add a contract with it` };
  }
  return { problem: 'usage_context_lookup', reason: `no contract carries the Azure resource id and plan id for ${key.productTag} of billing account ${key.billingAccountId}; add a contract with them` };
}
