// Azure Marketplace Metering: what each answer means. Pure (no I/O): every Azure answer (per-event
// status, HTTP error, token or transport failure, usage read-back) becomes a SendOutcome here. The
// transport (azure-transport.ts) carries answers; the client (azure.ts) adds only what needs the
// send's context (its prechecks, a batch answered without a result for an event).
//
// Azure hours are write-once: the first event for (resource, dimension, hour) is billed and every
// later one, even an identical re-send, is refused as a duplicate that carries the accepted event.
// That makes sending again always safe (it can never bill twice), and a duplicate whose accepted
// quantity equals ours is our own earlier send whose answer was lost: success.

import type { LookupResult, SendOutcome, UsageRecord } from './types';

/** What classification needs to know of the client's settings. */
export interface AzureClassifyContext {
  hourMs: number;
  /** Azure refuses events older than this many hours (24). */
  acceptanceHours: number;
  /** The Entra app, named when Azure refuses its token. */
  clientId: string;
  tenantId: string;
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

/** The event Azure says it accepted first, as carried by a duplicate's answer. */
export interface AcceptedMessage {
  usageEventId?: string;
  quantity?: number;
  dimension?: string;
  resourceId?: string;
  resourceUri?: string;
  effectiveStartTime?: string;
}

/** An answer that says the hour is past Azure's window: only a read-back can tell what Azure holds. */
export interface ExpiredAnswer {
  kind: 'expired';
  why: string;
}

export function azureCustomer(r: UsageRecord) {
  if (r.customer.marketplace !== 'azure') throw new Error(`record ${r.recordId} is for ${r.customer.marketplace}, not Azure`);
  return r.customer;
}

const resourceOf = (r: UsageRecord) => azureCustomer(r).resourceId;
const slotOf = (ms: number, hourMs: number) => Math.floor(ms / hourMs);
const sameQuantity = (a: number, b: number) => Math.abs(a - b) <= 1e-9;

/** The receipt of a record confirmed by reading back (Azure's read-back has no event id). */
export function readBackReceipt(record: UsageRecord): string {
  return `usageEvents:${resourceOf(record)}|${record.dimension}|${new Date(record.timestampMs).toISOString()}`;
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
export function acceptedMessageOf(container: unknown): AcceptedMessage | undefined {
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

export function messageOf(json: unknown): string {
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

export function classifyTokenError(err: unknown): SendOutcome {
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

export function classifyTransportError(err: unknown, what: string): SendOutcome {
  const code = errorCode(err);
  const message = (err as Error)?.message ?? String(err);
  if (code && NOT_SENT_CODES.has(code)) {
    return { kind: 'retryable', code: 'marketplace_unavailable', reason: `could not reach Azure Marketplace Metering (${code}: ${message}); nothing was sent` };
  }
  return { kind: 'ambiguous', reason: `no answer from Azure Marketplace Metering after sending ${what} (${code ?? (err as Error)?.name ?? 'Error'}: ${message})` };
}

/** Per-event statuses that say the event will never be accepted as sent. */
export function classifyRejection(status: string, detail: string): SendOutcome | undefined {
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

/** A whole call answered with an error status: one outcome for every event in it. */
export function classifyHttp(status: number, json: unknown, retryAfterMs: number | undefined, ctx: AzureClassifyContext): SendOutcome {
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
      reason: `Azure refused the app's token even when fresh (${status}: ${msg}): the Entra app (client ${ctx.clientId}, tenant ${ctx.tenantId}) is not the one on the offer's technical configuration; nothing was billed`,
    };
  }
  if (status >= 400) return { kind: 'terminal', code: 'marketplace_rejected', reason: `Azure rejected the request (${status}: ${msg}); nothing was billed` };
  return { kind: 'ambiguous', reason: `unexpected answer from Azure Marketplace Metering (${status}: ${msg})` };
}

/** A duplicate is ours when Azure holds exactly our event: same quantity, resource, dimension, hour. */
export function classifyDuplicate(record: UsageRecord, accepted: AcceptedMessage | undefined, hourMs: number): SendOutcome {
  if (!accepted || accepted.quantity === undefined) {
    return { kind: 'ambiguous', reason: 'Azure called the event a duplicate without saying what it accepted' };
  }
  const mismatches: string[] = [];
  if (!sameQuantity(accepted.quantity, record.quantity)) mismatches.push(`quantity ${accepted.quantity} (ours ${record.quantity})`);
  if (accepted.dimension !== undefined && accepted.dimension !== record.dimension) mismatches.push(`dimension ${accepted.dimension}`);
  const resource = accepted.resourceId ?? accepted.resourceUri;
  if (resource !== undefined && resource !== resourceOf(record)) mismatches.push(`resource ${resource}`);
  const at = accepted.effectiveStartTime ? Date.parse(accepted.effectiveStartTime) : NaN;
  if (Number.isFinite(at) && slotOf(at, hourMs) !== slotOf(record.timestampMs, hourMs)) mismatches.push(`hour ${accepted.effectiveStartTime}`);
  if (mismatches.length === 0) {
    return { kind: 'accepted', receiptId: accepted.usageEventId ?? readBackReceipt(record), detail: 'Azure already held this exact event (an earlier send whose answer was lost)' };
  }
  return {
    kind: 'terminal',
    code: 'marketplace_duplicate_record',
    reason: `Azure already accepted another event for this resource, dimension and hour (${mismatches.join(', ')}${accepted.usageEventId ? `, usageEventId ${accepted.usageEventId}` : ''}); the first one stays billed and this one was not`,
  };
}

/** The rows of a usageEvents answer, or undefined when the answer is not a list. */
export function usageRowsOf(json: unknown): AzureUsageRow[] | undefined {
  if (!Array.isArray(json)) return undefined;
  return (json as unknown[]).map((row) => {
    const r = obj(row) ?? {};
    return { ...r, usageDate: str(r.usageDate) ?? '', usageResourceId: str(r.usageResourceId) ?? '', dimension: str(r.dimension) ?? '', submittedQuantity: num(r.submittedQuantity) ?? 0, submittedCount: num(r.submittedCount) ?? 0 };
  });
}

/** What the read-back rows of the record's hour say about the record. */
export function lookupFromRows(record: UsageRecord, rows: AzureUsageRow[]): LookupResult {
  const resource = resourceOf(record);
  const mine = rows.filter((r) => (r.usageResourceId === resource || r.resourceUri === resource) && r.dimension === record.dimension);
  const count = mine.reduce((n, r) => n + r.submittedCount, 0);
  const quantity = mine.reduce((n, r) => n + r.submittedQuantity, 0);
  if (count === 0) return { found: false };
  if (count === 1) return { found: true, quantity, receiptId: readBackReceipt(record) };
  return { found: 'unknown', reason: `usageEvents reports ${count} events (${quantity} in all) for the hour's day, resource and dimension: the hour itself cannot be told apart` };
}

/**
 * The outcome of a record whose hour is past Azure's window, from what the read-back found:
 * expired only when Azure holds nothing, since an earlier send whose answer was lost may be billed.
 */
export function expiredOutcome(record: UsageRecord, found: LookupResult, why: string, ctx: AzureClassifyContext): SendOutcome {
  if (found.found === false) {
    return {
      kind: 'terminal',
      code: 'marketplace_window_expired',
      reason: `${why}: Azure accepts usage events up to ${ctx.acceptanceHours} hours old and holds none for ${new Date(record.timestampMs).toISOString()}; nothing was billed`,
    };
  }
  if (found.found === true) {
    if (sameQuantity(found.quantity, record.quantity)) {
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

/** An ambiguous duplicate settled by the read-back: accepted only when Azure holds our quantity. */
export function confirmedByReadBack(record: UsageRecord, found: LookupResult, otherwise: SendOutcome): SendOutcome {
  if (found.found === true && sameQuantity(found.quantity, record.quantity)) return { kind: 'accepted', receiptId: found.receiptId, detail: 'confirmed by the usageEvents read-back' };
  return otherwise;
}

/** One per-event result of a batch, matched to its record. */
export function classifyEvent(record: UsageRecord, result: Record<string, unknown>, ctx: AzureClassifyContext): SendOutcome | ExpiredAnswer {
  const status = str(result.status) ?? '';
  const error = obj(result.error);
  const detail = [str(error?.code), str(error?.message)].filter(Boolean).join(': ');
  if (status === 'Accepted') {
    const id = str(result.usageEventId);
    return id ? { kind: 'accepted', receiptId: id } : { kind: 'ambiguous', reason: 'Azure reported Accepted without a usageEventId' };
  }
  if (status === 'Duplicate') return classifyDuplicate(record, acceptedMessageOf(error), ctx.hourMs);
  if (status === 'Expired') return { kind: 'expired', why: `Azure refused the event as expired${detail ? ` (${detail})` : ''}` };
  return classifyRejection(status, detail) ?? { kind: 'terminal', code: 'unknown', reason: `Azure returned an unknown event status '${status}'${detail ? ` (${detail})` : ''}; not billed as far as we know` };
}

/**
 * A batch's per-event results, one per record (undefined where Azure gave none), matched by
 * (resource, dimension, hour) rather than position, since Azure does not promise to keep the
 * order; an unmatched result falls back to its position.
 */
export function matchBatchResults(records: UsageRecord[], json: unknown): (Record<string, unknown> | undefined)[] {
  const list = obj(json)?.result;
  const results = Array.isArray(list) ? (list as unknown[]).map((x) => obj(x) ?? {}) : [];
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
  return matched;
}

/**
 * The answer of the single-event endpoint (`POST /api/usageEvent`). A 409 whose duplicate cannot
 * be told ours comes back ambiguous: the client then asks the read-back.
 */
export function classifyUsageEventAnswer(record: UsageRecord, status: number, json: unknown, retryAfterMs: number | undefined, ctx: AzureClassifyContext): SendOutcome | ExpiredAnswer {
  const body = obj(json);
  switch (status) {
    case 200: {
      const id = str(body?.usageEventId);
      return id && str(body?.status) === 'Accepted' ? { kind: 'accepted', receiptId: id } : { kind: 'ambiguous', reason: `Azure answered 200 without an accepted usageEventId (${messageOf(json)})` };
    }
    case 409:
      return classifyDuplicate(record, acceptedMessageOf(body), ctx.hourMs);
    case 400: {
      // The single endpoint reports every rejection as 400; the details name the status.
      const details = Array.isArray(body?.details) ? (body.details as unknown[]).map((d) => obj(d) ?? {}) : [];
      const codes = details.map((d) => str(d.code) ?? '');
      const msg = messageOf(json);
      if (codes.includes('Expired') || /expired/i.test(msg)) return { kind: 'expired', why: `Azure refused the event as expired (${msg})` };
      const rejection = codes.find((c) => classifyRejection(c, '') !== undefined && c !== 'BadArgument') ?? (/not active|suspended|unsubscribed/i.test(msg) ? 'ResourceNotActive' : 'BadArgument');
      return classifyRejection(rejection, msg) as SendOutcome;
    }
    case 403:
      if (/usage resource/i.test(messageOf(json))) return classifyRejection('ResourceNotAuthorized', messageOf(json)) as SendOutcome;
      return classifyHttp(status, json, retryAfterMs, ctx);
    default:
      return classifyHttp(status, json, retryAfterMs, ctx);
  }
}
