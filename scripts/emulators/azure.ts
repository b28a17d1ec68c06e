// Azure Marketplace Metering emulator (SaaS metered billing): usageEvent, batchUsageEvent and the
// usageEvents read-back, over HTTPS, accepting only tokens of the Entra emulator. It enforces
// Azure's rules (../shared/spec/marketplaces.md) so that what real Azure would refuse, or bill
// once and refuse after, fails the same way here:
// - one event per (resource, dimension, hour slot); the first write wins and any later one is a
//   duplicate, even an identical re-send (409 on the single endpoint, `Duplicate` in a batch,
//   both carrying the accepted event);
// - events older than the acceptance window are `Expired`; 1..25 events a batch.
// Undocumented corners (error bodies, check order, usageEvents filtering) follow the reference's
// inferred defaults, choosing the stricter reading.
//
// Its pieces: azure-events.ts reads events and shapes answers, azure-store.ts keeps what was
// billed and the rules that need it, this file wires the HTTPS server, the three operations, the
// call-level faults and the admin API.

import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { HttpError, badArgument, parseInstant, type AzureEventStatus } from './azure-events';
import { AzureMeteringStore, type AzureEmulatorCall, type AzureEmulatorRecord, type AzureResourceState, type UsageQuery } from './azure-store';
import { FaultQueue, sharedAdminRoute, type FaultKind } from './faults';
import { MARKETPLACE_RESOURCE, emulatorTokenSecret, verifyToken } from './entra';
import { headerValue, listen, parseJson, sendJson } from './http-server';
import { DAY_MS } from '../../domain/time';

export { AZURE_EVENT_STATUSES, type AzureEventStatus } from './azure-events';
export type { AzureEmulatorCall, AzureEmulatorRecord, AzureResourceState } from './azure-store';

export const AZURE_API_VERSION = '2018-08-31';
/** The catalog's Azure dimensions; a deployment with another catalog passes its own list. */
export const DEFAULT_AZURE_DIMENSIONS = ['four_vcpu_hour', 'control_plane'] as const;
export const AZURE_MAX_BATCH = 25;
const RESOURCE_STATES = ['Subscribed', 'PendingFulfillmentStart', 'Suspended', 'Unsubscribed', 'Unknown', 'Failing'];

const CALL_FAULTS: readonly FaultKind[] = ['throttle', 'server-error', 'timeout', 'lost-response'];

export interface AzureEmulatorOptions {
  port?: number;
  host?: string;
  certPem: string;
  keyPem: string;
  /** Length of one "hour" in ms: the dedup slot and the unit of the acceptance window. */
  hourMs: number;
  /** Events older than this many hours are Expired (Azure: 24). */
  acceptanceHours: number;
  /** HMAC key shared with the Entra emulator; default emulatorTokenSecret(). */
  tokenSecret?: string;
  /** When set, only tokens of this tenant are accepted. */
  tenantId?: string;
  /** Dimensions the offer's plans define; any other gives InvalidDimension. */
  dimensions?: readonly string[];
  resources?: Record<string, AzureResourceState>;
  /** How far in the future effectiveStartTime may be (clock skew); default hourMs / 12 (5 min). */
  futureToleranceMs?: number;
  /** Retry-After of the `throttle` fault, in seconds; default 1. */
  retryAfterSeconds?: number;
  /** After this long an accepted event reads back as reconStatus Accepted; default 0. */
  reconDelayMs?: number;
  now?: () => number;
}

export interface AzureEmulator {
  url: string;
  host: string;
  port: number;
  records(): AzureEmulatorRecord[];
  calls(): AzureEmulatorCall[];
  faults: FaultQueue;
  setResource(resource: string, state: AzureResourceState): void;
  reset(): void;
  close(): Promise<void>;
}

/** What the request handlers share: the emulator's state, faults and settings. */
interface AzureContext {
  store: AzureMeteringStore;
  faults: FaultQueue;
  /** Answers a `timeout` fault holds open, closed with the emulator. */
  hanging: Set<http.ServerResponse>;
  /** Injected server errors so far: they alternate 500 and 503. */
  serverErrors: number;
  secret: string;
  tenantId: string | undefined;
  /** Retry-After of injected throttling and 503s, in seconds. */
  retryAfter: string;
  now: () => number;
  reset(): void;
}

type Headers = Record<string, string>;

/** Bearer token of the Entra emulator, for the metering audience; the caller's app id. */
function authorize(ctx: AzureContext, req: http.IncomingMessage): string {
  const header = headerValue(req, 'authorization') ?? '';
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  if (!m?.[1]) throw new HttpError(403, { code: 'Forbidden', message: 'Authorization header with a Bearer token is required.' });
  const check = verifyToken(m[1], { secret: ctx.secret, audience: MARKETPLACE_RESOURCE, tenantId: ctx.tenantId, nowMs: ctx.now() });
  if (!check.ok) throw new HttpError(403, { code: 'Forbidden', message: `User is not allowed authorized to call this (${check.reason}).` });
  return check.claims.appid;
}

/** A call-level fault fires when any event of the call matches it; one use per call. */
function takeCallFault(faults: FaultQueue, events: unknown[]): FaultKind | undefined {
  const seen = new Set<string>();
  for (const raw of events) {
    const e = raw && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
    const customer = typeof e.resourceId === 'string' && e.resourceId ? e.resourceId : typeof e.resourceUri === 'string' ? e.resourceUri : undefined;
    const dimension = typeof e.dimension === 'string' ? e.dimension : undefined;
    const k = `${customer}\u0000${dimension}`;
    if (seen.has(k)) continue;
    seen.add(k);
    const kind = faults.take({ customer, dimension }, CALL_FAULTS);
    if (kind) return kind;
  }
  return undefined;
}

/** Applies a call-level fault that stops the call before processing; true when it answered. */
function preFault(ctx: AzureContext, fault: FaultKind | undefined, res: http.ServerResponse, call: AzureEmulatorCall): boolean {
  if (fault === 'throttle') {
    throw new HttpError(429, { code: 'TooManyRequests', message: 'Too many requests (injected fault). Retry after the period in the Retry-After header.' }, { 'retry-after': ctx.retryAfter });
  }
  if (fault === 'server-error') {
    // Alternate 500 and 503 so clients meet both.
    ctx.serverErrors += 1;
    if (ctx.serverErrors % 2 === 1) throw new HttpError(500, { code: 'InternalServerError', message: 'An unexpected error occurred (injected fault).' });
    throw new HttpError(503, { code: 'ServiceUnavailable', message: 'The service is temporarily unavailable (injected fault).' }, { 'retry-after': ctx.retryAfter });
  }
  if (fault === 'timeout') {
    // Never answer, and store nothing: the socket stays open until the client gives up.
    call.outcome = 'timeout';
    ctx.hanging.add(res);
    res.on('close', () => ctx.hanging.delete(res));
    return true;
  }
  return false;
}

function tally(call: AzureEmulatorCall, status: AzureEventStatus): void {
  call.statuses[status] = (call.statuses[status] ?? 0) + 1;
}

function answer(res: http.ServerResponse, call: AzureEmulatorCall, status: number, body: unknown, headers: Headers): void {
  call.httpStatus = status;
  if (status >= 400 && call.outcome === 'ok') call.outcome = String((body as { code?: unknown })?.code ?? status);
  sendJson(res, status, body, headers);
}

function loseResponse(res: http.ServerResponse, call: AzureEmulatorCall): void {
  // Whatever was stored stays stored; only the answer is lost.
  call.outcome = 'lost-response';
  res.socket?.destroy();
}

function handleUsageEvent(ctx: AzureContext, res: http.ServerResponse, call: AzureEmulatorCall, body: Buffer | null, clientId: string, headers: Headers): void {
  const parsed = parseJson(body);
  if (!parsed.ok) throw badArgument('usageEventRequest', parsed.error);
  call.eventCount = 1;
  const fault = takeCallFault(ctx.faults, [parsed.value]);
  if (preFault(ctx, fault, res, call)) return;
  const r = ctx.store.processEvent(parsed.value, clientId);
  tally(call, r.status);
  if (fault === 'lost-response') return loseResponse(res, call);
  switch (r.status) {
    case 'Accepted':
      return answer(res, call, 200, r.body, headers);
    case 'Duplicate': {
      const err = r.body.error as { additionalInfo: unknown };
      return answer(res, call, 409, { additionalInfo: err.additionalInfo, message: 'This usage event already exist.', code: 'Conflict' }, headers);
    }
    case 'ResourceNotAuthorized':
      return answer(res, call, 403, { message: 'Client is not authorized for this usage resource.', code: 'Forbidden' }, headers);
    default: {
      const err = r.body.error as { message: string };
      // The single endpoint answers 400 for every other rejection; details say which.
      const e = badArgument('usageEventRequest', err.message, r.status);
      return answer(res, call, 400, e.body, headers);
    }
  }
}

/** The events of a batch request, 1 to AZURE_MAX_BATCH of them. */
function batchEvents(body: Buffer | null): unknown[] {
  const parsed = parseJson(body);
  if (!parsed.ok) throw badArgument('batchUsageEventRequest', parsed.error);
  const v = parsed.value as { request?: unknown } | null;
  if (!v || typeof v !== 'object' || !Array.isArray(v.request)) throw badArgument('batchUsageEventRequest', 'The request field (an array of usage events) is required.');
  return v.request as unknown[];
}

function handleBatch(ctx: AzureContext, res: http.ServerResponse, call: AzureEmulatorCall, body: Buffer | null, clientId: string, headers: Headers): void {
  const events = batchEvents(body);
  call.eventCount = events.length;
  if (events.length === 0) {
    throw new HttpError(400, { message: 'Batch events request payload is empty. Please check you request body and retry with at least one event.', target: 'batchUsageEventRequest', code: 'BadArgument' });
  }
  if (events.length > AZURE_MAX_BATCH) {
    throw new HttpError(400, {
      message: `Batch events request payload count is more than ${AZURE_MAX_BATCH}. Please check you request body and retry with count less than ${AZURE_MAX_BATCH}.`,
      target: 'batchUsageEventRequest',
      code: 'BadArgument',
    });
  }
  const fault = takeCallFault(ctx.faults, events);
  if (preFault(ctx, fault, res, call)) return;
  const result = events.map((raw) => {
    const r = ctx.store.processEvent(raw, clientId);
    tally(call, r.status);
    return r.body;
  });
  if (fault === 'lost-response') return loseResponse(res, call);
  answer(res, call, 200, { count: result.length, result }, headers);
}

/** The read-back's query: usageStartDate required, UsageEndDate a bare date (whole day) or an instant. */
function usageQuery(query: URLSearchParams): UsageQuery {
  const q = (name: string) => query.get(name) ?? query.get(name[0]!.toLowerCase() + name.slice(1)) ?? query.get(name.toLowerCase()) ?? undefined;
  const startRaw = q('usageStartDate');
  if (!startRaw) throw badArgument('usageStartDate', 'usageStartDate is required.');
  const startMs = parseInstant(startRaw);
  if (startMs === undefined) throw badArgument('usageStartDate', `usageStartDate '${startRaw}' is not an ISO-8601 date`);
  const endRaw = q('UsageEndDate');
  let endMs = Infinity;
  if (endRaw) {
    const e = parseInstant(endRaw);
    if (e === undefined) throw badArgument('UsageEndDate', `UsageEndDate '${endRaw}' is not an ISO-8601 date`);
    // A bare date includes that whole day; an instant is an exclusive bound.
    endMs = endRaw.includes('T') ? e : e + DAY_MS;
  }
  return { startMs, endMs, planId: q('planId'), dimension: q('dimension'), reconStatus: q('reconStatus') };
}

function handleApi(ctx: AzureContext, req: http.IncomingMessage, res: http.ServerResponse, url: URL, body: Buffer | null): void {
  const requestId = headerValue(req, 'x-ms-requestid') || randomUUID();
  const correlationId = headerValue(req, 'x-ms-correlationid') || randomUUID();
  const headers = { 'x-ms-requestid': requestId, 'x-ms-correlationid': correlationId };
  const operation = url.pathname.replace(/^\/api\//, '');
  const call: AzureEmulatorCall = {
    requestId, correlationId, at: ctx.now(), method: req.method ?? '', operation, eventCount: 0, outcome: 'ok', httpStatus: null, statuses: {}, clientId: null,
  };
  ctx.store.logCall(call);
  try {
    const route = `${req.method} ${url.pathname}`;
    if (!['POST /api/usageEvent', 'POST /api/batchUsageEvent', 'GET /api/usageEvents'].includes(route)) {
      throw new HttpError(404, { code: 'NotFound', message: `${route} is not an Azure Marketplace Metering operation.` });
    }
    const clientId = authorize(ctx, req);
    call.clientId = clientId;
    const version = url.searchParams.get('api-version');
    if (version !== AZURE_API_VERSION) {
      throw new HttpError(400, { code: 'BadArgument', message: `The api-version query parameter must be ${AZURE_API_VERSION} (got ${version ?? 'none'}).` });
    }
    if (route === 'POST /api/usageEvent') return handleUsageEvent(ctx, res, call, body, clientId, headers);
    if (route === 'POST /api/batchUsageEvent') return handleBatch(ctx, res, call, body, clientId, headers);
    return answer(res, call, 200, ctx.store.usageRows(usageQuery(url.searchParams)), headers);
  } catch (err) {
    if (!(err instanceof HttpError)) {
      return answer(res, call, 500, { code: 'InternalServerError', message: `emulator bug: ${(err as Error).message}` }, headers);
    }
    if (err.status === 429 || err.status >= 500) call.outcome = err.status === 429 ? 'throttle' : 'server-error';
    answer(res, call, err.status, err.body, { ...headers, ...err.headers });
  }
}

/** `POST /_emulator/resources`: one resource's state, as `{resource, state, planId?, clientId?}`. */
function postResource(ctx: AzureContext, res: http.ServerResponse, body: Buffer | null): void {
  const parsed = parseJson(body);
  const v = (parsed.ok ? parsed.value : null) as ({ resource?: unknown } & Partial<AzureResourceState>) | null;
  if (!v || typeof v.resource !== 'string' || !RESOURCE_STATES.includes(String(v.state))) {
    return sendJson(res, 400, { error: `body must be {resource, state: ${RESOURCE_STATES.join(' | ')}, planId?, clientId?}` });
  }
  ctx.store.setResource(v.resource, { state: v.state as AzureResourceState['state'], ...(typeof v.planId === 'string' ? { planId: v.planId } : {}), ...(typeof v.clientId === 'string' ? { clientId: v.clientId } : {}) });
  sendJson(res, 200, { resources: ctx.store.resourceStates() });
}

function handleAdmin(ctx: AzureContext, req: http.IncomingMessage, res: http.ServerResponse, url: URL, body: Buffer | null): void {
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /_emulator/records':
      return sendJson(res, 200, { records: ctx.store.records() });
    case 'GET /_emulator/calls':
      return sendJson(res, 200, { calls: ctx.store.calls() });
    case 'GET /_emulator/resources':
      return sendJson(res, 200, { resources: ctx.store.resourceStates() });
    case 'POST /_emulator/resources':
      return postResource(ctx, res, body);
    default: {
      if (body === null) return sendJson(res, 400, { error: 'request body too large' });
      const shared = sharedAdminRoute(route, body.toString('utf8'), ctx.faults, ctx.reset, (spec) => {
        if (spec.kind === 'unprocessed') throw new Error("fault kind 'unprocessed' exists only on AWS; Azure has no unprocessed events");
      });
      return shared ? sendJson(res, shared.status, shared.body) : sendJson(res, 404, { error: `no admin route ${route}` });
    }
  }
}

export async function startAzureEmulator(options: AzureEmulatorOptions): Promise<AzureEmulator> {
  const { hourMs } = options;
  if (!(hourMs > 0)) throw new Error('hourMs must be positive');
  if (!(options.acceptanceHours > 0)) throw new Error('acceptanceHours must be positive');
  const now = options.now ?? Date.now;
  const faults = new FaultQueue();
  const store = new AzureMeteringStore(
    {
      hourMs,
      acceptanceHours: options.acceptanceHours,
      futureToleranceMs: options.futureToleranceMs ?? hourMs / 12,
      dimensions: new Set(options.dimensions ?? DEFAULT_AZURE_DIMENSIONS),
      resources: options.resources ?? {},
      reconDelayMs: options.reconDelayMs ?? 0,
      now,
    },
    faults,
  );
  const ctx: AzureContext = {
    store,
    faults,
    hanging: new Set(),
    serverErrors: 0,
    secret: emulatorTokenSecret(options.tokenSecret),
    tenantId: options.tenantId,
    retryAfter: String(options.retryAfterSeconds ?? 1),
    now,
    reset: () => {
      store.reset();
      ctx.serverErrors = 0;
      faults.clear();
    },
  };
  const listener = await listen({ tls: { certPem: options.certPem, keyPem: options.keyPem }, port: options.port, host: options.host }, (req, res, body) => {
    const url = new URL(req.url ?? '/', 'https://metering.invalid');
    if (url.pathname.startsWith('/_emulator/')) return handleAdmin(ctx, req, res, url, body);
    return handleApi(ctx, req, res, url, body);
  });
  return {
    url: listener.url,
    host: listener.host,
    port: listener.port,
    records: () => store.records(),
    calls: () => store.calls(),
    faults,
    setResource: (resource, state) => store.setResource(resource, state),
    reset: ctx.reset,
    close: () => {
      for (const res of ctx.hanging) res.socket?.destroy();
      return listener.close();
    },
  };
}
