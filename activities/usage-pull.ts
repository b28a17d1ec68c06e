// Activities of the usage pull (workflows/usage-pull.ts, docs/usage-source.md): read one hour
// from the usage source and ingest it through the API's own ingestion (usage/ingest.ts; the sweep
// that closes the hour computes and sends what they owe).
//
// How errors cross the activity/workflow line:
// - the source could not be read (UsageReadError, or anything unexpected such as the database):
//   thrown as a retryable ApplicationFailure of type `usage_source_unavailable`; Temporal retries
//   it with backoff until it succeeds, and meanwhile the Web UI shows the pending activity with
//   its attempt count and last error, and usage_pulls.last_error has it too;
// - the source answered, and some series cannot be billed (the source's `rejected`, or tallies
//   the validation refuses): every good tally is stored, each bad series is recorded with its
//   reason (usage_pulls.rejected and last_error, the metric remit_usage_pull_rejected_hours, the
//   alert RemitUsagePullRejectedSeries); the hour is `pulled`, or `failed` when nothing of it could
//   be stored. The back-fill does not read it again (the answer would be the same); an operator
//   re-pulls it once the source is fixed. A whole answer the source cannot use (UsageDataError)
//   fails the hour with nothing stored.

import { ApplicationFailure, Context } from '@temporalio/activity';
import type { TimeSettings } from '../config/env';
import type { Database } from '../db/client';
import { beginPull, markPullFailed, markPulled, planPulls, recordPullError, type PullPlan } from '../db/usage-pulls';
import type { Catalog } from '../domain/catalog';
import { ROLLUP_VALUE, rollupFieldOf } from '../domain/tally';
import type { Logger } from '../lib/log';
import { ingestTallies } from '../usage/ingest';
import { UsageDataError, UsageReadError, type RawTally, type UsageSource } from '../usage/source';

export interface UsagePullDeps {
  database: Database;
  catalog: Catalog;
  time: TimeSettings;
  source: UsageSource;
  log: Logger;
  now?: () => number;
}

export const USAGE_SOURCE_UNAVAILABLE = 'usage_source_unavailable';

export interface PullHourResult {
  hour: string;
  status: 'pulled' | 'failed';
  /** Tallies stored (0 when failed). */
  tallies: number;
  /** Series that could not be billed and were left out (their reasons are in `reason`). */
  rejected?: number;
  /** Attempts so far for this hour, this one included. */
  attempts: number;
  /** Why the hour failed, or which series were left out. */
  reason?: string;
  /** Roll-up rows (`_ANY`) of the hour left out, and why; absent when there were none. */
  skipped?: { rollups: number; reason: string };
}

const MAX_REASONS = 20;

function who(t: RawTally | undefined): string {
  if (!t || typeof t !== 'object') return '';
  return ` (${[t.orgId, t.productTag, t.metric, t.billingProvider, t.billingAccountId].map((v) => String(v)).join(' / ')})`;
}

function reasonOf(problems: string[]): string {
  const shown = problems.slice(0, MAX_REASONS);
  return `${shown.join('; ')}${problems.length > shown.length ? `; and ${problems.length - shown.length} more` : ''}`;
}

export function createUsagePullActivities(deps: UsagePullDeps) {
  const now = deps.now ?? Date.now;
  const { database, source } = deps;
  const len = deps.time.hourMs;

  async function fail(hourMs: number, problems: string[]): Promise<PullHourResult> {
    const reason = `${source.name}: the usage of this hour cannot be billed, nothing of it was stored: ${reasonOf(problems)}`;
    const row = await markPullFailed(database, hourMs, reason, problems.length);
    deps.log.warn({ hour: row.hour, problems: problems.slice(0, MAX_REASONS) }, 'usage pull failed: bad data from the source');
    return { hour: row.hour, status: 'failed', tallies: 0, rejected: problems.length, attempts: row.attempts, reason };
  }

  return {
    /** The hours a run must pull: missing or unfinished hours of the current and previous month, oldest first. */
    async planUsagePulls(a: { toMs: number; limit: number; sinceMs?: number }): Promise<PullPlan> {
      return planPulls(database, { toMs: a.toMs, limit: a.limit, sinceMs: a.sinceMs, hourLengthMs: len });
    },

    /**
     * Read hour `hourMs` from the source and ingest it. Re-pulling an hour replaces its values
     * (tallies are upserted per key and hour), so a retried or repeated pull never adds usage.
     */
    async pullUsageHour(a: { hourMs: number }): Promise<PullHourResult> {
      const { hourMs } = a;
      if (!Number.isInteger(hourMs) || hourMs % len !== 0) {
        throw ApplicationFailure.nonRetryable(`hour ${hourMs} is not the start of an hour of ${len} ms`, 'InvalidHour');
      }
      const started = await beginPull(database, hourMs);
      const log = deps.log.child({ hour: started.hour, attempt: started.attempts, source: source.name });
      const ctx = Context.current();
      const beat = setInterval(() => ctx.heartbeat(started.attempts), 1000);
      let raw: RawTally[];
      const rejected: string[] = [];
      try {
        const read = await source.readHour({ hourMs, hourLengthMs: len });
        raw = read.tallies;
        rejected.push(...read.rejected);
      } catch (err) {
        if (err instanceof UsageDataError) return await fail(hourMs, err.problems);
        const message = err instanceof UsageReadError ? err.message : `${source.name}: unexpected error reading the hour: ${(err as Error)?.message ?? String(err)}`;
        await recordPullError(database, hourMs, message).catch(() => undefined);
        log.warn({ err: message }, 'usage pull will be retried');
        throw ApplicationFailure.create({
          message,
          type: USAGE_SOURCE_UNAVAILABLE,
          nextRetryDelay: err instanceof UsageReadError && err.retryAfterMs ? err.retryAfterMs : undefined,
        });
      } finally {
        clearInterval(beat);
      }

      // Roll-up rows (`_ANY`) repeat the specific rows' usage: the API refuses them, and here they
      // are left out (counted, with the reason) rather than failing the hour, whose specific rows
      // are exactly what is to be billed.
      const rollups = raw.filter((t) => rollupFieldOf(t) !== null);
      const skipped = rollups.length > 0 ? { rollups: rollups.length, reason: `${rollups.length} roll-up row(s) (${ROLLUP_VALUE} in ${rollupFieldOf(rollups[0])}, e.g.${who(rollups[0])}) left out: they sum the specific rows, billing them would bill the same usage twice; exclude them in the query` } : undefined;
      if (skipped) {
        raw = raw.filter((t) => rollupFieldOf(t) === null);
        log.warn({ skipped }, 'usage pull left out roll-up rows');
      }

      // The API's ingestion (usage/ingest.ts), except that a tally it refuses is left out with
      // its reason instead of refusing the batch (the API's sender can fix and re-send it; a
      // pulled hour has no sender to tell). The sweep that closes the current hour computes and
      // sends what the stored tallies owe.
      const ingested = await ingestTallies({ database, catalog: deps.catalog, time: deps.time, now }, { tallies: raw }, { leaveOutInvalid: true, onlyHour: hourMs });
      if (!ingested.ok) return fail(hourMs, [...rejected, ...ingested.errors.map((e) => (e.index < 0 ? `${e.field}: ${e.message}` : `tally ${e.index}${who(raw[e.index])} ${e.field}: ${e.message}`))]);
      for (const { index, problems } of ingested.leftOut) rejected.push(`tally ${index}${who(raw[index])} ${problems.join(', ')}`);
      if (ingested.tallies.length === 0 && rejected.length > 0) return fail(hourMs, rejected);

      const stored = ingested.tallies.length;
      const note = rejected.length > 0 ? `${source.name}: ${rejected.length} series cannot be billed and were left out, the other ${stored} tallies were stored; fix them at the source and re-pull the hour: ${reasonOf(rejected)}` : null;
      const row = await markPulled(database, hourMs, stored, rejected.length, note);
      if (note) log.warn({ tallies: stored, rejected: rejected.slice(0, MAX_REASONS) }, 'usage pulled without the series that cannot be billed');
      else log.info({ tallies: stored, replaced: ingested.replaced }, 'usage pulled');
      return { hour: row.hour, status: 'pulled', tallies: stored, rejected: rejected.length, attempts: row.attempts, ...(note ? { reason: note } : {}), ...(skipped ? { skipped } : {}) };
    },
  };
}

export type UsagePullActivities = ReturnType<typeof createUsagePullActivities>;
