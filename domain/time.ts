// Time arithmetic for remittance hours. Pure: every function takes the length of an "hour"
// explicitly, because REMIT_HOUR_SECONDS scales hours for tests while calendar months stay
// calendar months. Workflow code may import this module.

export const PRODUCTION_HOUR_MS = 3_600_000;
/** A calendar day: never scaled (dates, certificate lifetimes, day-granular queries). */
export const DAY_MS = 86_400_000;

/** Start of the hour slot that contains `ms`. */
export function hourStart(ms: number, hourMs: number): number {
  return Math.floor(ms / hourMs) * hourMs;
}

/**
 * The newest remittance hour whose window has closed at `ms`: hour H closes at the end of H plus
 * the grace (`graceHours` of an hour).
 */
export function closedHourAt(ms: number, t: { hourMs: number; graceHours: number }): number {
  return hourStart(ms - Math.round(t.hourMs * t.graceHours), t.hourMs) - t.hourMs;
}

/** True when `ms` is exactly the start of an hour slot. */
export function isOnHour(ms: number, hourMs: number): boolean {
  return Number.isInteger(ms) && ms % hourMs === 0;
}

/** Accumulation period (UTC calendar month, `YYYY-MM`) of an instant. */
export function monthOf(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

/** First instant of the UTC month `YYYY-MM`. */
export function monthStartMs(month: string): number {
  const [y, m] = month.split('-').map(Number);
  if (!y || !m) throw new Error(`not a month: ${month}`);
  return Date.UTC(y, m - 1, 1);
}

/** First instant of the UTC month after `YYYY-MM`. */
export function nextMonthStartMs(month: string): number {
  const [y, m] = month.split('-').map(Number);
  if (!y || !m) throw new Error(`not a month: ${month}`);
  return Date.UTC(y, m, 1);
}

/** The month before `YYYY-MM`. */
export function previousMonth(month: string): string {
  return monthOf(monthStartMs(month) - 1);
}
