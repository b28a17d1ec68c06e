// Azure Marketplace Metering client: one batchUsageEvent call per send(), and the one place where
// every Azure answer (per-event status, HTTP error, token or transport failure) becomes a
// SendOutcome. Nothing retries here: Temporal owns retries, with backoff chosen per outcome.
//
// Azure hours are write-once: the first event for (resource, dimension, hour) is billed and every
// later one, even an identical re-send, is refused as a duplicate that carries the accepted event.
// That makes sending again always safe (it can never bill twice), and a duplicate whose accepted
// quantity equals ours is our own earlier send whose answer was lost: success.

import { randomUUID } from 'node:crypto';
import tls from 'node:tls';
import { ClientSecretCredential } from '@azure/identity';
import { Agent, request } from 'undici';
import type { Logger } from '../lib/log';
import type { LookupResult, MarketplaceClient, SendOutcome, UsageRecord } from './types';

export const AZURE_MAX_BATCH_SIZE = 25;
export const AZURE_METERING_SCOPE = '20e940b3-4c77-4b0b-9a53-9e16a1b010a7/.default';
const API_VERSION = '2018-08-31';
const DEFAULT_ENDPOINT = 'https://marketplaceapi.microsoft.com';
const DEFAULT_AUTHORITY_HOST = 'https://login.microsoftonline.com';

export interface AzureMarketplaceOptions {
  /** Metering API base (`https://host` or `https://host/api`); default Azure's. */
  endpoint?: string;
  /** Entra authority host; default login.microsoftonline.com. */
  authorityHost?: string;
  tenantId: string;
  clientId: string;
  clientSecret: string;
  /** A CA to trust in addition to the public ones (the local emulators' CA), for both hosts. */
  caPem?: string;
  /** Waiting for an answer once the request is sent; default 10 s. Past it the outcome is ambiguous. */
  requestTimeoutMs?: number;
  /** Connecting alone; default 3 s. Failing here means nothing was sent. */
  connectTimeoutMs?: number;
  /** Pooled keep-alive connections to the metering host; default 8. Further calls queue. */
  maxConnections?: number;
  hourMs: number;
  /** Azure refuses events older than this many hours (24). */
  acceptanceHours: number;
  /** Events within this much of the window's end count as expired (clock skew); default hourMs / 60. */
  expiryMarginMs?: number;
  log?: Logger;
  now?: () => number;
}

/** One row of `GET /api/usageEvents`: what Azure recorded for a day, resource and dimension. */
export interface AzureUsageRow {
  usageDate: string;
  usageResourceId: string;
  dimension: string;
  planId?: string;
  reconStatus?: string;
  submittedQuantity: number;
  processedQuantity?: number;
  submittedCount: number;
  [field: string]: unknown;
}

export interface AzureUsageQuery {
  /** Inclusive start, epoch ms. */
  startMs: number;
  /** Exclusive end, epoch ms; default: up to now. */
  endMs?: number;
  dimension?: string;
  planId?: string;
}

export interface AzureMarketplaceClient extends MarketplaceClient {
  readonly marketplace: 'azure';
  /** True when Azure would (or might, within the margin) refuse the event as too old. */
  isExpired(record: UsageRecord): boolean;
  /** What Azure's usage read-back says about the record's resource, dimension and hour. */
  lookup(record: UsageRecord): Promise<LookupResult>;
  /** Raw read-back for reconciliation (`remit audit`); throws when Azure does not answer. */
  usageEvents(query: AzureUsageQuery): Promise<AzureUsageRow[]>;
  /** Release pooled sockets. */
  close(): Promise<void>;
}

/** Azure's wire form of a usage event. */
interface WireEvent {
  resourceId?: string;
  resourceUri?: string;
  quantity: number;
  dimension: string;
  effectiveStartTime: string;
  planId: string;
}

interface AcceptedMessage {
  usageEventId?: string;
  quantity?: number;
  dimension?: string;
  resourceId?: string;
  resourceUri?: string;
  effectiveStartTime?: string;
}

type Exchange =
  | { kind: 'answer'; status: number; json: unknown; retryAfterMs: number | undefined; requestId: string }
  | { kind: 'failed'; outcome: SendOutcome };

function azureCustomer(r: UsageRecord) {
  if (r.customer.marketplace !== 'azure') throw new Error(`record ${r.recordId} is for ${r.customer.marketplace}, not Azure`);
  return r.customer;
}

function toWire(r: UsageRecord): WireEvent {
  const c = azureCustomer(r);
  // An ARM id (managed or Kubernetes app) goes as resourceUri; a SaaS subscription id as resourceId.
  const resource = c.resourceId.startsWith('/') ? { resourceUri: c.resourceId } : { resourceId: c.resourceId };
  return {
    ...resource,
    quantity: r.quantity,
    dimension: r.dimension,
    // Fixed per record (the hour's start), so every retry is byte-identical.
    effectiveStartTime: new Date(r.timestampMs).toISOString(),
    planId: c.planId,
  };
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** Both shapes Azure has used: `additionalInfo.acceptedMessage` and (older) flat `additionalInfo`. */
function acceptedMessageOf(container: unknown): AcceptedMessage | undefined {
  const info = obj(obj(container)?.additionalInfo);
  const msg = obj(info?.acceptedMessage) ?? (info && 'quantity' in info ? info : undefined);
  if (!msg) return undefined;
  return {
    usageEventId: str(msg.usageEventId),
    quantity: num(msg.quantity),
    dimension: str(msg.dimension),
    resourceId: str(msg.resourceId),
    resourceUri: str(msg.resourceUri),
    effectiveStartTime: str(msg.effectiveStartTime),
  };
}

/** Retry-After as delay-seconds or an HTTP date. */
function parseRetryAfter(v: string | string[] | undefined, nowMs: number): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  if (/^\d+(\.\d+)?$/.test(s.trim())) return Math.round(Number(s) * 1000);
  const at = Date.parse(s);
  return Number.isFinite(at) ? Math.max(0, at - nowMs) : undefined;
}

function messageOf(json: unknown): string {
  const o = obj(json);
  const details = Array.isArray(o?.details) ? (o.details as unknown[]).map((d) => str(obj(d)?.message)).filter(Boolean) : [];
  const parts = [str(o?.code), str(o?.message), ...details].filter(Boolean);
  return parts.length ? parts.join(': ') : JSON.stringify(json)?.slice(0, 300) ?? 'no body';
}

// Failures while connecting or handshaking: the request never left, so sending again is plainly
// safe. Anything else after the request was written may have been recorded.
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENETDOWN', 'UND_ERR_CONNECT_TIMEOUT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ERR_SSL_WRONG_VERSION_NUMBER', 'EPROTO',
]);

function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown[] } | undefined;
  if (typeof e?.code === 'string') return e.code;
  if (e?.cause) return errorCode(e.cause);
  if (Array.isArray(e?.errors) && e.errors.length) return errorCode(e.errors[0]);
  return undefined;
}

/** Entra refusing the app itself (wrong id, secret, tenant or scope) will not change by waiting. */
const TOKEN_REFUSED = /invalid_client|unauthorized_client|invalid_scope|invalid_tenant|invalid_grant|AADSTS(7000215|700016|90002|7000222|1002012)/;

function classifyTokenError(err: unknown): SendOutcome {
  const message = (err as Error)?.message ?? String(err);
  if (TOKEN_REFUSED.test(message)) {
    return {
      kind: 'terminal',
      code: 'marketplace_rejected',
      reason: `Microsoft Entra refused the app's credentials (${message.split('\n')[0]?.slice(0, 240)}): fix AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET, then retry; nothing was sent`,
    };
  }
  return { kind: 'retryable', code: 'marketplace_unavailable', reason: `could not get a Microsoft Entra token (${message.split('\n')[0]?.slice(0, 240)}); nothing was sent` };
}

function classifyTransportError(err: unknown, what: string): SendOutcome {
  const code = errorCode(err);
  const message = (err as Error)?.message ?? String(err);
  if (code && NOT_SENT_CODES.has(code)) {
    return { kind: 'retryable', code: 'marketplace_unavailable', reason: `could not reach Azure Marketplace Metering (${code}: ${message}); nothing was sent` };
  }
  return { kind: 'ambiguous', reason: `no answer from Azure Marketplace Metering after sending ${what} (${code ?? (err as Error)?.name ?? 'Error'}: ${message})` };
}

/** Per-event statuses that say the event will never be accepted as sent. */
function classifyRejection(status: string, detail: string): SendOutcome | undefined {
  const say = (s: string) => `${s} (Azure: ${status}${detail ? `, ${detail}` : ''}); nothing was billed`;
  switch (status) {
    case 'ResourceNotFound':
      return { kind: 'terminal', code: 'marketplace_customer_not_subscribed', reason: say('Azure does not know this resource (SaaS subscription): the customer is not subscribed, or the contract has the wrong resource id') };
    case 'ResourceNotAuthorized':
      return { kind: 'terminal', code: 'subscription_not_found', reason: say("the resource exists but belongs to an offer of another Entra app: none of this app's subscriptions has this id; check the contract's resource id and the app registered on the offer") };
    case 'ResourceNotActive':
      return { kind: 'terminal', code: 'subscription_terminated', reason: say('the subscription is suspended, unsubscribed or never activated') };
    case 'InvalidDimension':
      return { kind: 'terminal', code: 'unsupported_metric', reason: say('the dimension is not defined on the customer\'s plan: fix the catalog mapping or the offer') };
    case 'InvalidQuantity':
      return { kind: 'terminal', code: 'marketplace_rejected', reason: say('Azure takes quantities greater than 0 only') };
    case 'BadArgument':
      return { kind: 'terminal', code: 'marketplace_rejected', reason: say('Azure could not accept the event as sent (missing or malformed field, or a plan id that is not the subscription\'s)') };
    case 'Error':
      // Azure's guidance for a generic error is to wait and send again; sending again is safe.
      return { kind: 'retryable', code: 'marketplace_unavailable', reason: `Azure reported a generic Error for the event${detail ? ` (${detail})` : ''}; it will be sent again` };
    default:
      return undefined;
  }
}

export function createAzureMarketplace(options: AzureMarketplaceOptions): AzureMarketplaceClient {
  const now = options.now ?? Date.now;
  const log = options.log;
  const windowMs = options.acceptanceHours * options.hourMs;
  const marginMs = options.expiryMarginMs ?? options.hourMs / 60;
  const base = (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, '').replace(/\/api$/, '');
  const timeoutMs = options.requestTimeoutMs ?? 10_000;
  // Adding, not replacing: the public roots stay trusted next to the local CA.
  const ca = options.caPem ? [...tls.rootCertificates, options.caPem] : undefined;

  // A bounded pool: each new connection costs a TLS handshake, which under a burst of calls
  // costs more than waiting for a pooled one.
  const agent = new Agent({
    connections: options.maxConnections ?? 8,
    connect: { ...(ca ? { ca } : {}), timeout: options.connectTimeoutMs ?? 3_000 },
    connectTimeout: options.connectTimeoutMs ?? 3_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });

  const makeCredential = () =>
    new ClientSecretCredential(options.tenantId, options.clientId, options.clientSecret, {
      authorityHost: options.authorityHost ?? DEFAULT_AUTHORITY_HOST,
      // Otherwise MSAL asks login.microsoftonline.com to vouch for the authority first.
      disableInstanceDiscovery: true,
      ...(ca ? { tlsOptions: { ca } } : {}),
      // A token failure becomes an outcome that Temporal retries; long in-call retries would
      // only hold the activity.
      retryOptions: { maxRetries: 1, retryDelayInMs: 200, maxRetryDelayInMs: 1_000 },
    });
  let credential = makeCredential();

  /** One HTTP exchange with a bearer token; on 401/403 once more with a fresh credential. */
  async function exchange(method: 'GET' | 'POST', path: string, body: unknown, what: string): Promise<Exchange> {
    const correlationId = randomUUID();
    let answer: Exchange | undefined;
    for (let attempt = 1; attempt <= 2; attempt++) {
      const used = credential;
      let token: string;
      try {
        const t = await used.getToken(AZURE_METERING_SCOPE);
        token = t.token;
      } catch (err) {
        return { kind: 'failed', outcome: classifyTokenError(err) };
      }
      const requestId = randomUUID();
      try {
        const res = await request(`${base}${path}`, {
          method,
          dispatcher: agent,
          headers: {
            authorization: `Bearer ${token}`,
            'x-ms-requestid': requestId,
            'x-ms-correlationid': correlationId,
            accept: 'application/json',
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
        const text = await res.body.text();
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = { message: text.slice(0, 300) };
        }
        answer = { kind: 'answer', status: res.statusCode, json, retryAfterMs: parseRetryAfter(res.headers['retry-after'], now()), requestId };
      } catch (err) {
        return { kind: 'failed', outcome: classifyTransportError(err, what) };
      }
      if (answer.status !== 401 && answer.status !== 403) return answer;
      // The token may have been revoked or rotated; a new credential has an empty token cache.
      log?.warn({ status: answer.status, requestId, correlationId, attempt }, 'Azure Marketplace refused the token; retrying once with a fresh one');
      if (credential === used) credential = makeCredential();
    }
    return answer as Exchange;
  }

  /** A whole call answered with an error status: one outcome for every event in it. */
  function classifyHttp(status: number, json: unknown, retryAfterMs: number | undefined): SendOutcome {
    const msg = messageOf(json);
    if (status === 429) {
      return { kind: 'retryable', code: 'marketplace_rate_limit', reason: `Azure throttled the call (429: ${msg})`, retryAfterMs: retryAfterMs ?? 1_000 };
    }
    if (status >= 500) {
      return { kind: 'retryable', code: 'marketplace_unavailable', reason: `Azure Marketplace Metering failed (${status}: ${msg})`, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
    }
    if (status === 401 || status === 403) {
      return {
        kind: 'terminal',
        code: 'marketplace_rejected',
        reason: `Azure refused the app's token even when fresh (${status}: ${msg}): the Entra app (client ${options.clientId}, tenant ${options.tenantId}) is not the one on the offer's technical configuration; nothing was billed`,
      };
    }
    if (status >= 400) return { kind: 'terminal', code: 'marketplace_rejected', reason: `Azure rejected the request (${status}: ${msg}); nothing was billed` };
    return { kind: 'ambiguous', reason: `unexpected answer from Azure Marketplace Metering (${status}: ${msg})` };
  }

  function isExpired(record: UsageRecord): boolean {
    return now() - record.timestampMs > windowMs - marginMs;
  }

  const resourceOf = (r: UsageRecord) => azureCustomer(r).resourceId;
  const slotOf = (ms: number) => Math.floor(ms / options.hourMs);

  /** A duplicate is ours when Azure holds exactly our event: same quantity, resource, dimension, hour. */
  function classifyDuplicate(record: UsageRecord, accepted: AcceptedMessage | undefined): SendOutcome {
    if (!accepted || accepted.quantity === undefined) {
      return { kind: 'ambiguous', reason: 'Azure called the event a duplicate without saying what it accepted' };
    }
    const mismatches: string[] = [];
    if (Math.abs(accepted.quantity - record.quantity) > 1e-9) mismatches.push(`quantity ${accepted.quantity} (ours ${record.quantity})`);
    if (accepted.dimension !== undefined && accepted.dimension !== record.dimension) mismatches.push(`dimension ${accepted.dimension}`);
    const resource = accepted.resourceId ?? accepted.resourceUri;
    if (resource !== undefined && resource !== resourceOf(record)) mismatches.push(`resource ${resource}`);
    const at = accepted.effectiveStartTime ? Date.parse(accepted.effectiveStartTime) : NaN;
    if (Number.isFinite(at) && slotOf(at) !== slotOf(record.timestampMs)) mismatches.push(`hour ${accepted.effectiveStartTime}`);
    if (mismatches.length === 0) {
      return { kind: 'accepted', receiptId: accepted.usageEventId ?? readBackReceipt(record), detail: 'Azure already held this exact event (an earlier send whose answer was lost)' };
    }
    return {
      kind: 'terminal',
      code: 'marketplace_duplicate_record',
      reason: `Azure already accepted another event for this resource, dimension and hour (${mismatches.join(', ')}${accepted.usageEventId ? `, usageEventId ${accepted.usageEventId}` : ''}); the first one stays billed and this one was not`,
    };
  }

  function readBackReceipt(record: UsageRecord): string {
    return `usageEvents:${resourceOf(record)}|${record.dimension}|${new Date(record.timestampMs).toISOString()}`;
  }

  async function usageEvents(query: AzureUsageQuery): Promise<AzureUsageRow[]> {
    const params = new URLSearchParams({ 'api-version': API_VERSION, usageStartDate: new Date(query.startMs).toISOString() });
    if (query.endMs !== undefined) params.set('UsageEndDate', new Date(query.endMs).toISOString());
    if (query.dimension) params.set('dimension', query.dimension);
    if (query.planId) params.set('planId', query.planId);
    const a = await exchange('GET', `/api/usageEvents?${params}`, undefined, 'a usage read-back');
    if (a.kind === 'failed') throw new Error(`usageEvents read-back failed: ${a.outcome.kind === 'ambiguous' ? a.outcome.reason : `${a.outcome.kind}: ${'reason' in a.outcome ? a.outcome.reason : ''}`}`);
    if (a.status !== 200 || !Array.isArray(a.json)) throw new Error(`usageEvents read-back failed (${a.status}: ${messageOf(a.json)})`);
    return (a.json as unknown[]).map((row) => {
      const r = obj(row) ?? {};
      return { ...r, usageDate: str(r.usageDate) ?? '', usageResourceId: str(r.usageResourceId) ?? '', dimension: str(r.dimension) ?? '', submittedQuantity: num(r.submittedQuantity) ?? 0, submittedCount: num(r.submittedCount) ?? 0 };
    });
  }

  /**
   * Reads back the record's own hour. This relies on usageEvents honouring the time part of its
   * date filters (the emulator does; Azure's documentation shows hour-precise dates but does not
   * promise it): more than one event in the answer is treated as "cannot tell".
   */
  async function lookup(record: UsageRecord): Promise<LookupResult> {
    const slotStart = slotOf(record.timestampMs) * options.hourMs;
    let rows: AzureUsageRow[];
    try {
      // No plan filter: the hour is write-once per resource and dimension whatever the plan.
      rows = await usageEvents({ startMs: slotStart, endMs: slotStart + options.hourMs, dimension: record.dimension });
    } catch (err) {
      return { found: 'unknown', reason: (err as Error).message };
    }
    const resource = resourceOf(record);
    const mine = rows.filter((r) => (r.usageResourceId === resource || r.resourceUri === resource) && r.dimension === record.dimension);
    const count = mine.reduce((n, r) => n + r.submittedCount, 0);
    const quantity = mine.reduce((n, r) => n + r.submittedQuantity, 0);
    if (count === 0) return { found: false };
    if (count === 1) return { found: true, quantity, receiptId: readBackReceipt(record) };
    return { found: 'unknown', reason: `usageEvents reports ${count} events (${quantity} in all) for the hour's day, resource and dimension: the hour itself cannot be told apart` };
  }

  /**
   * Azure says (or we know) the hour is past its window. An earlier attempt may still have been
   * recorded (its answer lost), so read back before calling it expired: marking it expired makes
   * the amount bill again in a later hour, which must not happen if Azure already has it.
   */
  async function settleExpired(record: UsageRecord, why: string): Promise<SendOutcome> {
    const found = await lookup(record);
    if (found.found === false) {
      return {
        kind: 'terminal',
        code: 'marketplace_window_expired',
        reason: `${why}: Azure accepts usage events up to ${options.acceptanceHours} hours old and holds none for ${new Date(record.timestampMs).toISOString()}; nothing was billed`,
      };
    }
    if (found.found === true) {
      if (Math.abs(found.quantity - record.quantity) <= 1e-9) {
        return { kind: 'accepted', receiptId: found.receiptId, detail: 'confirmed by the usageEvents read-back after the window closed' };
      }
      return {
        kind: 'terminal',
        code: 'marketplace_duplicate_record',
        reason: `Azure holds another quantity (${found.quantity}, ours ${record.quantity}) for this resource, dimension and hour, and its window has closed; the first one stays billed`,
      };
    }
    return { kind: 'ambiguous', reason: `${why}, and whether an earlier send was recorded cannot be read back (${found.reason})` };
  }

  /** Outcome without asking Azure, or undefined when the record must be sent. */
  function precheck(r: UsageRecord): SendOutcome | 'expired' | undefined {
    azureCustomer(r);
    if (!Number.isFinite(r.quantity) || r.quantity <= 0) {
      return { kind: 'terminal', code: 'marketplace_rejected', reason: `Azure takes quantities greater than 0 only; got ${r.quantity} (not sent)` };
    }
    if (!Number.isFinite(r.timestampMs)) return { kind: 'terminal', code: 'marketplace_rejected', reason: 'record has no valid timestamp (not sent)' };
    return isExpired(r) ? 'expired' : undefined;
  }

  /** One per-event result of a batch, matched to its record. */
  async function classifyEvent(record: UsageRecord, result: Record<string, unknown>): Promise<SendOutcome> {
    const status = str(result.status) ?? '';
    const error = obj(result.error);
    const detail = [str(error?.code), str(error?.message)].filter(Boolean).join(': ');
    if (status === 'Accepted') {
      const id = str(result.usageEventId);
      return id ? { kind: 'accepted', receiptId: id } : { kind: 'ambiguous', reason: 'Azure reported Accepted without a usageEventId' };
    }
    if (status === 'Duplicate') return classifyDuplicate(record, acceptedMessageOf(error));
    if (status === 'Expired') return settleExpired(record, `Azure refused the event as expired${detail ? ` (${detail})` : ''}`);
    return classifyRejection(status, detail) ?? { kind: 'terminal', code: 'unknown', reason: `Azure returned an unknown event status '${status}'${detail ? ` (${detail})` : ''}; not billed as far as we know` };
  }

  /**
   * Results matched by (resource, dimension, hour) rather than position, since Azure does not
   * promise to keep the order; an unmatched result falls back to its position.
   */
  async function classifyBatch(records: UsageRecord[], json: unknown): Promise<SendOutcome[]> {
    const results = Array.isArray(obj(json)?.result) ? (obj(json)!.result as unknown[]).map((x) => obj(x) ?? {}) : [];
    const keyOf = (resource: string | undefined, dimension: string | undefined, at: string | undefined) => `${resource ?? ''}\u0000${dimension ?? ''}\u0000${at ? Date.parse(at) : ''}`;
    const waiting = new Map<string, number[]>();
    records.forEach((r, i) => {
      const k = keyOf(resourceOf(r), r.dimension, new Date(r.timestampMs).toISOString());
      waiting.set(k, [...(waiting.get(k) ?? []), i]);
    });
    const matched: (Record<string, unknown> | undefined)[] = records.map(() => undefined);
    const unmatched: number[] = [];
    results.forEach((res, j) => {
      const i = waiting.get(keyOf(str(res.resourceId) ?? str(res.resourceUri), str(res.dimension), str(res.effectiveStartTime)))?.shift();
      if (i === undefined) unmatched.push(j);
      else matched[i] = res;
    });
    for (const j of unmatched) if (matched[j] === undefined && j < records.length) matched[j] = results[j];
    return Promise.all(
      records.map((r, i) => {
        const res = matched[i];
        return res ? classifyEvent(r, res) : Promise.resolve<SendOutcome>({ kind: 'ambiguous', reason: 'Azure answered the batch without a result for this event' });
      }),
    );
  }

  async function send(records: UsageRecord[]): Promise<SendOutcome[]> {
    if (records.length === 0) return [];
    if (records.length > AZURE_MAX_BATCH_SIZE) throw new Error(`batchUsageEvent takes at most ${AZURE_MAX_BATCH_SIZE} events, got ${records.length}`);
    const checked = records.map(precheck);
    const outcomes: (SendOutcome | undefined)[] = checked.map((c) => (c === 'expired' ? undefined : c));
    // Stale events stay out of the call: Azure would only refuse them one by one anyway.
    await Promise.all(
      checked.map(async (c, i) => {
        if (c === 'expired') outcomes[i] = await settleExpired(records[i]!, 'the event is too old to send');
      }),
    );
    const sending = records.map((r, i) => ({ r, i })).filter(({ i }) => checked[i] === undefined);
    if (sending.length === 0) return outcomes as SendOutcome[];

    const a = await exchange('POST', `/api/batchUsageEvent?api-version=${API_VERSION}`, { request: sending.map(({ r }) => toWire(r)) }, 'a batch');
    let perEvent: SendOutcome[];
    if (a.kind === 'failed') {
      perEvent = sending.map(() => a.outcome);
      log?.warn({ events: sending.length, outcome: a.outcome.kind }, 'batchUsageEvent failed');
    } else if (a.status === 200) {
      perEvent = await classifyBatch(sending.map(({ r }) => r), a.json);
      log?.debug({ events: sending.length, requestId: a.requestId }, 'batchUsageEvent answered');
    } else {
      const o = classifyHttp(a.status, a.json, a.retryAfterMs);
      perEvent = sending.map(() => o);
      log?.warn({ events: sending.length, status: a.status, requestId: a.requestId, outcome: o.kind }, 'batchUsageEvent refused');
    }
    sending.forEach(({ i }, k) => (outcomes[i] = perEvent[k]));
    return outcomes as SendOutcome[];
  }

  /**
   * After an ambiguous (or retryable) outcome: send the identical event once more, alone. Azure
   * is write-once per hour, so this cannot bill twice: either it is recorded now (Accepted), or
   * Azure already holds it and answers 409 with what it accepted, which is ours if the quantity
   * is. When the window has closed, the usage read-back decides.
   */
  async function resolve(record: UsageRecord): Promise<SendOutcome> {
    const checked = precheck(record);
    if (checked === 'expired') return settleExpired(record, 'the event can no longer be re-sent');
    if (checked) return checked;
    const a = await exchange('POST', `/api/usageEvent?api-version=${API_VERSION}`, toWire(record), 'a usage event');
    if (a.kind === 'failed') return a.outcome;
    const body = obj(a.json);
    log?.debug({ recordId: record.recordId, status: a.status, requestId: a.requestId }, 'usageEvent answered');
    switch (a.status) {
      case 200: {
        const id = str(body?.usageEventId);
        return id && str(body?.status) === 'Accepted' ? { kind: 'accepted', receiptId: id } : { kind: 'ambiguous', reason: `Azure answered 200 without an accepted usageEventId (${messageOf(a.json)})` };
      }
      case 409: {
        const outcome = classifyDuplicate(record, acceptedMessageOf(body));
        if (outcome.kind !== 'ambiguous') return outcome;
        const found = await lookup(record);
        if (found.found === true && Math.abs(found.quantity - record.quantity) <= 1e-9) return { kind: 'accepted', receiptId: found.receiptId, detail: 'confirmed by the usageEvents read-back' };
        return outcome;
      }
      case 400: {
        // The single endpoint reports every rejection as 400; the details name the status.
        const details = Array.isArray(body?.details) ? (body.details as unknown[]).map((d) => obj(d) ?? {}) : [];
        const codes = details.map((d) => str(d.code) ?? '');
        const msg = messageOf(a.json);
        if (codes.includes('Expired') || /expired/i.test(msg)) return settleExpired(record, `Azure refused the event as expired (${msg})`);
        const status = codes.find((c) => classifyRejection(c, '') !== undefined && c !== 'BadArgument') ?? (/not active|suspended|unsubscribed/i.test(msg) ? 'ResourceNotActive' : 'BadArgument');
        return classifyRejection(status, msg) as SendOutcome;
      }
      case 403:
        if (/usage resource/i.test(messageOf(a.json))) return classifyRejection('ResourceNotAuthorized', messageOf(a.json)) as SendOutcome;
        return classifyHttp(a.status, a.json, a.retryAfterMs);
      default:
        return classifyHttp(a.status, a.json, a.retryAfterMs);
    }
  }

  return {
    marketplace: 'azure',
    maxBatchSize: AZURE_MAX_BATCH_SIZE,
    send,
    resolve,
    isExpired,
    lookup,
    usageEvents,
    close: () => agent.close(),
  };
}
