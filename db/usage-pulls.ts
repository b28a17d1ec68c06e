// Progress of the usage pull, one row per hour (table usage_pulls, docs/usage-source.md).
// The row is written before the source is read, so an hour whose pull was attempted is never
// forgotten: a read failure leaves it `pulling` with the error, a crash leaves it `pulling`, and
// the back-fill picks up every `pulling` or missing hour.

import type { Database } from './client';
import { monthOf, monthStartMs, previousMonth } from '../domain/time';

export type UsagePullStatus = 'pulling' | 'pulled' | 'failed';

export interface UsagePullRow {
  hour: string;
  status: UsagePullStatus;
  attempts: number;
  lastError: string | null;
  tallies: number | null;
  /** Series of the last read that could not be billed and were left out (reasons in lastError). */
  rejected: number;
  pulledAt: string | null;
}

/** Longest reason stored; the Web UI and the API show it whole. */
const MAX_ERROR = 4000;

/** The most hours one plan looks at; two months of real hours are 1,488, so only scaled hours reach it. */
export const MAX_SCAN_HOURS = 20_000;

function clip(s: string): string {
  return s.length > MAX_ERROR ? `${s.slice(0, MAX_ERROR - 3)}...` : s;
}

interface RawRow {
  hour: Date;
  status: UsagePullStatus;
  attempts: number;
  last_error: string | null;
  tallies: number | null;
  rejected: number;
  pulled_at: Date | null;
}

function toRow(r: RawRow): UsagePullRow {
  return { hour: r.hour.toISOString(), status: r.status, attempts: r.attempts, lastError: r.last_error, tallies: r.tallies, rejected: r.rejected, pulledAt: r.pulled_at?.toISOString() ?? null };
}

/** An attempt starts: the hour is `pulling`, attempts + 1. */
export async function beginPull(database: Database, hourMs: number): Promise<UsagePullRow> {
  const r = await database.pool.query<RawRow>(
    `INSERT INTO usage_pulls AS p (hour, status, attempts) VALUES ($1, 'pulling', 1)
     ON CONFLICT (hour) DO UPDATE SET status = 'pulling', attempts = p.attempts + 1
     RETURNING *`,
    [new Date(hourMs)],
  );
  return toRow(r.rows[0]!);
}

/** A read failed and will be retried: keep why. */
export async function recordPullError(database: Database, hourMs: number, message: string): Promise<void> {
  await database.pool.query(`UPDATE usage_pulls SET last_error = $2 WHERE hour = $1`, [new Date(hourMs), clip(message)]);
}

/** Stored: `tallies` of them; `rejected` series left out, `note` says which and why. */
export async function markPulled(database: Database, hourMs: number, tallies: number, rejected = 0, note: string | null = null): Promise<UsagePullRow> {
  const r = await database.pool.query<RawRow>(
    `UPDATE usage_pulls SET status = 'pulled', tallies = $2, rejected = $3, last_error = $4, pulled_at = now() WHERE hour = $1 RETURNING *`,
    [new Date(hourMs), tallies, rejected, note === null ? null : clip(note)],
  );
  return toRow(r.rows[0]!);
}

/** The source's data for the hour cannot be billed; nothing of it was stored. */
export async function markPullFailed(database: Database, hourMs: number, reason: string, rejected = 0): Promise<UsagePullRow> {
  const r = await database.pool.query<RawRow>(
    `UPDATE usage_pulls SET status = 'failed', tallies = 0, rejected = $3, last_error = $2 WHERE hour = $1 RETURNING *`,
    [new Date(hourMs), clip(reason), rejected],
  );
  return toRow(r.rows[0]!);
}

export async function getPull(database: Database, hourMs: number): Promise<UsagePullRow | undefined> {
  const r = await database.pool.query<RawRow>(`SELECT * FROM usage_pulls WHERE hour = $1`, [new Date(hourMs)]);
  return r.rows[0] ? toRow(r.rows[0]) : undefined;
}

/** Rows with fromMs <= hour <= toMs, oldest first. */
export async function listPulls(database: Database, range: { fromMs: number; toMs: number }): Promise<UsagePullRow[]> {
  const r = await database.pool.query<RawRow>(`SELECT * FROM usage_pulls WHERE hour BETWEEN $1 AND $2 ORDER BY hour`, [new Date(range.fromMs), new Date(range.toMs)]);
  return r.rows.map(toRow);
}

export interface PullPlanRequest {
  /** The newest hour to consider (inclusive): the hour that just ended, after the lag. */
  toMs: number;
  hourLengthMs: number;
  /** At most this many hours. */
  limit: number;
  /** Consider hours from here on even before the first recorded pull (still within the two months). */
  sinceMs?: number;
}

export interface PullPlan {
  /** Hours to pull, oldest first. */
  hours: number[];
  /** More hours are missing than `limit`; the next run continues. */
  more: boolean;
  /** The first hour considered. */
  fromMs: number;
}

/**
 * The hours the back-fill must pull: every hour of the current and previous month (of `toMs`)
 * up to `toMs` that has no row or is still `pulling`, oldest first. Hours before the first pull
 * ever recorded (or before `sinceMs`) are not owed: before that, the pull was not running, and
 * the usage came some other way (POST /v1/tallies) or not at all.
 */
export async function planPulls(database: Database, p: PullPlanRequest): Promise<PullPlan> {
  const len = p.hourLengthMs;
  const twoMonths = monthStartMs(previousMonth(monthOf(p.toMs)));
  const first = await database.pool.query<{ first: Date | null }>(`SELECT min(hour) AS first FROM usage_pulls`);
  const epoch = first.rows[0]?.first?.getTime();
  const start = Math.min(p.sinceMs ?? Infinity, epoch ?? Infinity, p.toMs);
  let fromMs = Math.ceil(Math.max(twoMonths, start) / len) * len;
  fromMs = Math.max(fromMs, p.toMs - (MAX_SCAN_HOURS - 1) * len);
  if (fromMs > p.toMs || p.limit <= 0) return { hours: [], more: fromMs <= p.toMs, fromMs };
  const done = await database.pool.query<{ hour: Date }>(`SELECT hour FROM usage_pulls WHERE hour BETWEEN $1 AND $2 AND status <> 'pulling'`, [new Date(fromMs), new Date(p.toMs)]);
  const recorded = new Set(done.rows.map((r) => r.hour.getTime()));
  const hours: number[] = [];
  for (let h = fromMs; h <= p.toMs; h += len) {
    if (recorded.has(h)) continue;
    if (hours.length === p.limit) return { hours, more: true, fromMs };
    hours.push(h);
  }
  return { hours, more: false, fromMs };
}
