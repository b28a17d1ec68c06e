// The one interface workflows and activities use to talk to any marketplace. AWS and Azure
// live behind it; a third marketplace (Google Cloud) is one more implementation of
// MarketplaceClient and one more entry in the registry, with no workflow change.

import type { Marketplace } from '../domain/key';
import type { MarketplaceCustomer } from '../domain/record';

/** Error codes shown to operators (billing.md keeps these from the original system). */
export const ERROR_CODES = [
  'inactive',
  'redundant',
  'subscription_not_found',
  'subscription_terminated',
  'usage_context_lookup',
  'unsupported_metric',
  'marketplace_rate_limit',
  'marketplace_customer_not_subscribed',
  'marketplace_duplicate_record',
  'marketplace_unavailable',
  'marketplace_rejected',
  'marketplace_window_expired',
  'contract_missing',
  'marketplace_unconfirmed',
  'unknown',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** One usage record: one customer, one dimension, one hour. Quantity in whole billing units. */
export interface UsageRecord {
  /** Our id for the record (the remittance id); used to map per-record results back. */
  recordId: string;
  customer: MarketplaceCustomer;
  dimension: string;
  /** Whole billing units, > 0. */
  quantity: number;
  /** Start of the remittance hour, epoch ms. Fixed per record, so retries are byte-identical. */
  timestampMs: number;
}

/**
 * Every marketplace answer, classified once, here and nowhere else:
 * - accepted: the marketplace billed it (receipt id kept);
 * - retryable: try again later (throttling, 5xx, network, timeouts, unprocessed);
 * - ambiguous: we do not know whether it was recorded (the answer was lost);
 * - terminal: it will never succeed as sent; an operator must act (code + human reason).
 */
export type SendOutcome =
  | { kind: 'accepted'; receiptId: string; detail?: string }
  | { kind: 'retryable'; code: ErrorCode; reason: string; retryAfterMs?: number }
  | { kind: 'ambiguous'; reason: string }
  | { kind: 'terminal'; code: ErrorCode; reason: string };

/** What the marketplace's own records say about one of our records. */
export type LookupResult =
  | { found: true; quantity: number; receiptId: string }
  | { found: false }
  | { found: 'unknown'; reason: string };

export interface MarketplaceClient {
  readonly marketplace: Marketplace;
  /** Largest number of records one call may carry. */
  readonly maxBatchSize: number;
  /**
   * Send records in one marketplace call and return one outcome per record, in order.
   * Never throws for a marketplace answer; only programming errors throw.
   */
  send(records: UsageRecord[]): Promise<SendOutcome[]>;
  /**
   * Find out whether the marketplace recorded this record (after an ambiguous outcome).
   * AWS answers by an identical re-send; Azure by reading its usage API.
   */
  resolve(record: UsageRecord): Promise<SendOutcome>;
}
