// The hourly Schedule of the usage pull (workflows/usage-pull.ts, docs/usage-source.md).
// Created (or updated to the current settings) at worker start when a usage source is configured.
//
//   REMIT_USAGE_PULL_LAG_HOURS       how long after its end an hour is pulled, default 0.5 (the
//                                    original system's HH:30); >= 1 pulls older hours
//   REMIT_USAGE_PULL_BACKFILL_HOURS  most missing hours one run back-fills, default 168
//   REMIT_USAGE_PULL_SINCE           ISO instant: back-fill from here (within the current and
//                                    previous month) even before the first recorded pull

import { Client, ScheduleAlreadyRunning, ScheduleNotFoundError, ScheduleOverlapPolicy } from '@temporalio/client';
import type { TimeSettings } from '../config/env';
import { parseInstant } from '../domain/instant';
import { DEFAULT_BACKFILL_LIMIT, DEFAULT_LAG_HOURS, type UsagePullInput } from '../workflows/usage-pull';
import { WORKFLOW_TYPE, usagePullScheduleId } from '../workflows/definitions';

export interface UsagePullSettings {
  lagHours: number;
  backfillLimit: number;
  since?: string;
}

export function usagePullSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): UsagePullSettings {
  const num = (name: string, def: number, integer: boolean): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return def;
    const v = Number(raw);
    if (!Number.isFinite(v) || v < 0 || (integer && !Number.isInteger(v))) throw new Error(`${name} must be a${integer ? ' whole' : ''} number >= 0, got ${JSON.stringify(raw)}`);
    return v;
  };
  const since = env.REMIT_USAGE_PULL_SINCE || undefined;
  if (since !== undefined) {
    const p = parseInstant(since);
    if ('error' in p) throw new Error(`REMIT_USAGE_PULL_SINCE ${p.error}`);
  }
  return { lagHours: num('REMIT_USAGE_PULL_LAG_HOURS', DEFAULT_LAG_HOURS, false), backfillLimit: num('REMIT_USAGE_PULL_BACKFILL_HOURS', DEFAULT_BACKFILL_LIMIT, true), ...(since ? { since } : {}) };
}

export function usagePullInput(time: TimeSettings, s: UsagePullSettings): UsagePullInput {
  return { hourLengthMs: time.hourMs, lagHours: s.lagHours, backfillLimit: s.backfillLimit, ...(s.since ? { since: s.since } : {}) };
}

/**
 * Every hour at `lagHours` past the hour (its fractional part), start `usagePullWorkflow` on the
 * task queue. Overlapping runs are skipped: a run stuck on an outage back-fills what the skipped
 * runs would have pulled. Idempotent: several workers starting together all end with one schedule.
 */
export async function ensureUsagePullSchedule(client: Client, taskQueue: string, time: TimeSettings, settings: UsagePullSettings = usagePullSettingsFromEnv()): Promise<void> {
  const offset = Math.round((settings.lagHours % 1) * time.hourMs);
  const spec = { intervals: [{ every: time.hourMs, offset }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: WORKFLOW_TYPE.usagePull,
    workflowId: usagePullScheduleId(taskQueue),
    taskQueue,
    args: [usagePullInput(time, settings)],
  };
  const scheduleId = usagePullScheduleId(taskQueue);
  try {
    await client.schedule.create({
      scheduleId,
      spec,
      action,
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: Math.max(time.hourMs, 60_000) },
      memo: { description: 'Pulls the usage of the hour that ended from the usage source, retrying until it answers, and back-fills missed hours (docs/usage-source.md)' },
    });
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(scheduleId).update((prev) => ({ ...prev, spec, action: { ...prev.action, ...action } }));
  }
}

/** Remove the schedule (a deployment that stops pulling); no error when there is none. */
export async function deleteUsagePullSchedule(client: Client, taskQueue: string): Promise<void> {
  try {
    await client.schedule.getHandle(usagePullScheduleId(taskQueue)).delete();
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
  }
}
