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

import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { FaultQueue, sharedAdminRoute, type FaultKind } from './faults';
import { MARKETPLACE_RESOURCE, emulatorTokenSecret, verifyToken } from './entra';
import { headerValue, listenHttps, parseJson, sendJson } from './https-server';

export const AZURE_API_VERSION = '2018-08-31';
/** The catalog's Azure dimensions; a deployment with another catalog passes its own list. */
export const DEFAULT_AZURE_DIMENSIONS = ['four_vcpu_hour', 'control_plane'] as const;
export const AZURE_MAX_BATCH = 25;
/** What Azure writes as messageTime of an event it did not accept. */
const NO_MESSAGE_TIME = '0001-01-01T00:00:00';
const DAY_MS = 86_400_000;

const CALL_FAULTS: readonly FaultKind[] = ['throttle', 'server-error', 'timeout', 'lost-response'];
const EVENT_FAULTS: readonly FaultKind[] = ['not-subscribed', 'expired'];

export const AZURE_EVENT_STATUSES = [
  'Accepted', 'Expired', 'Duplicate', 'Error', 'ResourceNotFound', 'ResourceNotAuthorized', 'ResourceNotActive', 'InvalidDimension', 'InvalidQuantity', 'BadArgument',
] as const;
export type AzureEventStatus = (typeof AZURE_EVENT_STATUSES)[number];

/**
 * What the emulator knows about a resource (SaaS subscription). Resources it has not been told
 * about are treated as Subscribed, so a contract with any resource id can be billed locally.
 */
export interface AzureResourceState {
  /** Unknown: ResourceNotFound. Pending/Suspended/Unsubscribed: ResourceNotActive. Failing: per-event `Error`. */
  state: 'Subscribed' | 'PendingFulfillmentStart' | 'Suspended' | 'Unsubscribed' | 'Unknown' | 'Failing';
  /** The purchased plan; an event with another planId is a BadArgument. */
  planId?: string;
  /** The Entra app (client id) of the offer; a token of another app gets ResourceNotAuthorized. */
  clientId?: string;
}

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

/** An event the emulator accepted: what "Azure billed". */
export interface AzureEmulatorRecord {
  receiptId: string;
  usageEventId: string;
  /** resourceId or resourceUri, whichever the event carried. */
  customer: string;
  resourceId?: string;
  resourceUri?: string;
  dimension: string;
  quantity: number;
  planId: string;
  /** effectiveStartTime exactly as sent. */
  effectiveStartTime: string;
  timestampMs: number;
  /** ISO-8601 start of the hour slot the event is deduplicated in. */
  hour: string;
  /** floor(timestampMs / hourMs). */
  hourSlot: number;
  messageTime: string;
  /** Entra app (client id) that sent it. */
  clientId: string;
  acceptedAt: string;
}

export interface AzureEmulatorCall {
  requestId: string;
  correlationId: string;
  at: number;
  method: string;
  /** `usageEvent`, `batchUsageEvent`, `usageEvents` or the path asked for. */
  operation: string;
  eventCount: number;
  /** `ok`, a fault kind, or the error code returned. */
  outcome: string;
  httpStatus: number | null;
  statuses: Partial<Record<AzureEventStatus, number>>;
  clientId: string | null;
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

interface ParsedEvent {
  raw: Record<string, unknown>;
  /** resourceId or resourceUri: the dedup and fault-matching identity. */
  resource: string;
  dimension: string;
  quantity: number;
  planId: string;
  effectiveStartTime: string;
  timestampMs: number;
}

type EventResult = { status: AzureEventStatus; body: Record<string, unknown>; record?: AzureEmulatorRecord };

class HttpError extends Error {
  constructor(readonly status: number, readonly body: Record<string, unknown>, readonly headers: Record<string, string> = {}) {
    super(String(body.message ?? body.code));
  }
}

/** `2020-01-12T13:19:35.3450000Z`: Azure writes seven fractional digits. */
function messageTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$10000Z');
}

/** ISO-8601; a time without a zone is UTC, as Azure reads effectiveStartTime. */
function parseInstant(s: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(s)) return undefined;
  const hasZone = /(Z|[+-]\d{2}:?\d{2})$/.test(s) && s.includes('T');
  const ms = Date.parse(s.includes('T') ? (hasZone ? s : `${s}Z`) : `${s}T00:00:00Z`);
  return Number.isFinite(ms) ? ms : undefined;
}

function badArgument(target: string, message: string, code = 'BadArgument'): HttpError {
  return new HttpError(400, { message: 'One or more errors have occurred.', target, details: [{ message, target, code }], code: 'BadArgument' });
}

export async function startAzureEmulator(options: AzureEmulatorOptions): Promise<AzureEmulator> {
  const { hourMs } = options;
  if (!(hourMs > 0)) throw new Error('hourMs must be positive');
  if (!(options.acceptanceHours > 0)) throw new Error('acceptanceHours must be positive');
  const windowMs = options.acceptanceHours * hourMs;
  const futureToleranceMs = options.futureToleranceMs ?? hourMs / 12;
  const dimensions = new Set(options.dimensions ?? DEFAULT_AZURE_DIMENSIONS);
  const secret = emulatorTokenSecret(options.tokenSecret);
  const retryAfter = String(options.retryAfterSeconds ?? 1);
  const reconDelayMs = options.reconDelayMs ?? 0;
  const now = options.now ?? Date.now;

  const faults = new FaultQueue();
  let stored = new Map<string, AzureEmulatorRecord>();
  let accepted: AzureEmulatorRecord[] = [];
  let calls: AzureEmulatorCall[] = [];
  let resources = new Map(Object.entries(options.resources ?? {}));
  let serverErrors = 0;
  const hanging = new Set<http.ServerResponse>();

  function reset(): void {
    stored = new Map();
    accepted = [];
    calls = [];
    resources = new Map(Object.entries(options.resources ?? {}));
    serverErrors = 0;
    faults.clear();
  }

  const dedupKey = (resource: string, dimension: string, slot: number) => `${resource}\u0000${dimension}\u0000${slot}`;

  /** Bearer token of the Entra emulator, for the metering audience; the caller's app id. */
  function authorize(req: http.IncomingMessage): string {
    const header = headerValue(req, 'authorization') ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m?.[1]) throw new HttpError(403, { code: 'Forbidden', message: 'Authorization header with a Bearer token is required.' });
    const check = verifyToken(m[1], { secret, audience: MARKETPLACE_RESOURCE, tenantId: options.tenantId, nowMs: now() });
    if (!check.ok) throw new HttpError(403, { code: 'Forbidden', message: `User is not allowed authorized to call this (${check.reason}).` });
    return check.claims.appid;
  }

  function parseEvent(raw: unknown): ParsedEvent | string {
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return 'usage event must be an object';
    const e = raw as Record<string, unknown>;
    const id = e.resourceId;
    const uri = e.resourceUri;
    const hasId = typeof id === 'string' && id !== '';
    const hasUri = typeof uri === 'string' && uri !== '';
    if (hasId === hasUri) return 'exactly one of resourceId or resourceUri is required';
    if ((id !== undefined && id !== null && typeof id !== 'string') || (uri !== undefined && uri !== null && typeof uri !== 'string')) return 'resourceId and resourceUri must be strings';
    if (typeof e.dimension !== 'string' || e.dimension === '') return 'The dimension is required.';
    if (typeof e.planId !== 'string' || e.planId === '') return 'The planId is required.';
    if (typeof e.quantity !== 'number' || !Number.isFinite(e.quantity)) return 'The quantity must be a number.';
    if (typeof e.effectiveStartTime !== 'string') return 'The effectiveStartTime is required.';
    const timestampMs = parseInstant(e.effectiveStartTime);
    if (timestampMs === undefined) return `effectiveStartTime '${e.effectiveStartTime}' is not an ISO-8601 date-time`;
    return {
      raw: e,
      resource: (hasId ? id : uri) as string,
      dimension: e.dimension,
      quantity: e.quantity,
      planId: e.planId,
      effectiveStartTime: e.effectiveStartTime,
      timestampMs,
    };
  }

  function rejected(raw: unknown, status: AzureEventStatus, code: string, message: string, additionalInfo?: unknown): EventResult {
    const echo = raw && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
    return {
      status,
      body: {
        status,
        messageTime: NO_MESSAGE_TIME,
        error: { code, message, ...(additionalInfo ? { additionalInfo } : {}) },
        ...pickEcho(echo),
      },
    };
  }

  /** The per-event rules, in the reference's recommended order; accepted events are stored. */
  function processEvent(raw: unknown, clientId: string): EventResult {
    const e = parseEvent(raw);
    if (typeof e === 'string') return rejected(raw, 'BadArgument', 'BadArgument', e);
    if (!(e.quantity > 0)) return rejected(raw, 'InvalidQuantity', 'BadArgument', `Quantity must be greater than 0 (got ${e.quantity}).`);
    const fault = faults.take({ customer: e.resource, dimension: e.dimension }, EVENT_FAULTS);
    const res = resources.get(e.resource) ?? { state: 'Subscribed' };
    if (fault === 'not-subscribed' || res.state === 'Unknown') {
      return rejected(raw, 'ResourceNotFound', 'ResourceNotFound', `The usage resource ${e.resource} is invalid: no such subscription${fault ? ' (injected fault)' : ''}.`);
    }
    if (res.clientId !== undefined && res.clientId !== clientId) {
      return rejected(raw, 'ResourceNotAuthorized', 'Forbidden', 'Client is not authorized for this usage resource.');
    }
    if (res.state === 'PendingFulfillmentStart' || res.state === 'Suspended' || res.state === 'Unsubscribed') {
      return rejected(raw, 'ResourceNotActive', 'ResourceNotActive', `The usage resource ${e.resource} is not active (${res.state}).`);
    }
    if (res.state === 'Failing') return rejected(raw, 'Error', 'InternalError', 'An error occurred while processing the usage event.');
    if (!dimensions.has(e.dimension)) return rejected(raw, 'InvalidDimension', 'BadArgument', `Dimension ${e.dimension} is not defined for plan ${e.planId}.`);
    if (res.planId !== undefined && res.planId !== e.planId) return rejected(raw, 'BadArgument', 'BadArgument', `The planId ${e.planId} is not the plan of resource ${e.resource}.`);
    const t = now();
    if (fault === 'expired' || t - e.timestampMs > windowMs) {
      return rejected(raw, 'Expired', 'Expired', `Event has expired: usage events can only be emitted for the past ${options.acceptanceHours} hours${fault ? ' (injected fault)' : ''}.`);
    }
    if (e.timestampMs - t > futureToleranceMs) return rejected(raw, 'BadArgument', 'BadArgument', `effectiveStartTime ${e.effectiveStartTime} is in the future.`);

    const slot = Math.floor(e.timestampMs / hourMs);
    const key = dedupKey(e.resource, e.dimension, slot);
    const prior = stored.get(key);
    if (prior) {
      return rejected(raw, 'Duplicate', 'Conflict', 'This usage event already exist.', { acceptedMessage: { ...eventBody(prior), status: 'Duplicate' } });
    }
    const at = now();
    const rec: AzureEmulatorRecord = {
      receiptId: '',
      usageEventId: randomUUID(),
      customer: e.resource,
      ...(typeof e.raw.resourceId === 'string' && e.raw.resourceId ? { resourceId: e.resource } : { resourceUri: e.resource }),
      dimension: e.dimension,
      quantity: e.quantity,
      planId: e.planId,
      effectiveStartTime: e.effectiveStartTime,
      timestampMs: e.timestampMs,
      hour: new Date(slot * hourMs).toISOString(),
      hourSlot: slot,
      messageTime: messageTime(at),
      clientId,
      acceptedAt: new Date(at).toISOString(),
    };
    rec.receiptId = rec.usageEventId;
    stored.set(key, rec);
    accepted.push(rec);
    return { status: 'Accepted', body: { ...eventBody(rec), status: 'Accepted' }, record: rec };
  }

  /** A call-level fault fires when any event of the call matches it; one use per call. */
  function takeCallFault(events: unknown[]): FaultKind | undefined {
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
  function preFault(fault: FaultKind | undefined, res: http.ServerResponse, call: AzureEmulatorCall): boolean {
    if (fault === 'throttle') {
      throw new HttpError(429, { code: 'TooManyRequests', message: 'Too many requests (injected fault). Retry after the period in the Retry-After header.' }, { 'retry-after': retryAfter });
    }
    if (fault === 'server-error') {
      // Alternate 500 and 503 so clients meet both.
      serverErrors += 1;
      if (serverErrors % 2 === 1) throw new HttpError(500, { code: 'InternalServerError', message: 'An unexpected error occurred (injected fault).' });
      throw new HttpError(503, { code: 'ServiceUnavailable', message: 'The service is temporarily unavailable (injected fault).' }, { 'retry-after': retryAfter });
    }
    if (fault === 'timeout') {
      // Never answer, and store nothing: the socket stays open until the client gives up.
      call.outcome = 'timeout';
      hanging.add(res);
      res.on('close', () => hanging.delete(res));
      return true;
    }
    return false;
  }

  function tally(call: AzureEmulatorCall, status: AzureEventStatus): void {
    call.statuses[status] = (call.statuses[status] ?? 0) + 1;
  }

  function handleUsageEvent(res: http.ServerResponse, call: AzureEmulatorCall, body: Buffer | null, clientId: string, headers: Record<string, string>): void {
    const parsed = parseJson(body);
    if (!parsed.ok) throw badArgument('usageEventRequest', parsed.error);
    call.eventCount = 1;
    const fault = takeCallFault([parsed.value]);
    if (preFault(fault, res, call)) return;
    const r = processEvent(parsed.value, clientId);
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

  function handleBatch(res: http.ServerResponse, call: AzureEmulatorCall, body: Buffer | null, clientId: string, headers: Record<string, string>): void {
    const parsed = parseJson(body);
    if (!parsed.ok) throw badArgument('batchUsageEventRequest', parsed.error);
    const v = parsed.value as { request?: unknown } | null;
    if (!v || typeof v !== 'object' || !Array.isArray(v.request)) throw badArgument('batchUsageEventRequest', 'The request field (an array of usage events) is required.');
    const events = v.request as unknown[];
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
    const fault = takeCallFault(events);
    if (preFault(fault, res, call)) return;
    const result = events.map((raw) => {
      const r = processEvent(raw, clientId);
      tally(call, r.status);
      return r.body;
    });
    if (fault === 'lost-response') return loseResponse(res, call);
    answer(res, call, 200, { count: result.length, result }, headers);
  }

  /** Per (UTC day, resource, dimension, plan) aggregates of accepted events in [start, end). */
  function handleUsageEvents(res: http.ServerResponse, call: AzureEmulatorCall, query: URLSearchParams, headers: Record<string, string>): void {
    const q = (name: string) => query.get(name) ?? query.get(name[0]!.toLowerCase() + name.slice(1)) ?? query.get(name.toLowerCase()) ?? undefined;
    const startRaw = q('usageStartDate');
    if (!startRaw) throw badArgument('usageStartDate', 'usageStartDate is required.');
    const start = parseInstant(startRaw);
    if (start === undefined) throw badArgument('usageStartDate', `usageStartDate '${startRaw}' is not an ISO-8601 date`);
    const endRaw = q('UsageEndDate');
    let end = Infinity;
    if (endRaw) {
      const e = parseInstant(endRaw);
      if (e === undefined) throw badArgument('UsageEndDate', `UsageEndDate '${endRaw}' is not an ISO-8601 date`);
      // A bare date includes that whole day; an instant is an exclusive bound.
      end = endRaw.includes('T') ? e : e + DAY_MS;
    }
    const planId = q('planId');
    const dimension = q('dimension');
    const reconStatus = q('reconStatus');
    const t = now();
    const rows = new Map<string, Record<string, unknown> & { submittedQuantity: number; submittedCount: number; processedQuantity: number; newest: number }>();
    for (const r of accepted) {
      if (r.timestampMs < start || r.timestampMs >= end) continue;
      if (planId && r.planId !== planId) continue;
      if (dimension && r.dimension !== dimension) continue;
      const day = Math.floor(r.timestampMs / DAY_MS) * DAY_MS;
      const key = [day, r.customer, r.dimension, r.planId].join('\u0000');
      const row = rows.get(key) ?? {
        usageDate: new Date(day).toISOString().replace('.000Z', 'Z'),
        usageResourceId: r.customer,
        ...(r.resourceUri ? { resourceUri: r.resourceUri } : {}),
        dimension: r.dimension,
        planId: r.planId,
        planName: r.planId,
        offerId: 'remit-emulator-offer',
        offerName: 'remit emulator offer',
        offerType: 'SaaS',
        azureSubscriptionId: '00000000-0000-0000-0000-000000000000',
        reconStatus: 'Submitted',
        submittedQuantity: 0,
        processedQuantity: 0,
        submittedCount: 0,
        newest: 0,
      };
      row.submittedQuantity += r.quantity;
      row.submittedCount += 1;
      row.newest = Math.max(row.newest, Date.parse(r.acceptedAt));
      rows.set(key, row);
    }
    const out = [...rows.values()].map(({ newest, ...row }) => {
      const settled = t - newest >= reconDelayMs;
      return { ...row, reconStatus: settled ? 'Accepted' : 'Submitted', processedQuantity: settled ? row.submittedQuantity : 0 };
    }).filter((row) => !reconStatus || row.reconStatus === reconStatus);
    answer(res, call, 200, out, headers);
  }

  function answer(res: http.ServerResponse, call: AzureEmulatorCall, status: number, body: unknown, headers: Record<string, string>): void {
    call.httpStatus = status;
    if (status >= 400 && call.outcome === 'ok') call.outcome = String((body as { code?: unknown })?.code ?? status);
    sendJson(res, status, body, headers);
  }

  function loseResponse(res: http.ServerResponse, call: AzureEmulatorCall): void {
    // Whatever was stored stays stored; only the answer is lost.
    call.outcome = 'lost-response';
    res.socket?.destroy();
  }

  function handleApi(req: http.IncomingMessage, res: http.ServerResponse, url: URL, body: Buffer | null): void {
    const requestId = headerValue(req, 'x-ms-requestid') || randomUUID();
    const correlationId = headerValue(req, 'x-ms-correlationid') || randomUUID();
    const headers = { 'x-ms-requestid': requestId, 'x-ms-correlationid': correlationId };
    const operation = url.pathname.replace(/^\/api\//, '');
    const call: AzureEmulatorCall = {
      requestId, correlationId, at: now(), method: req.method ?? '', operation, eventCount: 0, outcome: 'ok', httpStatus: null, statuses: {}, clientId: null,
    };
    calls.push(call);
    try {
      const route = `${req.method} ${url.pathname}`;
      if (!['POST /api/usageEvent', 'POST /api/batchUsageEvent', 'GET /api/usageEvents'].includes(route)) {
        throw new HttpError(404, { code: 'NotFound', message: `${route} is not an Azure Marketplace Metering operation.` });
      }
      const clientId = authorize(req);
      call.clientId = clientId;
      const version = url.searchParams.get('api-version');
      if (version !== AZURE_API_VERSION) {
        throw new HttpError(400, { code: 'BadArgument', message: `The api-version query parameter must be ${AZURE_API_VERSION} (got ${version ?? 'none'}).` });
      }
      if (route === 'POST /api/usageEvent') return handleUsageEvent(res, call, body, clientId, headers);
      if (route === 'POST /api/batchUsageEvent') return handleBatch(res, call, body, clientId, headers);
      return handleUsageEvents(res, call, url.searchParams, headers);
    } catch (err) {
      if (!(err instanceof HttpError)) {
        return answer(res, call, 500, { code: 'InternalServerError', message: `emulator bug: ${(err as Error).message}` }, headers);
      }
      if (err.status === 429 || err.status >= 500) call.outcome = err.status === 429 ? 'throttle' : 'server-error';
      answer(res, call, err.status, err.body, { ...headers, ...err.headers });
    }
  }

  function handleAdmin(req: http.IncomingMessage, res: http.ServerResponse, url: URL, body: Buffer | null): void {
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /_emulator/records':
        return sendJson(res, 200, { records: accepted });
      case 'GET /_emulator/calls':
        return sendJson(res, 200, { calls });
      case 'GET /_emulator/resources':
        return sendJson(res, 200, { resources: Object.fromEntries(resources) });
      case 'POST /_emulator/resources': {
        const parsed = parseJson(body);
        const v = (parsed.ok ? parsed.value : null) as { resource?: unknown } & Partial<AzureResourceState> | null;
        const states = ['Subscribed', 'PendingFulfillmentStart', 'Suspended', 'Unsubscribed', 'Unknown', 'Failing'];
        if (!v || typeof v.resource !== 'string' || !states.includes(String(v.state))) {
          return sendJson(res, 400, { error: `body must be {resource, state: ${states.join(' | ')}, planId?, clientId?}` });
        }
        setResource(v.resource, { state: v.state as AzureResourceState['state'], ...(typeof v.planId === 'string' ? { planId: v.planId } : {}), ...(typeof v.clientId === 'string' ? { clientId: v.clientId } : {}) });
        return sendJson(res, 200, { resources: Object.fromEntries(resources) });
      }
      default: {
        if (body === null) return sendJson(res, 400, { error: 'request body too large' });
        const shared = sharedAdminRoute(route, body.toString('utf8'), faults, reset, (spec) => {
          if (spec.kind === 'unprocessed') throw new Error("fault kind 'unprocessed' exists only on AWS; Azure has no unprocessed events");
        });
        return shared ? sendJson(res, shared.status, shared.body) : sendJson(res, 404, { error: `no admin route ${route}` });
      }
    }
  }

  function setResource(resource: string, state: AzureResourceState): void {
    resources.set(resource, state);
  }

  const listener = await listenHttps({ certPem: options.certPem, keyPem: options.keyPem, port: options.port, host: options.host }, (req, res, body) => {
    const url = new URL(req.url ?? '/', 'https://metering.invalid');
    if (url.pathname.startsWith('/_emulator/')) return handleAdmin(req, res, url, body);
    return handleApi(req, res, url, body);
  });

  return {
    url: listener.url,
    host: listener.host,
    port: listener.port,
    records: () => [...accepted],
    calls: () => [...calls],
    faults,
    setResource,
    reset,
    close: () => {
      for (const res of hanging) res.socket?.destroy();
      return listener.close();
    },
  };
}

/** The event as Azure echoes it (only the fields of a usage event). */
function pickEcho(e: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of ['resourceId', 'resourceUri', 'quantity', 'dimension', 'effectiveStartTime', 'planId']) if (e[f] !== undefined) out[f] = e[f];
  return out;
}

function eventBody(r: AzureEmulatorRecord): Record<string, unknown> {
  return {
    usageEventId: r.usageEventId,
    status: 'Accepted',
    messageTime: r.messageTime,
    ...(r.resourceId ? { resourceId: r.resourceId } : { resourceUri: r.resourceUri }),
    quantity: r.quantity,
    dimension: r.dimension,
    effectiveStartTime: r.effectiveStartTime,
    planId: r.planId,
  };
}
