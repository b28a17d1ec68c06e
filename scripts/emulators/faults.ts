// Fault injection shared by the marketplace emulators (admin API `POST /_emulator/faults`).

export const FAULT_KINDS = ['throttle', 'server-error', 'timeout', 'lost-response', 'not-subscribed', 'unprocessed', 'expired'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultSpec {
  kind: FaultKind;
  /** How many matching requests (AWS: calls, Azure: events/calls) the fault hits; default 1. */
  count?: number;
  /** Alternatively, how long the fault lasts from now. */
  durationMs?: number;
  /** Only requests/records of this customer (AWS account id or Azure resource id) and/or dimension. */
  match?: { customer?: string; dimension?: string };
}

export function parseFaultSpec(body: unknown): FaultSpec {
  if (!body || typeof body !== 'object') throw new Error('fault must be an object');
  const b = body as Record<string, unknown>;
  if (typeof b.kind !== 'string' || !(FAULT_KINDS as readonly string[]).includes(b.kind)) {
    throw new Error(`kind must be one of ${FAULT_KINDS.join(', ')}`);
  }
  const spec: FaultSpec = { kind: b.kind as FaultKind };
  for (const f of ['count', 'durationMs'] as const) {
    if (b[f] !== undefined) {
      const v = b[f];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${f} must be a positive integer`);
      spec[f] = v;
    }
  }
  if (b.match !== undefined) {
    if (!b.match || typeof b.match !== 'object') throw new Error('match must be an object');
    const m = b.match as Record<string, unknown>;
    spec.match = {};
    for (const f of ['customer', 'dimension'] as const) {
      if (m[f] !== undefined) {
        if (typeof m[f] !== 'string') throw new Error(`match.${f} must be a string`);
        spec.match[f] = m[f];
      }
    }
  }
  return spec;
}

interface ActiveFault { spec: FaultSpec; remaining: number; until: number | undefined }

/**
 * Queued faults. A fault with `durationMs` hits every matching request until it runs out;
 * otherwise it hits `count` (default 1) matching requests. Faults are taken in the order queued.
 */
export class FaultQueue {
  private faults: ActiveFault[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  add(spec: FaultSpec): void {
    this.faults.push({
      spec,
      remaining: spec.durationMs !== undefined ? Infinity : (spec.count ?? 1),
      until: spec.durationMs !== undefined ? this.now() + spec.durationMs : undefined,
    });
  }

  /** Drops every fault, or only those whose match names this customer. */
  clear(customer?: string): void {
    this.faults = customer === undefined ? [] : this.faults.filter((f) => f.spec.match?.customer !== customer);
  }

  list(): FaultSpec[] {
    this.expire();
    return this.faults.map((f) => f.spec);
  }

  /**
   * Take the first fault whose kind is in `kinds` (all kinds when omitted) and that matches
   * the request's customer and dimension; consumes one use of it.
   */
  take(target: { customer?: string; dimension?: string }, kinds?: readonly FaultKind[]): FaultKind | undefined {
    this.expire();
    for (const f of this.faults) {
      if (kinds && !kinds.includes(f.spec.kind)) continue;
      const m = f.spec.match;
      if (m?.customer !== undefined && m.customer !== target.customer) continue;
      if (m?.dimension !== undefined && m.dimension !== target.dimension) continue;
      f.remaining -= 1;
      this.expire();
      return f.spec.kind;
    }
    return undefined;
  }

  private expire(): void {
    const now = this.now();
    this.faults = this.faults.filter((f) => f.remaining > 0 && (f.until === undefined || now < f.until));
  }
}

/**
 * The fault and reset routes every emulator's admin API shares: `GET|POST|DELETE
 * /_emulator/faults` (POST takes one spec or an array; `check` refuses kinds an emulator does not
 * support; DELETE takes an optional customer) and `POST /_emulator/reset`. Returns undefined for any other route.
 */
export function sharedAdminRoute(
  route: string,
  body: string,
  faults: FaultQueue,
  reset: () => void,
  check: (spec: FaultSpec) => void = () => undefined,
): { status: number; body: unknown } | undefined {
  switch (route) {
    case 'GET /_emulator/faults':
      return { status: 200, body: { faults: faults.list() } };
    case 'POST /_emulator/faults':
      try {
        const parsed: unknown = JSON.parse(body || 'null');
        const specs = (Array.isArray(parsed) ? parsed : [parsed]).map(parseFaultSpec);
        specs.forEach(check);
        for (const s of specs) faults.add(s);
        return { status: 200, body: { queued: specs.length, faults: faults.list() } };
      } catch (err) {
        return { status: 400, body: { error: (err as Error).message } };
      }
    case 'DELETE /_emulator/faults': {
      // An optional `{"customer": "..."}` body drops only that customer's faults: stories that
      // share an emulator end their own fault without ending another's.
      let customer: string | undefined;
      if (body.trim()) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(body);
        } catch (err) {
          return { status: 400, body: { error: (err as Error).message } };
        }
        // A body that names no customer must not clear everything by mistake.
        const c = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>).customer : undefined;
        if (typeof c !== 'string' || Object.keys(parsed as object).length !== 1) return { status: 400, body: { error: 'the body, if any, must be {"customer": "<id>"}' } };
        customer = c;
      }
      faults.clear(customer);
      return { status: 200, body: { faults: faults.list() } };
    }
    case 'POST /_emulator/reset':
      reset();
      return { status: 200, body: { reset: true } };
    default:
      return undefined;
  }
}
