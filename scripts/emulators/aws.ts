// AWS Marketplace Metering emulator (BatchMeterUsage only). It speaks the real awsJson1_1 wire
// protocol so the real MarketplaceMeteringClient works against it unchanged, and it enforces the
// marketplace's rules strictly (../shared/spec/marketplaces.md) so that a product bug that real
// AWS would bill silently (a double record, a stale record in a batch, a rate overrun) fails
// loudly here. Where AWS is lenient or undocumented, the emulator chooses the stricter reading.

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import { FaultQueue, sharedAdminRoute, type FaultKind } from './faults';

/** The catalog's AWS dimensions; a deployment with another catalog passes its own list. */
export const DEFAULT_AWS_DIMENSIONS = ['four_vcpu_hour', 'control_plane', 'managed_node', 'infrastructure', 'vCPU_hours'] as const;

const TARGET_PREFIX = 'AWSMPMeteringService.';
const BATCH_METER_USAGE = `${TARGET_PREFIX}BatchMeterUsage`;
const CONTENT_TYPE = 'application/x-amz-json-1.1';
const MAX_RECORDS = 25;
const MAX_QUANTITY = 2_147_483_647;
const PRODUCT_CODE_RE = /^[-a-zA-Z0-9/=:_.@]*$/;
const ACCOUNT_ID_RE = /^[0-9]+$/;
const LICENSE_ARN_RE = /^arn:aws[a-zA-Z-]*:[A-Za-z0-9][A-Za-z0-9_/.-]{0,62}:[A-Za-z0-9_/.-]{0,63}:[A-Za-z0-9_/.-]{0,63}:[A-Za-z0-9][A-Za-z0-9:_/+=,@.-]{0,1023}$/;
const TAG_RE = /^[a-zA-Z0-9+ -=._:/@]+$/;
// Past 1 MB the request is rejected, but the emulator keeps reading (so the client sees the
// answer rather than EPIPE) up to this much, then gives up on the connection.
const HARD_BODY_LIMIT = 16 * 1024 * 1024;

const BATCH_FAULTS: readonly FaultKind[] = ['throttle', 'server-error', 'timeout', 'lost-response', 'expired'];
const RECORD_FAULTS: readonly FaultKind[] = ['not-subscribed', 'unprocessed'];

export interface AwsEmulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** Length of one "hour" in ms: the dedup slot and the unit of the acceptance window. */
  hourMs: number;
  /** Records older than this many hours are rejected (TimestampOutOfBoundsException). */
  acceptanceHours: number;
  /** BatchMeterUsage calls admitted per second per account and region (AWS: 10). */
  rateLimitPerSecond?: number;
  /** Known dimension API names; any other gives InvalidUsageDimensionException. */
  dimensions?: readonly string[];
  /** Known product codes; when omitted, any well-formed product code is accepted. */
  productCodes?: readonly string[];
  /** Customers (AWS account ids) without an active subscription. */
  unsubscribedCustomers?: readonly string[];
  /** How far in the future a timestamp may be (clock skew); default hourMs / 12 (5 min). */
  futureToleranceMs?: number;
  /** Requests of this many bytes or more are rejected; default 1 MiB. */
  maxBodyBytes?: number;
  /** Clock for the acceptance window (epoch ms). Rate limiting always uses real time. */
  now?: () => number;
}

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

export interface AwsEmulator {
  url: string;
  host: string;
  port: number;
  records(): AwsEmulatorRecord[];
  calls(): AwsEmulatorCall[];
  faults: FaultQueue;
  reset(): void;
  close(): Promise<void>;
}

class AwsError extends Error {
  constructor(readonly type: string, message: string, readonly status = 400) {
    super(message);
  }
}

interface WireRecord {
  Timestamp: number;
  CustomerIdentifier?: string;
  CustomerAWSAccountId?: string;
  LicenseArn?: string;
  Dimension: string;
  Quantity: number;
  UsageAllocations?: unknown[];
}

interface ParsedRecord {
  wire: Record<string, unknown>;
  customer: string;
  licenseArn: string | null;
  dimension: string;
  quantity: number;
  timestampMs: number;
  hourSlot: number;
  /** Canonical allocations, so that an identical re-send compares equal. */
  allocations: string;
}

interface Stored extends AwsEmulatorRecord {
  allocations: string;
}

function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

export async function startAwsEmulator(options: AwsEmulatorOptions): Promise<AwsEmulator> {
  const hourMs = options.hourMs;
  if (!(hourMs > 0)) throw new Error('hourMs must be positive');
  if (!(options.acceptanceHours > 0)) throw new Error('acceptanceHours must be positive');
  const windowMs = options.acceptanceHours * hourMs;
  const futureToleranceMs = options.futureToleranceMs ?? hourMs / 12;
  const rateLimit = options.rateLimitPerSecond ?? 10;
  const dimensions = new Set(options.dimensions ?? DEFAULT_AWS_DIMENSIONS);
  const productCodes = options.productCodes ? new Set(options.productCodes) : undefined;
  const unsubscribed = new Set(options.unsubscribedCustomers ?? []);
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const now = options.now ?? Date.now;

  const faults = new FaultQueue();
  let stored = new Map<string, Stored>();
  let accepted: Stored[] = [];
  let calls: AwsEmulatorCall[] = [];
  // Keyspace of each (region, customer, hour slot): product-code records and license records
  // for the same customer and hour double-bill on AWS, so the emulator refuses the mix.
  let keyspaces = new Map<string, Set<string>>();
  let admitted = new Map<string, number[]>();
  const hanging = new Set<http.ServerResponse>();

  function reset(): void {
    stored = new Map();
    accepted = [];
    calls = [];
    keyspaces = new Map();
    admitted = new Map();
    faults.clear();
  }

  /** Sliding one-second window per account and region: at most `rateLimit` admitted calls. */
  function overRate(key: string, t: number): boolean {
    const times = (admitted.get(key) ?? []).filter((x) => x > t - 1000);
    admitted.set(key, times);
    return times.length >= rateLimit;
  }

  function admit(key: string, t: number): void {
    const times = admitted.get(key) ?? [];
    times.push(t);
    admitted.set(key, times);
  }

  function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  function sendAwsError(res: http.ServerResponse, requestId: string, err: AwsError): void {
    sendJson(res, err.status, { __type: err.type, message: err.message }, { 'x-amzn-RequestId': requestId, 'x-amzn-ErrorType': err.type });
  }

  function handleBatchMeterUsage(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer | null): void {
    const requestId = randomUUID();
    const call: AwsEmulatorCall = {
      requestId, at: wallClockMs(), account: null, region: null, recordCount: 0, outcome: 'ok', httpStatus: null,
      succeeded: 0, notSubscribed: 0, duplicates: 0, unprocessed: 0, sdkRequest: headerValue(req, 'amz-sdk-request'),
    };
    calls.push(call);
    const fail = (err: AwsError): void => {
      call.outcome = err.type;
      call.httpStatus = err.status;
      sendAwsError(res, requestId, err);
    };
    let fault: FaultKind | undefined;
    try {
      const { account, region } = parseAuthorization(headerValue(req, 'authorization'));
      call.account = account;
      call.region = region;
      if (body === null) throw new AwsError('ValidationException', `1 validation error detected: request body must be smaller than ${maxBodyBytes} bytes`);
      const request = parseRequest(body);
      call.recordCount = request.records.length;

      const rateKey = `${account}/${region}`;
      const t = wallClockMs();
      if (overRate(rateKey, t)) throw new AwsError('ThrottlingException', `Rate exceeded: more than ${rateLimit} BatchMeterUsage calls in one second for account ${account} in ${region}`);
      fault = takeBatchFault(request.records);
      if (fault === 'throttle') throw new AwsError('ThrottlingException', 'Rate exceeded (injected fault)');
      admit(rateKey, t);
      if (fault === 'server-error') throw new AwsError('InternalServiceErrorException', 'An internal error has occurred (injected fault)', 500);
      if (fault === 'expired') throw new AwsError('TimestampOutOfBoundsException', 'One or more records are outside the allowed time range (injected fault); nothing was processed');
      if (fault === 'timeout') {
        // Never answer: the socket stays open until the client gives up or the emulator closes.
        call.outcome = 'timeout';
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }

      checkWholeBatch(request, region);
      const reply = processRecords(request, account, region, call);
      if (fault === 'lost-response') {
        call.outcome = 'lost-response';
        // The records are stored; only the answer is lost.
        res.socket?.destroy();
        return;
      }
      call.httpStatus = 200;
      sendJson(res, 200, reply, { 'x-amzn-RequestId': requestId });
    } catch (err) {
      if (fault === 'lost-response') {
        // Whatever the answer (here an error), it never reaches the client.
        call.outcome = 'lost-response';
        res.socket?.destroy();
        return;
      }
      fail(err instanceof AwsError ? err : new AwsError('InternalServiceErrorException', `emulator bug: ${(err as Error).message}`, 500));
    }
  }

  /** A batch-level fault fires when any record of the call matches it; one use per call. */
  function takeBatchFault(records: ParsedRecord[]): FaultKind | undefined {
    const seen = new Set<string>();
    for (const r of records) {
      const k = `${r.customer}\u0000${r.dimension}`;
      if (seen.has(k)) continue;
      seen.add(k);
      const kind = faults.take({ customer: r.customer, dimension: r.dimension }, BATCH_FAULTS);
      if (kind) return kind;
    }
    return undefined;
  }

  interface ParsedRequest {
    productCode: string | null;
    records: ParsedRecord[];
  }

  function parseRequest(body: Buffer): ParsedRequest {
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      throw new AwsError('SerializationException', 'request body is not valid JSON');
    }
    if (!json || typeof json !== 'object' || Array.isArray(json)) throw new AwsError('SerializationException', 'request body must be a JSON object');
    const b = json as Record<string, unknown>;
    let productCode: string | null = null;
    if (b.ProductCode !== undefined && b.ProductCode !== null) {
      if (typeof b.ProductCode !== 'string') throw new AwsError('SerializationException', 'ProductCode must be a string');
      if (b.ProductCode.length > 255 || !PRODUCT_CODE_RE.test(b.ProductCode)) {
        throw validation(`Value '${b.ProductCode}' at 'productCode' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[-a-zA-Z0-9/=:_.@]*$ and have length less than or equal to 255`);
      }
      // The SDK model gives ProductCode a default of "": treat it as absent.
      productCode = b.ProductCode === '' ? null : b.ProductCode;
    }
    if (!Array.isArray(b.UsageRecords)) throw validation("Value null at 'usageRecords' failed to satisfy constraint: Member must not be null");
    if (b.UsageRecords.length < 1 || b.UsageRecords.length > MAX_RECORDS) {
      throw validation(`Value at 'usageRecords' failed to satisfy constraint: Member must have length between 1 and ${MAX_RECORDS} (got ${b.UsageRecords.length})`);
    }
    const records = b.UsageRecords.map((r, i) => parseRecord(r, i));
    return { productCode, records };
  }

  function parseRecord(raw: unknown, i: number): ParsedRecord {
    const at = `usageRecords.${i + 1}.member`;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new AwsError('SerializationException', `${at} must be an object`);
    const r = raw as Partial<Record<keyof WireRecord, unknown>>;
    if (typeof r.Timestamp !== 'number' || !Number.isFinite(r.Timestamp)) {
      throw r.Timestamp === undefined ? validation(`Value null at '${at}.timestamp' failed to satisfy constraint: Member must not be null`) : new AwsError('SerializationException', `${at}.timestamp must be epoch seconds`);
    }
    if (typeof r.Dimension !== 'string') throw validation(`Value null at '${at}.dimension' failed to satisfy constraint: Member must not be null`);
    if (r.Dimension.length < 1 || r.Dimension.length > 255) throw validation(`Value at '${at}.dimension' failed to satisfy constraint: Member must have length between 1 and 255`);
    const quantity = r.Quantity ?? 0;
    if (typeof quantity !== 'number' || !Number.isInteger(quantity)) throw new AwsError('SerializationException', `${at}.quantity must be an integer, got ${JSON.stringify(quantity)}`);
    if (quantity < 0 || quantity > MAX_QUANTITY) {
      throw validation(`Value '${quantity}' at '${at}.quantity' failed to satisfy constraint: Member must have value between 0 and ${MAX_QUANTITY}`);
    }
    const legacy = optionalString(r.CustomerIdentifier, `${at}.customerIdentifier`);
    const account = optionalString(r.CustomerAWSAccountId, `${at}.customerAWSAccountId`);
    if (legacy && account) throw validation(`${at}: CustomerIdentifier and CustomerAWSAccountId are mutually exclusive`);
    if (!legacy && !account) throw validation(`${at}: one of CustomerIdentifier or CustomerAWSAccountId is required`);
    if (account && (account.length > 255 || !ACCOUNT_ID_RE.test(account))) {
      throw validation(`Value '${account}' at '${at}.customerAWSAccountId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[0-9]+$`);
    }
    if (legacy && legacy.length > 255) throw validation(`Value at '${at}.customerIdentifier' failed to satisfy constraint: Member must have length less than or equal to 255`);
    const licenseArn = optionalString(r.LicenseArn, `${at}.licenseArn`);
    if (licenseArn && !LICENSE_ARN_RE.test(licenseArn)) throw new AwsError('InvalidLicenseException', `LicenseArn '${licenseArn}' is not a valid license ARN`);
    const allocations = parseAllocations(r.UsageAllocations, quantity, at);
    const timestampMs = Math.round(r.Timestamp * 1000);
    return {
      wire: raw as Record<string, unknown>,
      customer: (account ?? legacy) as string,
      licenseArn: licenseArn ?? null,
      dimension: r.Dimension,
      quantity,
      timestampMs,
      hourSlot: Math.floor(timestampMs / hourMs),
      allocations,
    };
  }

  function parseAllocations(raw: unknown, quantity: number, at: string): string {
    if (raw === undefined || raw === null) return '';
    if (!Array.isArray(raw) || raw.length < 1 || raw.length > 2500) throw validation(`Value at '${at}.usageAllocations' failed to satisfy constraint: Member must have length between 1 and 2500`);
    let sum = 0;
    const tagSets = new Set<string>();
    const canonical: string[] = [];
    for (const a of raw) {
      if (!a || typeof a !== 'object') throw new AwsError('SerializationException', `${at}.usageAllocations members must be objects`);
      const { AllocatedUsageQuantity: q, Tags: tags } = a as Record<string, unknown>;
      if (typeof q !== 'number' || !Number.isInteger(q) || q < 0 || q > MAX_QUANTITY) throw validation(`${at}.usageAllocations: AllocatedUsageQuantity must be an integer between 0 and ${MAX_QUANTITY}`);
      sum += q;
      let tagKey = '';
      if (tags !== undefined) {
        if (!Array.isArray(tags) || tags.length < 1 || tags.length > 5) throw new AwsError('InvalidTagException', 'Tags must be a list of 1 to 5 tags');
        const pairs = tags.map((t) => {
          const { Key: k, Value: v } = (t ?? {}) as Record<string, unknown>;
          if (typeof k !== 'string' || typeof v !== 'string' || k.length < 1 || k.length > 100 || v.length < 1 || v.length > 256 || !TAG_RE.test(k) || !TAG_RE.test(v)) {
            throw new AwsError('InvalidTagException', `invalid tag ${JSON.stringify(t)}`);
          }
          return `${k}=${v}`;
        });
        tagKey = pairs.sort().join('&');
      }
      if (tagSets.has(tagKey)) throw new AwsError('InvalidUsageAllocationsException', 'two allocations have the same tag set');
      tagSets.add(tagKey);
      canonical.push(`${tagKey}:${q}`);
    }
    if (sum !== quantity) throw new AwsError('InvalidUsageAllocationsException', `Sum of allocated usage quantities (${sum}) is not equal to the usage quantity (${quantity})`);
    return canonical.sort().join('|');
  }

  /** Rules whose violation rejects the whole batch; nothing is stored when one fails. */
  function checkWholeBatch(request: ParsedRequest, region: string): void {
    const { productCode, records } = request;
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
    const t = now();
    for (const r of records) {
      if (t - r.timestampMs > windowMs || r.timestampMs - t > futureToleranceMs) {
        throw new AwsError(
          'TimestampOutOfBoundsException',
          `Timestamp ${new Date(r.timestampMs).toISOString()} of a record for customer ${r.customer} is outside the allowed range (${options.acceptanceHours} hours back); the entire batch was not processed`,
        );
      }
    }
    for (const r of records) {
      const space = keyspaceOf(productCode, r);
      const existing = keyspaces.get(spaceKey(region, r));
      const other = existing && [...existing].find((s) => s.split(':')[0] !== space.split(':')[0]);
      if (other) {
        throw validation(`Customer ${r.customer} already has ${other.startsWith('license') ? 'LicenseArn' : 'ProductCode'} records in hour ${new Date(r.hourSlot * hourMs).toISOString()}: mixing ProductCode and LicenseArn records for one customer and hour bills twice`);
      }
    }
  }

  function processRecords(request: ParsedRequest, account: string, region: string, call: AwsEmulatorCall) {
    const results: { UsageRecord: Record<string, unknown>; MeteringRecordId: string; Status: string }[] = [];
    const unprocessedRecords: Record<string, unknown>[] = [];
    for (const r of request.records) {
      const fault = faults.take({ customer: r.customer, dimension: r.dimension }, RECORD_FAULTS);
      if (fault === 'unprocessed') {
        unprocessedRecords.push(r.wire);
        call.unprocessed += 1;
        continue;
      }
      if (fault === 'not-subscribed' || unsubscribed.has(r.customer)) {
        results.push({ UsageRecord: r.wire, MeteringRecordId: randomUUID(), Status: 'CustomerNotSubscribed' });
        call.notSubscribed += 1;
        continue;
      }
      const space = keyspaceOf(request.productCode, r);
      const key = [region, space, r.customer, r.dimension, r.hourSlot].join('\u0000');
      const prior = stored.get(key);
      if (prior) {
        if (prior.quantity === r.quantity && prior.allocations === r.allocations) {
          // Identical re-send: idempotent, same receipt.
          results.push({ UsageRecord: r.wire, MeteringRecordId: prior.receiptId, Status: 'Success' });
          call.succeeded += 1;
        } else {
          // A different quantity for a metered hour: the first one stays billed.
          results.push({ UsageRecord: r.wire, MeteringRecordId: randomUUID(), Status: 'DuplicateRecord' });
          call.duplicates += 1;
        }
        continue;
      }
      const rec: Stored = {
        receiptId: randomUUID(),
        account,
        region,
        productCode: r.licenseArn ? null : request.productCode,
        licenseArn: r.licenseArn,
        customer: r.customer,
        dimension: r.dimension,
        quantity: r.quantity,
        timestamp: new Date(r.timestampMs).toISOString(),
        timestampMs: r.timestampMs,
        hour: new Date(r.hourSlot * hourMs).toISOString(),
        hourSlot: r.hourSlot,
        acceptedAt: new Date().toISOString(),
        allocations: r.allocations,
      };
      stored.set(key, rec);
      accepted.push(rec);
      const sk = spaceKey(region, r);
      const spaces = keyspaces.get(sk) ?? new Set<string>();
      spaces.add(space);
      keyspaces.set(sk, spaces);
      results.push({ UsageRecord: r.wire, MeteringRecordId: rec.receiptId, Status: 'Success' });
      call.succeeded += 1;
    }
    return { Results: results, UnprocessedRecords: unprocessedRecords };
  }

  function keyspaceOf(productCode: string | null, r: ParsedRecord): string {
    return r.licenseArn ? `license:${r.licenseArn}` : `product:${productCode ?? ''}`;
  }

  function spaceKey(region: string, r: ParsedRecord): string {
    return `${region}\u0000${r.customer}\u0000${r.hourSlot}`;
  }

  function handleAdmin(req: http.IncomingMessage, res: http.ServerResponse, path: string, body: Buffer | null): void {
    const route = `${req.method} ${path}`;
    switch (route) {
      case 'GET /_emulator/records':
        return sendJson(res, 200, { records: accepted.map(publicRecord) });
      case 'GET /_emulator/calls':
        return sendJson(res, 200, { calls });
      default: {
        if (body === null) return sendJson(res, 400, { error: 'body too large' });
        const shared = sharedAdminRoute(route, body.toString('utf8'), faults, reset);
        return shared ? sendJson(res, shared.status, shared.body) : sendJson(res, 404, { error: `no admin route ${route}` });
      }
    }
  }

  const server = http.createServer((req, res) => {
    readBody(req, maxBodyBytes).then(
      (body) => {
        const path = (req.url ?? '/').split('?')[0] ?? '/';
        if (path.startsWith('/_emulator/')) return handleAdmin(req, res, path, body);
        const target = headerValue(req, 'x-amz-target');
        if (req.method !== 'POST' || path !== '/') {
          return sendAwsError(res, randomUUID(), new AwsError('UnknownOperationException', `${req.method} ${path} is not an AWS Marketplace Metering operation`, 404));
        }
        if (target !== BATCH_METER_USAGE) {
          const what = target?.startsWith(TARGET_PREFIX) ? `${target} is not implemented by the emulator` : `unknown operation ${target ?? '(no x-amz-target)'}`;
          return sendAwsError(res, randomUUID(), new AwsError('UnknownOperationException', what));
        }
        return handleBatchMeterUsage(req, res, body);
      },
      () => req.socket.destroy(),
    ).catch(() => res.socket?.destroy());
  });
  // Longer than the SDK's idle sockets live, so a pooled connection is not closed under a request.
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = options.host ?? '127.0.0.1';
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${address.port}`,
    host,
    port: address.port,
    records: () => accepted.map(publicRecord),
    calls: () => [...calls],
    faults,
    reset,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.socket?.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function publicRecord(r: Stored): AwsEmulatorRecord {
  const { allocations: _allocations, ...rest } = r;
  return rest;
}

function validation(message: string): AwsError {
  return new AwsError('ValidationException', message.startsWith('1 validation error') ? message : `1 validation error detected: ${message}`);
}

function optionalString(v: unknown, at: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new AwsError('SerializationException', `${at} must be a string`);
  return v;
}

function headerValue(req: http.IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  return (Array.isArray(v) ? v[0] : v) ?? null;
}

/**
 * Account and region from the SigV4 credential scope
 * (`AWS4-HMAC-SHA256 Credential=<access key>/<date>/<region>/aws-marketplace/aws4_request, ...`).
 * The emulator treats the access key id as the seller account: it cannot map keys to accounts
 * the way IAM does, and one key per account is all tests need. Signatures are not verified.
 */
function parseAuthorization(header: string | null): { account: string; region: string } {
  if (!header) throw new AwsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
  const m = /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request\s*,/.exec(header);
  if (!m) throw new AwsError('IncompleteSignatureException', 'Authorization header is not a valid AWS Signature Version 4 header');
  const [, accessKey, , region, service] = m as unknown as [string, string, string, string, string];
  if (service !== 'aws-marketplace') {
    throw new AwsError('InvalidSignatureException', `Credential should be scoped to correct service: 'aws-marketplace', not '${service}'`, 403);
  }
  return { account: accessKey, region };
}

/** The body, or null when it reached `limit` bytes (the rest is drained and dropped). */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size >= HARD_BODY_LIMIT) {
        reject(new Error('body far too large'));
        return;
      }
      if (size < limit) chunks.push(c);
    });
    req.on('end', () => resolve(size >= limit ? null : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
