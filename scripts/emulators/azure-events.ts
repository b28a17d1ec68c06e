// The Azure emulator's reading and writing of usage events: parsing one event as Azure checks it,
// the shapes of its answers (a rejected event, an accepted one, an HTTP error), and Azure's
// date-times. Pure: no state.

import type { AzureEmulatorRecord } from './azure-store';

export const AZURE_EVENT_STATUSES = [
  'Accepted', 'Expired', 'Duplicate', 'Error', 'ResourceNotFound', 'ResourceNotAuthorized', 'ResourceNotActive', 'InvalidDimension', 'InvalidQuantity', 'BadArgument',
] as const;
export type AzureEventStatus = (typeof AZURE_EVENT_STATUSES)[number];

/** What Azure writes as messageTime of an event it did not accept. */
const NO_MESSAGE_TIME = '0001-01-01T00:00:00';

export interface ParsedEvent {
  raw: Record<string, unknown>;
  /** resourceId or resourceUri: the dedup and fault-matching identity. */
  resource: string;
  dimension: string;
  quantity: number;
  planId: string;
  effectiveStartTime: string;
  timestampMs: number;
}

export type EventResult = { status: AzureEventStatus; body: Record<string, unknown>; record?: AzureEmulatorRecord };

/** A whole call refused: its status, body and extra headers, as Azure answers it. */
export class HttpError extends Error {
  constructor(readonly status: number, readonly body: Record<string, unknown>, readonly headers: Record<string, string> = {}) {
    super(String(body.message ?? body.code));
  }
}

/** `2020-01-12T13:19:35.3450000Z`: Azure writes seven fractional digits. */
export function messageTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$10000Z');
}

/** ISO-8601; a time without a zone is UTC, as Azure reads effectiveStartTime. */
export function parseInstant(s: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(s)) return undefined;
  const hasZone = /(Z|[+-]\d{2}:?\d{2})$/.test(s) && s.includes('T');
  const ms = Date.parse(s.includes('T') ? (hasZone ? s : `${s}Z`) : `${s}T00:00:00Z`);
  return Number.isFinite(ms) ? ms : undefined;
}

export function badArgument(target: string, message: string, code = 'BadArgument'): HttpError {
  return new HttpError(400, { message: 'One or more errors have occurred.', target, details: [{ message, target, code }], code: 'BadArgument' });
}

/** One usage event as Azure checks its fields, or what is wrong with it. */
export function parseEvent(raw: unknown): ParsedEvent | string {
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

/** The event as Azure echoes it (only the fields of a usage event). */
function pickEcho(e: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of ['resourceId', 'resourceUri', 'quantity', 'dimension', 'effectiveStartTime', 'planId']) if (e[f] !== undefined) out[f] = e[f];
  return out;
}

/** A per-event rejection: the status, Azure's error, and the event echoed back. */
export function rejected(raw: unknown, status: AzureEventStatus, code: string, message: string, additionalInfo?: unknown): EventResult {
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

/** An accepted event as Azure describes it (in its answer, and in a later duplicate's). */
export function eventBody(r: AzureEmulatorRecord): Record<string, unknown> {
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
