// Validation of an ingestion batch (POST /v1/tallies). All-or-nothing: either every item is valid
// and the batch comes back normalized (canonical metric id, hour as epoch ms, value as an exact
// decimal string), or nothing is accepted and every problem is listed as {index, field, message}.
// Pure and allocation-light: a batch of 10,000 tallies validates in a few milliseconds.

import type { Catalog, CatalogMetric } from './catalog';
import { normalizeMetricId } from './catalog';
import { Decimal } from './decimal';
import { parseInstant } from './instant';
import { isMarketplace, MARKETPLACES, type RemittanceKey } from './key';
import { DAY_MS, hourStart } from './time';


export interface TallyError {
  /** Position in `tallies`; -1 for a problem of the batch itself. */
  index: number;
  field: string;
  message: string;
  /** Set for the refusals counted in a metric (remit_tallies_refused_total). */
  code?: TallyRefusal;
}

/**
 * Refusals worth counting apart from plain bad input: `too_old`, usage older than the maximum age
 * (a usage source that is behind); `rollup`, a roll-up row (a source sending what it should not).
 */
export type TallyRefusal = 'too_old' | 'rollup';

/**
 * Default of REMIT_MAX_USAGE_AGE_DAYS. Three consecutive calendar months last at most 92 days
 * (July to September, October to December), so with 92 the usage of any month is accepted until
 * the end of the second month after it whatever the day: a usage source's reprocessing of the
 * previous month, even one that runs a month late, is never refused.
 */
export const DEFAULT_MAX_USAGE_AGE_DAYS = 92;

/**
 * The value the original system's tally summaries use for a roll-up row, the sum of the specific
 * rows of that field (every SLA, every usage, every billing account). Billing it next to the
 * specific rows would bill the same usage twice, under two keys.
 */
export const ROLLUP_VALUE = '_ANY';
const ROLLUP_FIELDS = ['sla', 'usage', 'billingAccountId'] as const;

/** The first key field of a raw tally that holds the roll-up value, or null for a specific row. */
export function rollupFieldOf(t: unknown): (typeof ROLLUP_FIELDS)[number] | null {
  if (typeof t !== 'object' || t === null) return null;
  const r = t as Record<string, unknown>;
  for (const f of ROLLUP_FIELDS) {
    const v = r[f];
    // Cheap first: this runs for every tally of a batch.
    if (typeof v === 'string' && v.length === 4 && v.charCodeAt(0) === 95 && v.toUpperCase() === ROLLUP_VALUE) return f;
  }
  return null;
}

/** A valid tally: the remittance key (canonical metric id), its hour and its value. */
export interface NormalizedTally {
  key: RemittanceKey;
  /** Start of the tally's hour, epoch ms (a multiple of the configured hour length). */
  hourMs: number;
  /** Exact decimal string in metric units, >= 0, plain notation ("0.0000001", not "1e-7"). */
  value: string;
}

export interface TallyBatchOptions {
  catalog: Catalog;
  /** Length of an hour in ms (REMIT_HOUR_SECONDS x 1000): tally hours are multiples of it. */
  hourMs: number;
  /** Now, epoch ms: hours after the current one are rejected. */
  nowMs: number;
  /**
   * Hours that started more than this many days before now are refused (REMIT_MAX_USAGE_AGE_DAYS,
   * default DEFAULT_MAX_USAGE_AGE_DAYS). Real days, never scaled: calendar months stay calendar
   * months when REMIT_HOUR_SECONDS shortens hours.
   */
  maxUsageAgeDays?: number;
  /** Largest batch accepted; unlimited when absent (the API's body limit bounds it). */
  maxTallies?: number;
  /** Errors listed in full; the rest are only counted (omittedErrors). Default 1000. */
  maxErrors?: number;
}

export type TallyBatchResult =
  | {
      ok: true;
      /** One per key and hour, in order of first appearance. */
      tallies: NormalizedTally[];
      /** Items that replaced an earlier item of the same key and hour in this batch. */
      replaced: number;
    }
  | {
      ok: false;
      errors: TallyError[];
      omittedErrors: number;
      /** Tallies refused per counted reason, listed or not. */
      refused?: Partial<Record<TallyRefusal, number>>;
    };

const STRING_FIELDS = ['orgId', 'productTag', 'metric', 'sla', 'usage', 'billingAccountId'] as const;
const MAX_FIELD_LENGTH = 255;

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}`;
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

// One scan for the rare bad cases (surrounding whitespace, control characters, unpaired surrogates,
// which made keyString's encodeURIComponent throw: a 500); the message is
// worked out only on a hit. \s is the set String.prototype.trim removes.
const SUSPECT = /^\s|\s$|[\u0000-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function stringProblem(v: unknown): string | null {
  if (typeof v !== 'string') return v === undefined ? 'is required' : `must be a string, got ${describe(v)}`;
  if (v.length === 0) return 'must not be empty';
  if (v.length > MAX_FIELD_LENGTH) return `must be at most ${MAX_FIELD_LENGTH} characters`;
  if (!SUSPECT.test(v)) return null;
  // "Premium " and "Premium" would be two keys and two records for one customer's usage.
  if (v.trim() !== v) return 'must not start or end with whitespace';
  if (/[\u0000-\u001f\u007f]/.test(v)) return 'must not contain control characters';
  return 'must be valid Unicode (no unpaired surrogate)';
}

/** Exact decimal of a JSON number value, or why it is not an acceptable usage value. */
function valueOf(v: unknown): { value: string } | { error: string } {
  if (typeof v !== 'number') {
    if (v === undefined) return { error: 'is required' };
    // JSON has no NaN or Infinity; a client that serialized one by hand sent a string.
    if (typeof v === 'string' && /^[+-]?(nan|inf(inity)?)$/i.test(v.trim())) return { error: `must be a finite number >= 0, got ${describe(v)}` };
    return { error: `must be a JSON number, got ${describe(v)}` };
  }
  if (!Number.isFinite(v)) return { error: `must be a finite number >= 0, got ${v}` };
  if (v < 0) return { error: `must be >= 0, got ${v}` };
  const s = String(v);
  // String(n) is the shortest round-trip decimal; only exponent forms need rewriting.
  return { value: s.includes('e') ? Decimal.fromNumber(v).toString() : s };
}

/**
 * Validate and normalize a batch `{ tallies: [...] }`.
 *
 * Several items for the same key and hour in one batch: the last one wins, as a re-sent tally
 * replaces the stored one (a correction), so a batch means the same as its items sent one by one
 * in order. The result holds one tally per key and hour (a store can upsert it in one statement).
 */
export function validateTallyBatch(body: unknown, opts: TallyBatchOptions): TallyBatchResult {
  const maxErrors = opts.maxErrors ?? 1000;
  const errors: TallyError[] = [];
  let omittedErrors = 0;
  const refused: Partial<Record<TallyRefusal, number>> = {};
  const fail = (index: number, field: string, message: string, code?: TallyRefusal) => {
    if (code) refused[code] = (refused[code] ?? 0) + 1;
    if (errors.length < maxErrors) errors.push({ index, field, message, ...(code ? { code } : {}) });
    else omittedErrors++;
  };

  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { ok: false, errors: [{ index: -1, field: '', message: `the body must be a JSON object {"tallies": [...]}, got ${describe(body)}` }], omittedErrors: 0 };
  }
  const items = (body as { tallies?: unknown }).tallies;
  if (!Array.isArray(items)) {
    return { ok: false, errors: [{ index: -1, field: 'tallies', message: `must be an array of tallies, got ${describe(items)}` }], omittedErrors: 0 };
  }
  if (opts.maxTallies !== undefined && items.length > opts.maxTallies) {
    return { ok: false, errors: [{ index: -1, field: 'tallies', message: `at most ${opts.maxTallies} tallies per request, got ${items.length}; split the batch` }], omittedErrors: 0 };
  }

  const currentHour = hourStart(opts.nowMs, opts.hourMs);

  const maxAgeDays = opts.maxUsageAgeDays ?? DEFAULT_MAX_USAGE_AGE_DAYS;
  const oldestAccepted = opts.nowMs - maxAgeDays * DAY_MS;
  // Batches repeat a few hours and a few product/metric spellings thousands of times.
  const hourCache = new Map<string, { ms: number } | { error: string; code?: TallyRefusal }>();
  const metricCache = new Map<string, Map<string, CatalogMetric | null>>();
  const out: NormalizedTally[] = [];
  const position = new Map<string, number>();
  let replaced = 0;

  for (let i = 0; i < items.length; i++) {
    const t: unknown = items[i];
    if (typeof t !== 'object' || t === null || Array.isArray(t)) {
      fail(i, '', `each tally must be an object, got ${describe(t)}`);
      continue;
    }
    const r = t as Record<string, unknown>;
    let bad = false;
    let namesOk = true;

    for (const f of STRING_FIELDS) {
      const p = stringProblem(r[f]);
      if (p) {
        fail(i, f, p);
        bad = true;
        if (f === 'productTag' || f === 'metric') namesOk = false;
      }
    }
    const rollup = rollupFieldOf(r);
    if (rollup) {
      fail(i, rollup, `is ${JSON.stringify(r[rollup])}, a roll-up row (the sum of the specific ${rollup} rows): billing it next to them would bill the same usage twice; send only the specific rows`, 'rollup');
      bad = true;
    }

    const provider = r.billingProvider;
    if (!isMarketplace(provider)) {
      fail(i, 'billingProvider', provider === undefined ? 'is required' : `unknown marketplace ${describe(provider)} (known: ${MARKETPLACES.join(', ')})`);
      bad = true;
    }

    let entry: CatalogMetric | null = null;
    if (namesOk && typeof r.productTag === 'string' && typeof r.metric === 'string') {
      let byMetric = metricCache.get(r.productTag);
      if (byMetric === undefined) {
        byMetric = new Map();
        metricCache.set(r.productTag, byMetric);
      }
      let found = byMetric.get(r.metric);
      if (found === undefined) {
        found = opts.catalog.index.get(r.productTag)?.get(normalizeMetricId(r.metric)) ?? null;
        byMetric.set(r.metric, found);
      }
      entry = found;
      if (!entry) {
        const product = opts.catalog.products.get(r.productTag);
        if (!product) fail(i, 'productTag', `unknown product ${JSON.stringify(r.productTag)} (known: ${[...opts.catalog.products.keys()].join(', ')})`);
        else fail(i, 'metric', `unknown metric ${JSON.stringify(r.metric)} for ${r.productTag} (known: ${product.metrics.map((m) => m.metric).join(', ')})`);
        bad = true;
      }
    }

    let hourMs = 0;
    const hourRaw = r.hour;
    let parsed: { ms: number } | { error: string; code?: TallyRefusal } | undefined = typeof hourRaw === 'string' ? hourCache.get(hourRaw) : undefined;
    if (parsed === undefined) {
      parsed = hourRaw === undefined ? { error: 'is required' } : parseInstant(hourRaw, { requireUtc: true });
      if ('ms' in parsed) {
        if (parsed.ms % opts.hourMs !== 0) {
          parsed = { error: `must be on the hour (a multiple of ${opts.hourMs / 1000}s since the epoch), got ${JSON.stringify(hourRaw)}` };
        } else if (parsed.ms > currentHour) {
          parsed = { error: `is in the future: ${JSON.stringify(hourRaw)} starts after the current hour ${new Date(currentHour).toISOString()}` };
        } else if (parsed.ms < oldestAccepted) {
          // Late usage of any earlier month is billed in the current hour's record (docs/design.md),
          // but only up to a fixed age, the same on every day of the month.
          const days = Math.floor((opts.nowMs - parsed.ms) / DAY_MS);
          parsed = {
            error: `is ${days} days old: usage older than ${maxAgeDays} days (REMIT_MAX_USAGE_AGE_DAYS) is no longer accepted, because remit cannot bill it any more; the oldest hour accepted now starts at or after ${new Date(oldestAccepted).toISOString()}`,
            code: 'too_old',
          };
        }
      }
      if (typeof hourRaw === 'string') hourCache.set(hourRaw, parsed);
    }
    if ('error' in parsed) {
      fail(i, 'hour', parsed.error, parsed.code);
      bad = true;
    } else {
      hourMs = parsed.ms;
    }

    const v = valueOf(r.value);
    if ('error' in v) {
      fail(i, 'value', v.error);
      bad = true;
    }

    if (bad || errors.length > 0 || omittedErrors > 0 || !entry || !('value' in v) || !isMarketplace(provider)) continue;
    const key: RemittanceKey = {
      billingProvider: provider,
      billingAccountId: r.billingAccountId as string,
      orgId: r.orgId as string,
      productTag: entry.productTag,
      metric: entry.metric,
      sla: r.sla as string,
      usage: r.usage as string,
    };
    // Control characters are rejected above, so \u0001 cannot occur inside a field.
    const id = `${key.billingProvider}\u0001${key.billingAccountId}\u0001${key.orgId}\u0001${key.productTag}\u0001${key.metric}\u0001${key.sla}\u0001${key.usage}\u0001${hourMs}`;
    const at = position.get(id);
    if (at === undefined) {
      position.set(id, out.length);
      out.push({ key, hourMs, value: v.value });
    } else {
      out[at] = { key, hourMs, value: v.value };
      replaced++;
    }
  }

  if (errors.length > 0 || omittedErrors > 0) return { ok: false, errors, omittedErrors, refused };
  return { ok: true, tallies: out, replaced };
}
