// What the AWS emulator remembers, and the rules that need it: the records "AWS billed" (one per
// keyspace, customer, dimension and hour; an identical re-send is idempotent, another quantity a
// DuplicateRecord), the calls as they arrived, the per-account rate window, and the batch-wide
// checks that reject a whole call. Record-level faults (not-subscribed, unprocessed) apply here.

import { randomUUID } from 'node:crypto';
import { AwsError, validation, type ParsedRecord, type ParsedRequest } from './aws-wire';
import type { FaultKind, FaultQueue } from './faults';

const RECORD_FAULTS: readonly FaultKind[] = ['not-subscribed', 'unprocessed'];

/** A record the emulator accepted: what "AWS billed". */
export interface AwsEmulatorRecord {
  receiptId: string;
  account: string;
  region: string;
  productCode: string | null;
  licenseArn: string | null;
  customer: string;
  dimension: string;
  quantity: number;
  /** ISO-8601 instant of the record's Timestamp. */
  timestamp: string;
  timestampMs: number;
  /** ISO-8601 start of the hour slot the record is deduplicated in. */
  hour: string;
  /** floor(timestampMs / hourMs). */
  hourSlot: number;
  acceptedAt: string;
}

/** One BatchMeterUsage call as it arrived, for proving rate and batching limits. */
export interface AwsEmulatorCall {
  requestId: string;
  /** Arrival, epoch ms with sub-ms precision (monotonic within the process). */
  at: number;
  account: string | null;
  region: string | null;
  /** Number of UsageRecords in the request (0 when the body could not be read). */
  recordCount: number;
  /** `ok` or the error type returned, or `timeout` / `lost-response` for those faults. */
  outcome: string;
  httpStatus: number | null;
  succeeded: number;
  notSubscribed: number;
  duplicates: number;
  unprocessed: number;
  /** The SDK's `amz-sdk-request` header (attempt=N; max=M), to spot SDK-level retries. */
  sdkRequest: string | null;
}

export interface AwsRules {
  hourMs: number;
  acceptanceHours: number;
  /** How far in the future a timestamp may be (clock skew). */
  futureToleranceMs: number;
  /** Calls admitted per second per account and region. */
  rateLimit: number;
  dimensions: ReadonlySet<string>;
  /** Known product codes; undefined accepts any well-formed one. */
  productCodes: ReadonlySet<string> | undefined;
  unsubscribed: ReadonlySet<string>;
  /** Clock for the acceptance window (epoch ms). */
  now: () => number;
}

export interface BatchReply {
  Results: { UsageRecord: Record<string, unknown>; MeteringRecordId: string; Status: string }[];
  UnprocessedRecords: Record<string, unknown>[];
}

interface Stored extends AwsEmulatorRecord {
  allocations: string;
}

function keyspaceOf(productCode: string | null, r: ParsedRecord): string {
  return r.licenseArn ? `license:${r.licenseArn}` : `product:${productCode ?? ''}`;
}

function spaceKey(region: string, r: ParsedRecord): string {
  return `${region}\u0000${r.customer}\u0000${r.hourSlot}`;
}

function publicRecord(r: Stored): AwsEmulatorRecord {
  const { allocations: _allocations, ...rest } = r;
  return rest;
}

export class AwsMeteringStore {
  private stored = new Map<string, Stored>();
  private accepted: Stored[] = [];
  private callLog: AwsEmulatorCall[] = [];
  // Keyspace of each (region, customer, hour slot): product-code records and license records
  // for the same customer and hour double-bill on AWS, so the emulator refuses the mix.
  private keyspaces = new Map<string, Set<string>>();
  private admitted = new Map<string, number[]>();

  constructor(
    private readonly rules: AwsRules,
    private readonly faults: FaultQueue,
  ) {}

  reset(): void {
    this.stored = new Map();
    this.accepted = [];
    this.callLog = [];
    this.keyspaces = new Map();
    this.admitted = new Map();
  }

  records(): AwsEmulatorRecord[] {
    return this.accepted.map(publicRecord);
  }

  calls(): AwsEmulatorCall[] {
    return [...this.callLog];
  }

  logCall(call: AwsEmulatorCall): void {
    this.callLog.push(call);
  }

  /** Sliding one-second window per account and region: at most `rateLimit` admitted calls. */
  overRate(key: string, t: number): boolean {
    const times = (this.admitted.get(key) ?? []).filter((x) => x > t - 1000);
    this.admitted.set(key, times);
    return times.length >= this.rules.rateLimit;
  }

  admit(key: string, t: number): void {
    const times = this.admitted.get(key) ?? [];
    times.push(t);
    this.admitted.set(key, times);
  }

  /** Rules whose violation rejects the whole batch; nothing is stored when one fails. */
  checkWholeBatch(request: ParsedRequest, region: string): void {
    const { productCode, records } = request;
    const { productCodes, dimensions } = this.rules;
    if (productCode !== null && productCodes && !productCodes.has(productCode)) {
      throw new AwsError('InvalidProductCodeException', `Product code ${productCode} does not match a published product`);
    }
    for (const r of records) {
      if (r.licenseArn && productCode !== null) {
        throw validation(`Do not send ProductCode with LicenseArn records: records with both for the same customer and hour are billed twice (customer ${r.customer})`);
      }
      if (!r.licenseArn && productCode === null) throw new AwsError('InvalidProductCodeException', `ProductCode is required for records without LicenseArn (customer ${r.customer})`);
    }
    const unknown = records.find((r) => !dimensions.has(r.dimension));
    if (unknown) throw new AwsError('InvalidUsageDimensionException', `Dimension ${unknown.dimension} is not defined for this product`);
    this.checkWindow(records);
    this.checkKeyspaces(request, region);
  }

  private checkWindow(records: ParsedRecord[]): void {
    const { acceptanceHours, hourMs, futureToleranceMs } = this.rules;
    const t = this.rules.now();
    for (const r of records) {
      if (t - r.timestampMs > acceptanceHours * hourMs || r.timestampMs - t > futureToleranceMs) {
        throw new AwsError(
          'TimestampOutOfBoundsException',
          `Timestamp ${new Date(r.timestampMs).toISOString()} of a record for customer ${r.customer} is outside the allowed range (${acceptanceHours} hours back); the entire batch was not processed`,
        );
      }
    }
  }

  private checkKeyspaces(request: ParsedRequest, region: string): void {
    for (const r of request.records) {
      const space = keyspaceOf(request.productCode, r);
      const existing = this.keyspaces.get(spaceKey(region, r));
      const other = existing && [...existing].find((s) => s.split(':')[0] !== space.split(':')[0]);
      if (other) {
        throw validation(`Customer ${r.customer} already has ${other.startsWith('license') ? 'LicenseArn' : 'ProductCode'} records in hour ${new Date(r.hourSlot * this.rules.hourMs).toISOString()}: mixing ProductCode and LicenseArn records for one customer and hour bills twice`);
      }
    }
  }

  /** Each record's result; accepted records are stored, and the call's counters kept. */
  processRecords(request: ParsedRequest, account: string, region: string, call: AwsEmulatorCall): BatchReply {
    const reply: BatchReply = { Results: [], UnprocessedRecords: [] };
    for (const r of request.records) {
      const fault = this.faults.take({ customer: r.customer, dimension: r.dimension }, RECORD_FAULTS);
      if (fault === 'unprocessed') {
        reply.UnprocessedRecords.push(r.wire);
        call.unprocessed += 1;
      } else if (fault === 'not-subscribed' || this.rules.unsubscribed.has(r.customer)) {
        reply.Results.push({ UsageRecord: r.wire, MeteringRecordId: randomUUID(), Status: 'CustomerNotSubscribed' });
        call.notSubscribed += 1;
      } else {
        reply.Results.push(this.meter(r, request.productCode, account, region, call));
      }
    }
    return reply;
  }

  /** One record for one keyspace, customer, dimension and hour: the first quantity stays billed. */
  private meter(r: ParsedRecord, productCode: string | null, account: string, region: string, call: AwsEmulatorCall): BatchReply['Results'][number] {
    const space = keyspaceOf(productCode, r);
    const key = [region, space, r.customer, r.dimension, r.hourSlot].join('\u0000');
    const prior = this.stored.get(key);
    if (prior) {
      if (prior.quantity === r.quantity && prior.allocations === r.allocations) {
        // Identical re-send: idempotent, same receipt.
        call.succeeded += 1;
        return { UsageRecord: r.wire, MeteringRecordId: prior.receiptId, Status: 'Success' };
      }
      // A different quantity for a metered hour: the first one stays billed.
      call.duplicates += 1;
      return { UsageRecord: r.wire, MeteringRecordId: randomUUID(), Status: 'DuplicateRecord' };
    }
    const rec: Stored = {
      receiptId: randomUUID(),
      account,
      region,
      productCode: r.licenseArn ? null : productCode,
      licenseArn: r.licenseArn,
      customer: r.customer,
      dimension: r.dimension,
      quantity: r.quantity,
      timestamp: new Date(r.timestampMs).toISOString(),
      timestampMs: r.timestampMs,
      hour: new Date(r.hourSlot * this.rules.hourMs).toISOString(),
      hourSlot: r.hourSlot,
      acceptedAt: new Date().toISOString(),
      allocations: r.allocations,
    };
    this.stored.set(key, rec);
    this.accepted.push(rec);
    const sk = spaceKey(region, r);
    this.keyspaces.set(sk, (this.keyspaces.get(sk) ?? new Set<string>()).add(space));
    call.succeeded += 1;
    return { UsageRecord: r.wire, MeteringRecordId: rec.receiptId, Status: 'Success' };
  }
}
