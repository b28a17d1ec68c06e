// Azure Marketplace Metering client: one batchUsageEvent call per send(), the usageEvents
// read-back for answers that were lost, and the rule that an hour past Azure's window is read
// back before it is called expired. What each answer means is azure-classify.ts; how it travels
// (HTTPS, Entra tokens) is azure-transport.ts. Nothing retries here: Temporal owns retries, with
// backoff chosen per outcome.

import {
  azureCustomer,
  classifyEvent,
  classifyHttp,
  classifyUsageEventAnswer,
  confirmedByReadBack,
  expiredOutcome,
  lookupFromRows,
  matchBatchResults,
  messageOf,
  usageRowsOf,
  type AzureClassifyContext,
  type AzureUsageRow,
  type ExpiredAnswer,
} from './azure-classify';
import { createAzureTransport, type AzureTransportOptions } from './azure-transport';
import type { LookupResult, MarketplaceClient, SendOutcome, UsageRecord } from './types';

export const AZURE_MAX_BATCH_SIZE = 25;
const API_VERSION = '2018-08-31';

export interface AzureMarketplaceOptions extends AzureTransportOptions {
  hourMs: number;
  /** Azure refuses events older than this many hours (24). */
  acceptanceHours: number;
  /** Events within this much of the window's end count as expired (clock skew); default hourMs / 60. */
  expiryMarginMs?: number;
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

export function createAzureMarketplace(options: AzureMarketplaceOptions): AzureMarketplaceClient {
  const now = options.now ?? Date.now;
  const log = options.log;
  const windowMs = options.acceptanceHours * options.hourMs;
  const marginMs = options.expiryMarginMs ?? options.hourMs / 60;
  const ctx: AzureClassifyContext = { hourMs: options.hourMs, acceptanceHours: options.acceptanceHours, clientId: options.clientId, tenantId: options.tenantId };
  const transport = createAzureTransport(options);

  function isExpired(record: UsageRecord): boolean {
    return now() - record.timestampMs > windowMs - marginMs;
  }

  async function usageEvents(query: AzureUsageQuery): Promise<AzureUsageRow[]> {
    const params = new URLSearchParams({ 'api-version': API_VERSION, usageStartDate: new Date(query.startMs).toISOString() });
    if (query.endMs !== undefined) params.set('UsageEndDate', new Date(query.endMs).toISOString());
    if (query.dimension) params.set('dimension', query.dimension);
    if (query.planId) params.set('planId', query.planId);
    const a = await transport.exchange('GET', `/api/usageEvents?${params}`, undefined, 'a usage read-back');
    if (a.kind === 'failed') throw new Error(`usageEvents read-back failed: ${a.outcome.kind === 'ambiguous' ? a.outcome.reason : `${a.outcome.kind}: ${'reason' in a.outcome ? a.outcome.reason : ''}`}`);
    const rows = a.status === 200 ? usageRowsOf(a.json) : undefined;
    if (!rows) throw new Error(`usageEvents read-back failed (${a.status}: ${messageOf(a.json)})`);
    return rows;
  }

  /**
   * Reads back the record's own hour. This relies on usageEvents honouring the time part of its
   * date filters (the emulator does; Azure's documentation shows hour-precise dates but does not
   * promise it): more than one event in the answer is treated as "cannot tell".
   */
  async function lookup(record: UsageRecord): Promise<LookupResult> {
    const slotStart = Math.floor(record.timestampMs / options.hourMs) * options.hourMs;
    let rows: AzureUsageRow[];
    try {
      // No plan filter: the hour is write-once per resource and dimension whatever the plan.
      rows = await usageEvents({ startMs: slotStart, endMs: slotStart + options.hourMs, dimension: record.dimension });
    } catch (err) {
      return { found: 'unknown', reason: (err as Error).message };
    }
    return lookupFromRows(record, rows);
  }

  /**
   * Azure says (or we know) the hour is past its window. An earlier attempt may still have been
   * recorded (its answer lost), so read back before calling it expired: marking it expired makes
   * the amount bill again in a later hour, which must not happen if Azure already has it.
   */
  async function settleExpired(record: UsageRecord, why: string): Promise<SendOutcome> {
    return expiredOutcome(record, await lookup(record), why, ctx);
  }

  /** An answer that may need the read-back (an expired hour) settled into an outcome. */
  function settled(record: UsageRecord, o: SendOutcome | ExpiredAnswer): Promise<SendOutcome> {
    return o.kind === 'expired' ? settleExpired(record, o.why) : Promise.resolve(o);
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

  /** One batchUsageEvent call for the records that passed the precheck: an outcome each. */
  async function sendBatch(records: UsageRecord[]): Promise<SendOutcome[]> {
    const a = await transport.exchange('POST', `/api/batchUsageEvent?api-version=${API_VERSION}`, { request: records.map(toWire) }, 'a batch');
    if (a.kind === 'failed') {
      log?.warn({ events: records.length, outcome: a.outcome.kind }, 'batchUsageEvent failed');
      return records.map(() => a.outcome);
    }
    if (a.status === 200) {
      const results = matchBatchResults(records, a.json);
      log?.debug({ events: records.length, requestId: a.requestId }, 'batchUsageEvent answered');
      return Promise.all(
        records.map((r, i) => {
          const res = results[i];
          return res ? settled(r, classifyEvent(r, res, ctx)) : Promise.resolve<SendOutcome>({ kind: 'ambiguous', reason: 'Azure answered the batch without a result for this event' });
        }),
      );
    }
    const o = classifyHttp(a.status, a.json, a.retryAfterMs, ctx);
    log?.warn({ events: records.length, status: a.status, requestId: a.requestId, outcome: o.kind }, 'batchUsageEvent refused');
    return records.map(() => o);
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
    const perEvent = await sendBatch(sending.map(({ r }) => r));
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
    const a = await transport.exchange('POST', `/api/usageEvent?api-version=${API_VERSION}`, toWire(record), 'a usage event');
    if (a.kind === 'failed') return a.outcome;
    log?.debug({ recordId: record.recordId, status: a.status, requestId: a.requestId }, 'usageEvent answered');
    const outcome = classifyUsageEventAnswer(record, a.status, a.json, a.retryAfterMs, ctx);
    // A duplicate that does not say what Azure accepted: the read-back can still tell it ours.
    if (a.status === 409 && outcome.kind === 'ambiguous') return confirmedByReadBack(record, await lookup(record), outcome);
    return settled(record, outcome);
  }

  return {
    marketplace: 'azure',
    maxBatchSize: AZURE_MAX_BATCH_SIZE,
    send,
    resolve,
    isExpired,
    lookup,
    usageEvents,
    close: () => transport.close(),
  };
}
