// Started every hour by the Schedule `remit-usage-pull/<taskQueue>` (workers/usage-pull-schedule.ts)
// when a usage source is configured (REMIT_PROMETHEUS_URL). One run:
//
//   1. pulls hour H, the hour that ended `lagHours` ago, retrying until the source answers;
//   2. back-fills: pulls every earlier hour of the current and previous month that is not
//      recorded as pulled (no row, or left `pulling`), oldest first, at most `backfillLimit`.
//
// A run started with `hours` (an operator's re-pull) pulls exactly those hours and nothing else.
//
// A source outage therefore never loses an hour: the run stuck on H retries (the Web UI shows
// the pending activity with its last error; the Schedule skips the runs that would overlap), and
// when the source is back the same run back-fills every hour that ended meanwhile. Hours whose
// data is bad are recorded `failed` with the reasons and not retried by the back-fill (reading
// them again gives the same answer); an operator re-pulls them with `hours` (docs/usage-source.md).
//
// Deterministic: workflow time only, all I/O in activities/usage-pull.ts.

import { log, proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import type { PullHourResult, UsagePullActivities } from '../activities/usage-pull';

export interface UsagePullInput {
  /** Length of an hour in ms (REMIT_HOUR_SECONDS x 1000). */
  hourLengthMs: number;
  /** How long after its end an hour is pulled, in hours (may be fractional); default 0.5. */
  lagHours?: number;
  /** Most earlier hours one run back-fills; default 168 (a week). The next run continues. */
  backfillLimit?: number;
  /** ISO instant: back-fill from here even before the first recorded pull (within the two months). */
  since?: string;
  /** ISO instants: pull exactly these hours, whatever their record says, and nothing else (an operator's re-pull). */
  hours?: string[];
  /** Retry policy of a pull; default: 1 s doubling up to hourLengthMs / 12 (5 min), forever. */
  retry?: { initialIntervalMs?: number; maximumIntervalMs?: number };
}

export interface UsagePullResult {
  /** The hour this run was scheduled for; null for an operator's run of given hours. */
  target: string | null;
  pulled: number;
  tallies: number;
  failed: Array<{ hour: string; reason: string }>;
  /** Hours pulled, oldest first after the target. */
  hours: string[];
  /** More missing hours than backfillLimit: the next run continues the back-fill. */
  more: boolean;
}

export const DEFAULT_LAG_HOURS = 0.5;
export const DEFAULT_BACKFILL_LIMIT = 168;

/** The hour that ended `lagMs` before `nowMs`. */
export function targetHour(nowMs: number, hourLengthMs: number, lagMs: number): number {
  return Math.floor((nowMs - lagMs) / hourLengthMs) * hourLengthMs - hourLengthMs;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function parseIso(s: string, what: string): number {
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) throw new Error(`${what}: not an ISO-8601 instant: ${JSON.stringify(s)}`);
  return ms;
}

export async function usagePullWorkflow(input: UsagePullInput): Promise<UsagePullResult> {
  const len = input.hourLengthMs;
  if (!(Number.isInteger(len) && len > 0)) throw new Error(`hourLengthMs must be a positive integer, got ${len}`);
  const lagMs = Math.round((input.lagHours ?? DEFAULT_LAG_HOURS) * len);
  const limit = input.backfillLimit ?? DEFAULT_BACKFILL_LIMIT;
  const maximumInterval = input.retry?.maximumIntervalMs ?? Math.min(300_000, Math.max(100, Math.round(len / 12)));
  const initialInterval = input.retry?.initialIntervalMs ?? Math.min(1000, maximumInterval);
  const acts = proxyActivities<UsagePullActivities>({
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: '1 minute',
    // No maximumAttempts and no schedule-to-close: a read is retried until the source answers.
    retry: { initialInterval, maximumInterval, backoffCoefficient: 2 },
  });

  const results: PullHourResult[] = [];
  const failures = () => results.filter((r) => r.status === 'failed').map((r) => ({ hour: r.hour, reason: r.reason ?? '' }));
  const summary = () => {
    const failed = failures();
    return `\n\nThis run: ${results.length - failed.length} hour(s) pulled${failed.length ? `, ${failed.length} failed (bad data, nothing stored):\n${failed.map((f) => `- ${f.hour}: ${f.reason}`).join('\n')}` : ''}.`;
  };
  const pull = async (hourMs: number, why: string): Promise<void> => {
    setCurrentDetails(`**Pulling usage of ${iso(hourMs)}** (${why}).\n\nA failing read is retried until the source answers: see the pending activity for the attempt and the last error.${summary()}`);
    const r = await acts.pullUsageHour({ hourMs });
    results.push(r);
    if (r.status === 'failed') log.warn('usage hour failed: bad data from the source', { hour: r.hour, reason: r.reason });
  };

  let more = false;
  let target: number | undefined;
  if (input.hours) {
    // An operator's run: exactly these hours, whatever their record says (e.g. a failed hour whose data was fixed).
    const hours = input.hours.map((h) => parseIso(h, 'hours'));
    const off = hours.findIndex((ms) => ms % len !== 0);
    if (off >= 0) throw new Error(`hours: ${input.hours[off]} is not the start of an hour`);
    for (const ms of hours) await pull(ms, 'asked for by an operator');
  } else {
    target = targetHour(Date.now(), len, lagMs);
    await pull(target, 'the hour that just ended');
    // Planned after the target's pull: if that pull waited out an outage, the hours that ended
    // meanwhile are owed too, and this run fills them instead of leaving them to the next one.
    const plan = await acts.planUsagePulls({ toMs: targetHour(Date.now(), len, lagMs), limit, sinceMs: input.since ? parseIso(input.since, 'since') : undefined });
    for (const h of plan.hours) await pull(h, 'back-fill of an hour not pulled yet');
    more = plan.more;
  }

  const failed = failures();
  setCurrentDetails(`**Done.** ${target === undefined ? 'Hours asked for by an operator.' : `Scheduled for ${iso(target)}.`}${summary()}${more ? `\n\nMore than ${limit} hours are missing: the next run continues the back-fill.` : ''}`);
  return {
    target: target === undefined ? null : iso(target),
    pulled: results.length - failed.length,
    tallies: results.reduce((n, r) => n + r.tallies, 0),
    failed,
    hours: results.map((r) => r.hour),
    more,
  };
}
