// The two scheduled workflows on the time-skipping server, their activities scripted:
// - sweepWorkflow (workflows/sweep.ts): which hour a run closes, and a close retried through an
//   outage;
// - usagePullWorkflow (workflows/usage-pull.ts): the hour a run pulls, the back-fill after it,
//   an outage of the source waited out by the same run, bad hours, an operator's re-pull.
// What the activities do with the database is tested against PostgreSQL elsewhere.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { closedHourAt } from '../../domain/time';
import type { PullHourResult } from '../../activities/usage-pull';
import { targetHour, type UsagePullInput, type UsagePullResult } from '../../workflows/usage-pull';
import { startScriptedTimeSkipping, until, type ScriptedWorker } from '../helpers/time-skipping';

const HOUR = 3_600_000;
const MINUTE = 60_000;

let env: TestWorkflowEnvironment;
let worker: ScriptedWorker;
let stop: (() => Promise<void>) | undefined;
before(async () => void ({ env, worker, stop } = await startScriptedTimeSkipping()));
after(async () => stop?.());

let seq = 0;
const iso = (ms: number) => new Date(ms).toISOString();

/** Skips the server's clock to the first instant at or after `ms` + `offsetMs` into an hour. */
async function skipTo(offsetIntoHourMs: number): Promise<number> {
  const now = await env.currentTimeMs();
  const target = Math.floor(now / HOUR) * HOUR + HOUR + offsetIntoHourMs;
  await env.sleep(target - now);
  return env.currentTimeMs();
}

describe('sweepWorkflow on the time-skipping server', () => {
  const time = { hourMs: HOUR, graceHours: 1 / 6 };
  const closed = { hour: '2026-01-01T00:00:00.000Z', records: 3, computed: 5 };

  it('a run hands closeHour the time it started, which names the hour whose window just closed, and returns what the close made', async () => {
    const s = worker.script({ closeHour: () => closed });
    // The window of hour H closes 10 min (the grace) after H+1 starts: the sweep fires then.
    const before = await skipTo(10 * MINUTE + 5000);
    const handle = await env.client.workflow.start('sweepWorkflow', { taskQueue: worker.taskQueue, workflowId: `sweep-${++seq}`, args: [] });
    const result = await handle.result();
    const after = await env.currentTimeMs();
    assert.deepEqual(result, closed);
    assert.equal(s.calls.length, 1);
    const { atMs } = s.calls[0]!.input as { atMs: number };
    assert.ok(atMs >= before && atMs <= after, `atMs ${iso(atMs)} is the run's own clock (${iso(before)} .. ${iso(after)})`);
    const hourThatJustEnded = Math.floor(before / HOUR) * HOUR - HOUR;
    assert.equal(closedHourAt(atMs, time), hourThatJustEnded, 'the hour whose window closed 5 s before the run');
  });

  it('a close that fails (database down) is retried every minute at most, each attempt with the run\'s start time, until it goes through', async () => {
    const s = worker.script({
      closeHour: (_: unknown, n: number) => {
        if (n < 15) throw new Error('connection refused');
        return closed;
      },
    });
    const handle = await env.client.workflow.start('sweepWorkflow', { taskQueue: worker.taskQueue, workflowId: `sweep-${++seq}`, args: [] });
    const result = await handle.result();
    assert.deepEqual(result, closed);
    const calls = s.callsOf('closeHour');
    assert.equal(calls.length, 15);
    const first = (calls[0]!.input as { atMs: number }).atMs;
    // The activity gets the run's start every time: closeHour takes the later of it and its own
    // clock, so an attempt that succeeds past the next window closes the newer hour.
    assert.ok(calls.every((c) => (c.input as { atMs: number }).atMs === first));
    const gaps = calls.slice(1).map((c, i) => c.atMs - calls[i]!.atMs);
    assert.ok(gaps.every((g) => g <= MINUTE + 10_000), `backoff capped at a minute: ${gaps.join(', ')} ms`);
    assert.ok(gaps.at(-1)! >= MINUTE - 1000, `backoff grows to the minute: ${gaps.join(', ')} ms`);
    assert.ok(calls.at(-1)!.atMs - first > 8 * MINUTE, 'the outage lasted minutes of skipped time');
  });
});

describe('usagePullWorkflow on the time-skipping server', () => {
  const len = HOUR;
  const lagMs = len / 2; // DEFAULT_LAG_HOURS
  const pulled = (hourMs: number, attempts = 1): PullHourResult => ({ hour: iso(hourMs), status: 'pulled', tallies: 2, attempts });

  async function startPull(input: Partial<UsagePullInput> = {}) {
    return env.client.workflow.start('usagePullWorkflow', { taskQueue: worker.taskQueue, workflowId: `pull-${++seq}`, args: [{ hourLengthMs: len, ...input }] });
  }

  it('a scheduled run pulls the hour that ended lagHours ago, then back-fills the planned hours oldest first', async () => {
    const startedAt = await skipTo(lagMs + MINUTE);
    const target = targetHour(startedAt, len, lagMs);
    const backfill = [target - 5 * len, target - 3 * len];
    const s = worker.script({
      pullUsageHour: (a: { hourMs: number }) => (a.hourMs === target - 3 * len ? { ...pulled(a.hourMs), status: 'failed', tallies: 0, reason: 'counter reset' } : pulled(a.hourMs)),
      planUsagePulls: () => ({ hours: backfill, more: true }),
    });
    const handle = await startPull({ backfillLimit: 2, since: iso(target - 24 * len) });
    const result: UsagePullResult = await handle.result();
    assert.equal(target, Math.floor(startedAt / len) * len - len, 'the hour that ended 31 min before the run');
    assert.deepEqual(
      s.calls.map((c) => [c.activity, c.input]),
      [
        ['pullUsageHour', { hourMs: target }],
        ['planUsagePulls', { toMs: target, limit: 2, sinceMs: target - 24 * len }],
        ['pullUsageHour', { hourMs: backfill[0] }],
        ['pullUsageHour', { hourMs: backfill[1] }],
      ],
    );
    assert.deepEqual(result, {
      target: iso(target),
      pulled: 2,
      tallies: 4,
      failed: [{ hour: iso(backfill[1]!), reason: 'counter reset' }],
      hours: [iso(target), iso(backfill[0]!), iso(backfill[1]!)],
      more: true,
    });
  });

  it('a source outage: the same run retries its hour (backoff up to a twelfth of an hour) and back-fills every hour that ended meanwhile', async () => {
    const startedAt = await skipTo(lagMs + MINUTE);
    const target = targetHour(startedAt, len, lagMs);
    const s = worker.script({
      pullUsageHour: async (a: { hourMs: number }) => {
        if (a.hourMs === target && (await env.currentTimeMs()) < startedAt + 3 * len) throw new Error('prometheus: connection refused');
        return pulled(a.hourMs);
      },
      planUsagePulls: (a: { toMs: number }) => ({ hours: [a.toMs - 2 * len, a.toMs - len, a.toMs].filter((h) => h > target), more: false }),
    });
    const handle = await startPull();
    const result: UsagePullResult = await handle.result();
    const tries = s.calls.filter((c) => c.activity === 'pullUsageHour' && (c.input as { hourMs: number }).hourMs === target);
    assert.ok(tries.length > 5, `retried through the outage (${tries.length} tries)`);
    const gaps = tries.slice(1).map((c, i) => c.atMs - tries[i]!.atMs);
    assert.ok(gaps.every((g) => g <= len / 12 + 10_000), `backoff capped at 5 min: ${gaps.join(', ')} ms`);
    const plan = s.callsOf('planUsagePulls')[0]!.input as { toMs: number };
    assert.ok(plan.toMs >= target + 3 * len, `planned after the outage, up to ${iso(plan.toMs)}`);
    assert.deepEqual(result.hours, [iso(target), iso(plan.toMs - 2 * len), iso(plan.toMs - len), iso(plan.toMs)], 'the hours that ended during the outage, in this run');
    assert.deepEqual(result.failed, []);
  });

  it("an operator's re-pull pulls exactly the hours asked for, in order, and plans no back-fill", async () => {
    const s = worker.script({ pullUsageHour: (a: { hourMs: number }) => pulled(a.hourMs) });
    const hours = [iso(Date.UTC(2026, 0, 2, 5)), iso(Date.UTC(2026, 0, 1, 7))];
    const result: UsagePullResult = await (await startPull({ hours })).result();
    assert.deepEqual(
      s.calls.map((c) => [c.activity, c.input]),
      hours.map((h) => ['pullUsageHour', { hourMs: Date.parse(h) }]),
    );
    assert.equal(result.target, null);
    assert.deepEqual(result.hours, hours);
    assert.equal(result.more, false);
  });

  it('an hour that is not the start of an hour stops the run before any pull, saying which', async () => {
    const s = worker.script({ pullUsageHour: (a: { hourMs: number }) => pulled(a.hourMs) });
    const handle = await startPull({ hours: [iso(Date.UTC(2026, 0, 1, 7)), '2026-01-01T07:30:00.000Z'] });
    // A plain Error fails the workflow task, which Temporal retries: the run waits for a fix.
    const failure = await until(
      async () => (await handle.fetchHistory()).events?.find((e) => e.workflowTaskFailedEventAttributes)?.workflowTaskFailedEventAttributes?.failure?.message,
      (m) => !!m,
      'the workflow task to fail',
    );
    assert.match(failure ?? '', /hours: 2026-01-01T07:30:00.000Z is not the start of an hour/);
    assert.deepEqual(s.calls, []);
    await handle.terminate('test done');
  });
});
