// AWS Marketplace Metering emulator (BatchMeterUsage only). It speaks the real awsJson1_1 wire
// protocol so the real MarketplaceMeteringClient works against it unchanged, and it enforces the
// marketplace's rules strictly (../shared/spec/marketplaces.md) so that a product bug that real
// AWS would bill silently (a double record, a stale record in a batch, a rate overrun) fails
// loudly here. Where AWS is lenient or undocumented, the emulator chooses the stricter reading.
//
// Its pieces: aws-wire.ts reads requests, aws-store.ts keeps what was billed and the rules that
// need it, this file wires the HTTP server, the operation, the batch-level faults and the admin API.

import type http from 'node:http';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { AwsError, parseAuthorization, parseRequest, type ParsedRecord } from './aws-wire';
import { AwsMeteringStore, type AwsEmulatorCall, type AwsEmulatorRecord } from './aws-store';
import { FaultQueue, sharedAdminRoute, type FaultKind } from './faults';
import { headerValue, listen, sendJson } from './http-server';

export type { AwsEmulatorCall, AwsEmulatorRecord } from './aws-store';

/** The catalog's AWS dimensions; a deployment with another catalog passes its own list. */
export const DEFAULT_AWS_DIMENSIONS = ['four_vcpu_hour', 'control_plane', 'managed_node', 'infrastructure', 'vCPU_hours'] as const;

const TARGET_PREFIX = 'AWSMPMeteringService.';
const BATCH_METER_USAGE = `${TARGET_PREFIX}BatchMeterUsage`;
const AWS_JSON = { 'content-type': 'application/x-amz-json-1.1' };

const BATCH_FAULTS: readonly FaultKind[] = ['throttle', 'server-error', 'timeout', 'lost-response', 'expired'];

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

function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

function sendAwsError(res: http.ServerResponse, requestId: string, err: AwsError): void {
  sendJson(res, err.status, { __type: err.type, message: err.message }, { ...AWS_JSON, 'x-amzn-RequestId': requestId, 'x-amzn-ErrorType': err.type });
}

/** A batch-level fault fires when any record of the call matches it; one use per call. */
function takeBatchFault(faults: FaultQueue, records: ParsedRecord[]): FaultKind | undefined {
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

/** The faults that answer before any record is looked at (throttle, server error, expired) as AWS would. */
function throwInjected(fault: FaultKind | undefined): void {
  if (fault === 'server-error') throw new AwsError('InternalServiceErrorException', 'An internal error has occurred (injected fault)', 500);
  if (fault === 'expired') throw new AwsError('TimestampOutOfBoundsException', 'One or more records are outside the allowed time range (injected fault); nothing was processed');
}

/** What the request handlers share: the emulator's state, faults and limits. */
interface AwsContext {
  store: AwsMeteringStore;
  faults: FaultQueue;
  /** Answers a `timeout` fault holds open, closed with the emulator. */
  hanging: Set<http.ServerResponse>;
  hourMs: number;
  rateLimit: number;
  maxBodyBytes: number;
  reset(): void;
}

/** The socket closes without an answer: whatever was stored stays stored. */
function loseResponse(res: http.ServerResponse, call: AwsEmulatorCall): void {
  call.outcome = 'lost-response';
  res.socket?.destroy();
}

/** Never answer: the socket stays open until the client gives up or the emulator closes. */
function hang(ctx: AwsContext, res: http.ServerResponse, call: AwsEmulatorCall): void {
  call.outcome = 'timeout';
  ctx.hanging.add(res);
  res.on('close', () => ctx.hanging.delete(res));
}

function handleBatchMeterUsage(ctx: AwsContext, req: http.IncomingMessage, res: http.ServerResponse, body: Buffer | null): void {
  const { store } = ctx;
  const requestId = randomUUID();
  const call: AwsEmulatorCall = {
    requestId, at: wallClockMs(), account: null, region: null, recordCount: 0, outcome: 'ok', httpStatus: null,
    succeeded: 0, notSubscribed: 0, duplicates: 0, unprocessed: 0, sdkRequest: headerValue(req, 'amz-sdk-request') ?? null,
  };
  store.logCall(call);
  let fault: FaultKind | undefined;
  try {
    const { account, region } = parseAuthorization(headerValue(req, 'authorization'));
    call.account = account;
    call.region = region;
    if (body === null) throw new AwsError('ValidationException', `1 validation error detected: request body must be smaller than ${ctx.maxBodyBytes} bytes`);
    const request = parseRequest(body, ctx.hourMs);
    call.recordCount = request.records.length;

    const rateKey = `${account}/${region}`;
    const t = wallClockMs();
    if (store.overRate(rateKey, t)) throw new AwsError('ThrottlingException', `Rate exceeded: more than ${ctx.rateLimit} BatchMeterUsage calls in one second for account ${account} in ${region}`);
    fault = takeBatchFault(ctx.faults, request.records);
    if (fault === 'throttle') throw new AwsError('ThrottlingException', 'Rate exceeded (injected fault)');
    store.admit(rateKey, t);
    throwInjected(fault);
    if (fault === 'timeout') return hang(ctx, res, call);

    store.checkWholeBatch(request, region);
    const reply = store.processRecords(request, account, region, call);
    // The records are stored; only the answer is lost.
    if (fault === 'lost-response') return loseResponse(res, call);
    call.httpStatus = 200;
    sendJson(res, 200, reply, { ...AWS_JSON, 'x-amzn-RequestId': requestId });
  } catch (err) {
    // Whatever the answer (here an error), it never reaches the client.
    if (fault === 'lost-response') return loseResponse(res, call);
    const e = err instanceof AwsError ? err : new AwsError('InternalServiceErrorException', `emulator bug: ${(err as Error).message}`, 500);
    call.outcome = e.type;
    call.httpStatus = e.status;
    sendAwsError(res, requestId, e);
  }
}

function handleAdmin(ctx: AwsContext, req: http.IncomingMessage, res: http.ServerResponse, path: string, body: Buffer | null): void {
  const route = `${req.method} ${path}`;
  switch (route) {
    case 'GET /_emulator/records':
      return sendJson(res, 200, { records: ctx.store.records() }, AWS_JSON);
    case 'GET /_emulator/calls':
      return sendJson(res, 200, { calls: ctx.store.calls() }, AWS_JSON);
    default: {
      if (body === null) return sendJson(res, 400, { error: 'body too large' }, AWS_JSON);
      const shared = sharedAdminRoute(route, body.toString('utf8'), ctx.faults, ctx.reset);
      return shared ? sendJson(res, shared.status, shared.body, AWS_JSON) : sendJson(res, 404, { error: `no admin route ${route}` }, AWS_JSON);
    }
  }
}

function route(ctx: AwsContext, req: http.IncomingMessage, res: http.ServerResponse, body: Buffer | null): void {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  if (path.startsWith('/_emulator/')) return handleAdmin(ctx, req, res, path, body);
  const target = headerValue(req, 'x-amz-target');
  if (req.method !== 'POST' || path !== '/') {
    return sendAwsError(res, randomUUID(), new AwsError('UnknownOperationException', `${req.method} ${path} is not an AWS Marketplace Metering operation`, 404));
  }
  if (target !== BATCH_METER_USAGE) {
    const what = target?.startsWith(TARGET_PREFIX) ? `${target} is not implemented by the emulator` : `unknown operation ${target ?? '(no x-amz-target)'}`;
    return sendAwsError(res, randomUUID(), new AwsError('UnknownOperationException', what));
  }
  return handleBatchMeterUsage(ctx, req, res, body);
}

export async function startAwsEmulator(options: AwsEmulatorOptions): Promise<AwsEmulator> {
  const hourMs = options.hourMs;
  if (!(hourMs > 0)) throw new Error('hourMs must be positive');
  if (!(options.acceptanceHours > 0)) throw new Error('acceptanceHours must be positive');
  const rateLimit = options.rateLimitPerSecond ?? 10;
  const faults = new FaultQueue();
  const store = new AwsMeteringStore(
    {
      hourMs,
      acceptanceHours: options.acceptanceHours,
      futureToleranceMs: options.futureToleranceMs ?? hourMs / 12,
      rateLimit,
      dimensions: new Set(options.dimensions ?? DEFAULT_AWS_DIMENSIONS),
      productCodes: options.productCodes ? new Set(options.productCodes) : undefined,
      unsubscribed: new Set(options.unsubscribedCustomers ?? []),
      now: options.now ?? Date.now,
    },
    faults,
  );
  const reset = () => {
    store.reset();
    faults.clear();
  };
  const ctx: AwsContext = { store, faults, hanging: new Set(), hourMs, rateLimit, maxBodyBytes: options.maxBodyBytes ?? 1024 * 1024, reset };
  const listener = await listen({ port: options.port, host: options.host, maxBodyBytes: ctx.maxBodyBytes }, (req, res, body) => route(ctx, req, res, body));
  return {
    url: listener.url,
    host: listener.host,
    port: listener.port,
    records: () => store.records(),
    calls: () => store.calls(),
    faults,
    reset,
    close: () => {
      for (const res of ctx.hanging) res.socket?.destroy();
      return listener.close();
    },
  };
}
