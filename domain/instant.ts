// Strict ISO-8601 instants. Date.parse is too forgiving for billing input: it turns
// "2026-02-30T00:00:00Z" into March 2nd and reads an offset-less "2026-01-01T00:00" as local
// time, so a typo would move usage to another hour, or another month. Pure; workflow-safe.

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?$/;

export interface InstantOptions {
  /** Accept a bare date (`2026-11-01`, read as 00:00 UTC). Default false. */
  allowDateOnly?: boolean;
  /** Only `Z` (or a +00:00 / -00:00 offset) is accepted. Default false. */
  requireUtc?: boolean;
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * Epoch ms of an ISO-8601 instant, or a human reason why it is not one. A date-time must carry
 * its offset: an instant without one is ambiguous.
 */
export function parseInstant(s: unknown, opts: InstantOptions = {}): { ms: number } | { error: string } {
  if (typeof s !== 'string') return { error: `must be an ISO-8601 string, got ${s === null ? 'null' : typeof s}` };
  const m = ISO_RE.exec(s);
  if (!m) return { error: `must be an ISO-8601 instant such as 2026-11-25T10:00:00Z, got ${JSON.stringify(s)}` };
  const [, y, mo, d, hh, mi, ss = '0', frac = '', offset] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  // Date.UTC maps years 0-99 to 1900-1999; nothing billable predates 1970 anyway.
  if (year < 1970) return { error: `year ${y} is before 1970, in ${JSON.stringify(s)}` };
  if (month < 1 || month > 12) return { error: `month ${mo} does not exist, in ${JSON.stringify(s)}` };
  if (day < 1 || day > daysInMonth(year, month)) return { error: `day ${d} does not exist in ${y}-${mo}, in ${JSON.stringify(s)}` };
  if (hh === undefined) {
    if (!opts.allowDateOnly) return { error: `must include a time and an offset, e.g. ${y}-${mo}-${d}T00:00:00Z` };
    return { ms: Date.UTC(year, month - 1, day) };
  }
  const hour = Number(hh);
  const minute = Number(mi);
  const second = Number(ss);
  if (hour > 23 || minute > 59 || second > 59) return { error: `time ${hh}:${mi}:${ss} does not exist, in ${JSON.stringify(s)}` };
  if (offset === undefined) return { error: `must carry an offset (Z for UTC), got ${JSON.stringify(s)}` };
  if (/[1-9]/.test(frac.slice(3))) return { error: `sub-millisecond precision is not supported, got ${JSON.stringify(s)}` };
  let offsetMin = 0;
  if (offset !== 'Z') {
    const sign = offset.startsWith('-') ? -1 : 1;
    const oh = Number(offset.slice(1, 3));
    const om = Number(offset.slice(4, 6));
    if (oh > 23 || om > 59) return { error: `offset ${offset} does not exist, in ${JSON.stringify(s)}` };
    offsetMin = sign * (oh * 60 + om);
  }
  if (opts.requireUtc && offsetMin !== 0) return { error: `must be in UTC (end in Z), got ${JSON.stringify(s)}` };
  const ms = Number(frac.padEnd(3, '0').slice(0, 3));
  return { ms: Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000 };
}

/** Canonical form of an instant: `2026-11-25T10:00:00.000Z`. */
export function isoString(ms: number): string {
  return new Date(ms).toISOString();
}
