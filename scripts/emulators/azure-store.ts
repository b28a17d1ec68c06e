// What the Azure emulator remembers, and the rules that need it: the events "Azure billed" (the
// first event per resource, dimension and hour; any later one a Duplicate carrying it), the
// resources' states, the calls as they arrived, and the usageEvents read-back over them.
// Event-level faults (not-subscribed, expired) apply here.

import { randomUUID } from 'node:crypto';
import { eventBody, messageTime, parseEvent, rejected, type AzureEventStatus, type EventResult, type ParsedEvent } from './azure-events';
import type { FaultKind, FaultQueue } from './faults';
import { DAY_MS } from '../../domain/time';

const EVENT_FAULTS: readonly FaultKind[] = ['not-subscribed', 'expired'];

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

export interface AzureRules {
  hourMs: number;
  acceptanceHours: number;
  /** How far in the future effectiveStartTime may be (clock skew). */
  futureToleranceMs: number;
  dimensions: ReadonlySet<string>;
  /** The resources' states at start (and after a reset). */
  resources: Record<string, AzureResourceState>;
  /** After this long an accepted event reads back as reconStatus Accepted. */
  reconDelayMs: number;
  now: () => number;
}

/** The filters of a usageEvents read-back; [startMs, endMs) on the event's time. */
export interface UsageQuery {
  startMs: number;
  endMs: number;
  planId?: string;
  dimension?: string;
  reconStatus?: string;
}

type UsageRow = Record<string, unknown> & { submittedQuantity: number; submittedCount: number; processedQuantity: number; newest: number };

const dedupKey = (resource: string, dimension: string, slot: number) => `${resource}\u0000${dimension}\u0000${slot}`;

export class AzureMeteringStore {
  private stored = new Map<string, AzureEmulatorRecord>();
  private accepted: AzureEmulatorRecord[] = [];
  private callLog: AzureEmulatorCall[] = [];
  private resources: Map<string, AzureResourceState>;

  constructor(
    private readonly rules: AzureRules,
    private readonly faults: FaultQueue,
  ) {
    this.resources = new Map(Object.entries(rules.resources));
  }

  reset(): void {
    this.stored = new Map();
    this.accepted = [];
    this.callLog = [];
    this.resources = new Map(Object.entries(this.rules.resources));
  }

  records(): AzureEmulatorRecord[] {
    return [...this.accepted];
  }

  calls(): AzureEmulatorCall[] {
    return [...this.callLog];
  }

  logCall(call: AzureEmulatorCall): void {
    this.callLog.push(call);
  }

  setResource(resource: string, state: AzureResourceState): void {
    this.resources.set(resource, state);
  }

  resourceStates(): Record<string, AzureResourceState> {
    return Object.fromEntries(this.resources);
  }

  /** The per-event rules, in the reference's recommended order; accepted events are stored. */
  processEvent(raw: unknown, clientId: string): EventResult {
    const e = parseEvent(raw);
    if (typeof e === 'string') return rejected(raw, 'BadArgument', 'BadArgument', e);
    if (!(e.quantity > 0)) return rejected(raw, 'InvalidQuantity', 'BadArgument', `Quantity must be greater than 0 (got ${e.quantity}).`);
    const fault = this.faults.take({ customer: e.resource, dimension: e.dimension }, EVENT_FAULTS);
    const res = this.resources.get(e.resource) ?? { state: 'Subscribed' };
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
    if (!this.rules.dimensions.has(e.dimension)) return rejected(raw, 'InvalidDimension', 'BadArgument', `Dimension ${e.dimension} is not defined for plan ${e.planId}.`);
    if (res.planId !== undefined && res.planId !== e.planId) return rejected(raw, 'BadArgument', 'BadArgument', `The planId ${e.planId} is not the plan of resource ${e.resource}.`);
    const t = this.rules.now();
    if (fault === 'expired' || t - e.timestampMs > this.rules.acceptanceHours * this.rules.hourMs) {
      return rejected(raw, 'Expired', 'Expired', `Event has expired: usage events can only be emitted for the past ${this.rules.acceptanceHours} hours${fault ? ' (injected fault)' : ''}.`);
    }
    if (e.timestampMs - t > this.rules.futureToleranceMs) return rejected(raw, 'BadArgument', 'BadArgument', `effectiveStartTime ${e.effectiveStartTime} is in the future.`);
    return this.store(raw, e, clientId);
  }

  /** The hour's first event is billed; any later one is a Duplicate carrying it. */
  private store(raw: unknown, e: ParsedEvent, clientId: string): EventResult {
    const slot = Math.floor(e.timestampMs / this.rules.hourMs);
    const key = dedupKey(e.resource, e.dimension, slot);
    const prior = this.stored.get(key);
    if (prior) {
      return rejected(raw, 'Duplicate', 'Conflict', 'This usage event already exist.', { acceptedMessage: { ...eventBody(prior), status: 'Duplicate' } });
    }
    const at = this.rules.now();
    const usageEventId = randomUUID();
    const rec: AzureEmulatorRecord = {
      receiptId: usageEventId,
      usageEventId,
      customer: e.resource,
      ...(typeof e.raw.resourceId === 'string' && e.raw.resourceId ? { resourceId: e.resource } : { resourceUri: e.resource }),
      dimension: e.dimension,
      quantity: e.quantity,
      planId: e.planId,
      effectiveStartTime: e.effectiveStartTime,
      timestampMs: e.timestampMs,
      hour: new Date(slot * this.rules.hourMs).toISOString(),
      hourSlot: slot,
      messageTime: messageTime(at),
      clientId,
      acceptedAt: new Date(at).toISOString(),
    };
    this.stored.set(key, rec);
    this.accepted.push(rec);
    return { status: 'Accepted', body: { ...eventBody(rec), status: 'Accepted' }, record: rec };
  }

  /** Per (UTC day, resource, dimension, plan) aggregates of accepted events in [start, end). */
  usageRows(q: UsageQuery): Record<string, unknown>[] {
    const t = this.rules.now();
    const rows = new Map<string, UsageRow>();
    for (const r of this.accepted) {
      if (r.timestampMs < q.startMs || r.timestampMs >= q.endMs) continue;
      if (q.planId && r.planId !== q.planId) continue;
      if (q.dimension && r.dimension !== q.dimension) continue;
      const day = Math.floor(r.timestampMs / DAY_MS) * DAY_MS;
      const key = [day, r.customer, r.dimension, r.planId].join('\u0000');
      const row = rows.get(key) ?? newUsageRow(r, day);
      row.submittedQuantity += r.quantity;
      row.submittedCount += 1;
      row.newest = Math.max(row.newest, Date.parse(r.acceptedAt));
      rows.set(key, row);
    }
    return [...rows.values()]
      .map(({ newest, ...row }) => {
        const settled = t - newest >= this.rules.reconDelayMs;
        return { ...row, reconStatus: settled ? 'Accepted' : 'Submitted', processedQuantity: settled ? row.submittedQuantity : 0 };
      })
      .filter((row) => !q.reconStatus || row.reconStatus === q.reconStatus);
  }
}

function newUsageRow(r: AzureEmulatorRecord, day: number): UsageRow {
  return {
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
}
