// AWS Marketplace Metering: what each answer means. Pure (no I/O): every AWS answer (per-record
// status, unprocessed record, service error, transport failure) becomes a SendOutcome here; aws.ts
// sends, and adds only what needs the send's context (its prechecks, and an expiry answer to a
// re-send after a lost answer read as ambiguous).

import type { UsageRecord as AwsUsageRecord, UsageRecordResult } from '@aws-sdk/client-marketplace-metering';
import type { SendOutcome, UsageRecord } from './types';

export function awsCustomer(r: UsageRecord) {
  if (r.customer.marketplace !== 'aws') throw new Error(`record ${r.recordId} is for ${r.customer.marketplace}, not AWS`);
  return r.customer;
}

function matchKey(customer: string | undefined, license: string | undefined | null, dimension: string | undefined, timestampMs: number | undefined): string {
  // Whole seconds: the wire carries epoch seconds, so sub-second parts may not survive the trip.
  return [customer ?? '', license ?? '', dimension ?? '', timestampMs === undefined ? '' : Math.round(timestampMs / 1000)].join('\u0000');
}

/**
 * Per-record outcomes, matched by (customer, license, dimension, timestamp) rather than by
 * position, since AWS does not promise to keep the order.
 */
export function classifyResults(records: UsageRecord[], results: UsageRecordResult[], unprocessed: AwsUsageRecord[]): SendOutcome[] {
  const pending = new Map<string, number[]>();
  records.forEach((r, i) => {
    const c = awsCustomer(r);
    const k = matchKey(c.customerAwsAccountId, c.licenseArn, r.dimension, r.timestampMs);
    pending.set(k, [...(pending.get(k) ?? []), i]);
  });
  const take = (u: AwsUsageRecord | undefined): number | undefined => {
    const k = matchKey(u?.CustomerAWSAccountId ?? u?.CustomerIdentifier, u?.LicenseArn, u?.Dimension, u?.Timestamp?.getTime());
    return pending.get(k)?.shift();
  };
  const outcomes: (SendOutcome | undefined)[] = records.map(() => undefined);
  for (const res of results) {
    const i = take(res.UsageRecord);
    if (i !== undefined) outcomes[i] = classifyStatus(res);
  }
  for (const u of unprocessed) {
    const i = take(u);
    if (i !== undefined) outcomes[i] = { kind: 'retryable', code: 'marketplace_unavailable', reason: 'AWS returned the record as unprocessed (a transient service-side problem); send it again' };
  }
  return outcomes.map(
    (o) => o ?? { kind: 'ambiguous', reason: 'AWS answered the call without a result for this record; an identical re-send will tell' },
  );
}

function classifyStatus(res: UsageRecordResult): SendOutcome {
  switch (res.Status) {
    case 'Success':
      if (!res.MeteringRecordId) return { kind: 'ambiguous', reason: 'AWS reported Success without a MeteringRecordId' };
      return { kind: 'accepted', receiptId: res.MeteringRecordId };
    case 'CustomerNotSubscribed':
      return {
        kind: 'terminal',
        code: 'marketplace_customer_not_subscribed',
        reason: 'AWS says the customer has no active subscription to this product (or the account id is wrong or suspended); nothing was billed',
      };
    case 'DuplicateRecord':
      // An identical re-send would have been Success: a different quantity was billed first.
      return {
        kind: 'terminal',
        code: 'marketplace_duplicate_record',
        reason: 'AWS already holds a record with a different quantity for this customer, dimension and hour; that first quantity stays billed and this one was not',
      };
    default:
      return { kind: 'terminal', code: 'unknown', reason: `AWS returned an unknown record status '${String(res.Status)}'; not billed as far as we know` };
  }
}

const THROTTLING = new Set(['ThrottlingException', 'Throttling', 'TooManyRequestsException', 'RequestLimitExceeded', 'SlowDown', 'RequestThrottled']);
// Failures while connecting: the request never left, so sending again is plainly safe.
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENETDOWN']);

const WHAT_TO_FIX: Record<string, string> = {
  InvalidUsageDimensionException: 'the dimension is not defined on the AWS product: fix the catalog mapping or the listing',
  InvalidProductCodeException: 'the product code does not match a published AWS product: fix the contract',
  InvalidLicenseException: 'the LicenseArn is invalid, not the customer\'s, or outside its activation period: fix the contract',
  InvalidCustomerIdentifierException: 'AWS does not know this customer: fix the contract',
  InvalidUsageAllocationsException: 'the usage allocations do not add up',
  InvalidTagException: 'a usage allocation tag is invalid',
  DisabledApiException: 'metering is not enabled in this AWS region',
  ValidationException: 'the request broke an AWS Marketplace rule',
  SerializationException: 'AWS could not read the request',
  AccessDeniedException: 'the AWS credentials may not call BatchMeterUsage',
  UnrecognizedClientException: 'AWS does not recognise the credentials',
  InvalidSignatureException: 'AWS rejected the request signature',
  MissingAuthenticationTokenException: 'the request was not signed',
  IncompleteSignatureException: 'the request signature is incomplete',
};

interface SdkishError {
  name?: string;
  message?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number; requestId?: string };
}

/** A whole call failed: one outcome for every record in it. */
export function classifyError(err: unknown): SendOutcome {
  const e = (err ?? {}) as SdkishError;
  const name = e.name ?? 'Error';
  const message = e.message ?? String(err);
  const status = e.$metadata?.httpStatusCode;
  if (name === 'CredentialsProviderError') {
    return { kind: 'retryable', code: 'marketplace_unavailable', reason: `could not obtain AWS credentials: ${message}` };
  }
  if (status !== undefined) {
    if (THROTTLING.has(name) || status === 429) {
      return { kind: 'retryable', code: 'marketplace_rate_limit', reason: `AWS throttled the call (${name}: ${message}); AWS allows 10 calls a second per account and region`, retryAfterMs: 1000 };
    }
    if (name === 'TimestampOutOfBoundsException') {
      return { kind: 'terminal', code: 'marketplace_window_expired', reason: `AWS rejected the whole call: a record is outside its acceptance window (${message}); nothing was billed` };
    }
    if (status >= 500 || name === 'InternalServiceErrorException') {
      return { kind: 'retryable', code: 'marketplace_unavailable', reason: `AWS Marketplace Metering failed (${status} ${name}: ${message})` };
    }
    if (status >= 400) {
      const fix = WHAT_TO_FIX[name] ?? 'AWS rejected the request';
      return { kind: 'terminal', code: 'marketplace_rejected', reason: `${fix} (${name}: ${message}); nothing was billed` };
    }
  }
  if ((e.code && NOT_SENT_CODES.has(e.code)) || /did not establish a connection/.test(message)) {
    return { kind: 'retryable', code: 'marketplace_unavailable', reason: `could not reach AWS Marketplace Metering (${e.code ?? name}): nothing was sent` };
  }
  // Sent, but no readable answer (timeout, dropped connection, garbled body): it may be billed.
  return { kind: 'ambiguous', reason: `no answer from AWS Marketplace Metering after sending (${e.code ?? name}: ${message})` };
}

/** What is safe to log about an SDK error: never the request, its headers or credentials. */
export function describeError(err: unknown): Record<string, unknown> {
  const e = (err ?? {}) as SdkishError;
  return { name: e.name, message: e.message, code: e.code, httpStatus: e.$metadata?.httpStatusCode, requestId: e.$metadata?.requestId };
}
