// AWS Marketplace Metering client: one BatchMeterUsage call per send(), and resolve() by an
// identical re-send (AWS keeps no readable record). The transport is the AWS SDK; what each answer
// means is aws-classify.ts. SDK retries are off: Temporal owns retries, with backoff chosen per
// outcome class.

import {
  BatchMeterUsageCommand,
  MarketplaceMeteringClient,
  type MarketplaceMeteringClientConfig,
  type UsageRecord as AwsUsageRecord,
} from '@aws-sdk/client-marketplace-metering';
import type { Logger } from '../lib/log';
import { awsCustomer, classifyError, classifyResults, describeError } from './aws-classify';
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
