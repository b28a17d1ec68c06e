// AWS Marketplace Metering client: one BatchMeterUsage call per send(), and the one place where
// every AWS answer (per-record status, service error, transport failure) becomes a SendOutcome.
// SDK retries are off: Temporal owns retries, with backoff chosen per outcome class.

import {
  BatchMeterUsageCommand,
  MarketplaceMeteringClient,
  type MarketplaceMeteringClientConfig,
  type UsageRecord as AwsUsageRecord,
  type UsageRecordResult,
} from '@aws-sdk/client-marketplace-metering';
import type { Logger } from '../lib/log';
import type { MarketplaceClient, SendOutcome, UsageRecord } from './types';

export const AWS_MAX_BATCH_SIZE = 25;
const MAX_QUANTITY = 2_147_483_647;

export interface AwsMarketplaceOptions {
  /** Metering endpoint override (the emulator); omitted in production. */
  endpoint?: string;
  region: string;
  /** Omitted: the standard AWS credential chain. */
  credentials?: MarketplaceMeteringClientConfig['credentials'];
  /** Whole request, connect to last byte; default 10 s. Past it the outcome is ambiguous. */
  requestTimeoutMs?: number;
  /** Connecting alone; default 3 s. Failing here means nothing was sent. */
  connectTimeoutMs?: number;
  /** AWS rejects records older than this many hours. */
  acceptanceHours: number;
  hourMs: number;
  /**
   * Records within this much of the window's end are treated as expired, so that clock skew and
   * transit time cannot make AWS reject a whole batch for one record. Default hourMs / 60.
   */
  expiryMarginMs?: number;
  log?: Logger;
  now?: () => number;
}

export interface AwsMarketplaceClient extends MarketplaceClient {
  readonly marketplace: 'aws';
  /** True when AWS would (or might, within the margin) reject the record as too old. */
  isExpired(record: UsageRecord): boolean;
  /** Release pooled sockets. */
  close(): void;
}

/**
 * Records of one call must share a product and a keyspace (all LicenseArn or none), since the
 * request carries at most one ProductCode. Use as (part of) the batcher's group key.
 */
export function awsGroupKey(record: UsageRecord, region: string): string {
  if (record.customer.marketplace !== 'aws') throw new Error(`not an AWS record: ${record.recordId}`);
  return ['aws', region, record.customer.productCode, record.customer.licenseArn ? 'license' : 'product'].join('|');
}

export function createAwsMarketplace(options: AwsMarketplaceOptions): AwsMarketplaceClient {
  const now = options.now ?? Date.now;
  const windowMs = options.acceptanceHours * options.hourMs;
  const marginMs = options.expiryMarginMs ?? options.hourMs / 60;
  const log = options.log;
  const sdk = new MarketplaceMeteringClient({
    region: options.region,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    maxAttempts: 1,
    requestHandler: {
      requestTimeout: options.requestTimeoutMs ?? 10_000,
      connectionTimeout: options.connectTimeoutMs ?? 3_000,
      throwOnRequestTimeout: true,
    },
  });

  function isExpired(record: UsageRecord): boolean {
    return now() - record.timestampMs > windowMs - marginMs;
  }

  async function send(records: UsageRecord[]): Promise<SendOutcome[]> {
    if (records.length === 0) return [];
    if (records.length > AWS_MAX_BATCH_SIZE) throw new Error(`BatchMeterUsage takes at most ${AWS_MAX_BATCH_SIZE} records, got ${records.length}`);
    const first = awsCustomer(records[0] as UsageRecord);
    const licensed = Boolean(first.licenseArn);
    for (const r of records) {
      const c = awsCustomer(r);
      if (c.productCode !== first.productCode) throw new Error(`records of one BatchMeterUsage call must share a product code (${first.productCode} vs ${c.productCode})`);
      if (Boolean(c.licenseArn) !== licensed) throw new Error('records of one BatchMeterUsage call must all carry a LicenseArn or none (awsGroupKey separates them)');
    }

    // Records that cannot succeed stay out of the call, so they cannot sink the others.
    const outcomes: (SendOutcome | undefined)[] = records.map((r) => precheck(r));
    const sending = records.map((r, i) => ({ r, i })).filter(({ i }) => outcomes[i] === undefined);
    if (sending.length === 0) return outcomes as SendOutcome[];

    const command = new BatchMeterUsageCommand({
      // LicenseArn records identify their product; AWS bills twice if ProductCode comes along.
      ...(licensed ? {} : { ProductCode: first.productCode }),
      UsageRecords: sending.map(({ r }) => toWire(r)),
    });
    try {
      const out = await sdk.send(command);
      const perRecord = classifyResults(sending.map(({ r }) => r), out.Results ?? [], out.UnprocessedRecords ?? []);
      sending.forEach(({ i }, k) => (outcomes[i] = perRecord[k]));
      log?.debug({ records: sending.length, requestId: out.$metadata.requestId, productCode: first.productCode }, 'BatchMeterUsage answered');
    } catch (err) {
      const outcome = classifyError(err);
      log?.warn({ records: sending.length, productCode: first.productCode, error: describeError(err), outcome: outcome.kind }, 'BatchMeterUsage failed');
      for (const { i } of sending) outcomes[i] = outcome;
    }
    return outcomes as SendOutcome[];
  }

  function precheck(r: UsageRecord): SendOutcome | undefined {
    const c = awsCustomer(r);
    if (!Number.isInteger(r.quantity) || r.quantity < 0 || r.quantity > MAX_QUANTITY) {
      return { kind: 'terminal', code: 'marketplace_rejected', reason: `AWS takes whole quantities from 0 to ${MAX_QUANTITY}; got ${r.quantity}` };
    }
    if (!/^[0-9]+$/.test(c.customerAwsAccountId)) {
      return { kind: 'terminal', code: 'marketplace_rejected', reason: `customer AWS account id must be digits, got '${c.customerAwsAccountId}'` };
    }
    if (!Number.isFinite(r.timestampMs)) return { kind: 'terminal', code: 'marketplace_rejected', reason: 'record has no valid timestamp' };
    if (isExpired(r)) {
      return {
        kind: 'terminal',
        code: 'marketplace_window_expired',
        reason: `AWS accepts records up to ${options.acceptanceHours} hours old; the record for ${new Date(r.timestampMs).toISOString()} is too old to send`,
      };
    }
    return undefined;
  }

  async function resolve(record: UsageRecord): Promise<SendOutcome> {
    // AWS keeps no readable record; an identical re-send is its lookup: it returns Success
    // with the original MeteringRecordId if the lost call went through, or records it now.
    const [outcome] = await send([record]);
    if (!outcome) throw new Error('send returned no outcome');
    if (outcome.kind === 'terminal' && outcome.code === 'marketplace_window_expired') {
      return {
        kind: 'ambiguous',
        reason: `cannot confirm whether AWS recorded ${record.recordId}: its acceptance window has closed, so it can no longer be re-sent, and AWS has no read API (check the seller reports)`,
      };
    }
    return outcome;
  }

  return {
    marketplace: 'aws',
    maxBatchSize: AWS_MAX_BATCH_SIZE,
    send,
    resolve,
    isExpired,
    close: () => sdk.destroy(),
  };
}

function awsCustomer(r: UsageRecord) {
  if (r.customer.marketplace !== 'aws') throw new Error(`record ${r.recordId} is for ${r.customer.marketplace}, not AWS`);
  return r.customer;
}

function toWire(r: UsageRecord): AwsUsageRecord {
  const c = awsCustomer(r);
  return {
    // Fixed per record, so every retry is byte-identical and AWS deduplicates it.
    Timestamp: new Date(r.timestampMs),
    CustomerAWSAccountId: c.customerAwsAccountId,
    ...(c.licenseArn ? { LicenseArn: c.licenseArn } : {}),
    Dimension: r.dimension,
    Quantity: r.quantity,
  };
}

function matchKey(customer: string | undefined, license: string | undefined | null, dimension: string | undefined, timestampMs: number | undefined): string {
  // Whole seconds: the wire carries epoch seconds, so sub-second parts may not survive the trip.
  return [customer ?? '', license ?? '', dimension ?? '', timestampMs === undefined ? '' : Math.round(timestampMs / 1000)].join('\u0000');
}

/**
 * Per-record outcomes, matched by (customer, license, dimension, timestamp) rather than by
 * position, since AWS does not promise to keep the order.
 */
function classifyResults(records: UsageRecord[], results: UsageRecordResult[], unprocessed: AwsUsageRecord[]): SendOutcome[] {
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
function describeError(err: unknown): Record<string, unknown> {
  const e = (err ?? {}) as SdkishError;
  return { name: e.name, message: e.message, code: e.code, httpStatus: e.$metadata?.httpStatusCode, requestId: e.$metadata?.requestId };
}
