// Every branch of marketplaceRecordWorkflow (workflows/remittance.ts) on the time-skipping
// server: the record's activities are scripted (they are the workflow's inputs; the real ones
// are tested against PostgreSQL and the marketplace emulators), and each test asserts what the
// workflow does with their answers: the calls it makes, the status it shows (search attributes,
// the `state` query) and the time it waits. Hours of backoff and of waiting for an operator pass
// in milliseconds.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { SendResult } from '../../activities';
import type { RecordWorkflowInput } from '../../workflows/remittance';
import { SA, recalculateSignal, resetSignal, retrySignal, stateQuery, type RemittanceView } from '../../workflows/definitions';
import { historyFacts, replays, shownAttributes, startScriptedTimeSkipping, until, type ScriptedWorker } from '../helpers/time-skipping';

const HOUR = 3_600_000;
const RECORD = 'rec-1';

let env: TestWorkflowEnvironment;
let worker: ScriptedWorker;
let stop: (() => Promise<void>) | undefined;
before(async () => void ({ env, worker, stop } = await startScriptedTimeSkipping()));
after(async () => stop?.());
const script: ScriptedWorker['script'] = (impls) => worker.script(impls);
const withTaskQueue = <T>(fn: (taskQueue: string) => Promise<T>): Promise<T> => fn(worker.taskQueue);

// What the marketplace's answers look like once sendRecord has settled them.
const succeeded = (attempts: number): SendResult => ({ status: 'Succeeded', quantity: 7, receiptId: `receipt-${attempts}`, attempts });
const notYet = (attempts: number, retryAfterMs?: number, errorCode = 'marketplace_throttled'): SendResult => ({
  status: 'Sending',
  quantity: 7,
  errorCode,
  reason: `${errorCode}: try again later`,
  attempts,
  retryAfterMs,
});
const rejected = (attempts: number): SendResult => ({ status: 'Failed', quantity: 7, errorCode: 'customer_not_subscribed', reason: 'the customer is not subscribed', attempts });
const expired = (attempts: number): SendResult => ({ status: 'Expired', quantity: 7, errorCode: 'marketplace_window_expired', reason: 'Retried until the acceptance deadline passed.', attempts });
const audited = async () => undefined;

let seq = 0;
async function startRecord(taskQueue: string, over: Partial<RecordWorkflowInput> = {}, on: TestWorkflowEnvironment = env): Promise<{ handle: WorkflowHandle; input: RecordWorkflowInput; startedAtMs: number }> {
  const now = await on.currentTimeMs();
  const input: RecordWorkflowInput = { recordId: RECORD, remittanceHourMs: Math.floor(now / HOUR) * HOUR - HOUR, deadlineMs: now + 6 * HOUR, hourLengthMs: HOUR, ...over };
  // As the sweep starts it: status Pending already in the list.
  const handle = await on.client.workflow.start('marketplaceRecordWorkflow', {
    taskQueue,
    workflowId: `record-${++seq}`,
    args: [input],
    typedSearchAttributes: [{ key: SA.RemittanceStatus, value: input.recordId ? 'Pending' : (input.status ?? 'Failed') }],
  });
  return { handle, input, startedAtMs: now };
}

const stateOf = (handle: WorkflowHandle) => handle.query(stateQuery);
const waitForStatus = (handle: WorkflowHandle, status: RemittanceView['status']) =>
  until(() => stateOf(handle), (v) => v.status === status, `the workflow to show ${status}`);

describe('marketplaceRecordWorkflow on the time-skipping server', () => {
  it('first try accepted: one send, Succeeded with the receipt, one status upsert, no timer', async () => {
    const s = script({ sendRecord: (_: unknown, n: number) => succeeded(n) });
    await withTaskQueue(async (tq) => {
      const { handle } = await startRecord(tq);
      const result = await handle.result();
      assert.deepEqual(
        s.calls.map((c) => [c.activity, c.input]),
        [['sendRecord', { recordId: RECORD }]],
      );
      assert.equal(result.status, 'Succeeded');
      assert.equal(result.receiptId, 'receipt-1');
      assert.equal(result.quantity, 7);
      assert.deepEqual(await stateOf(handle), result);
      const facts = await historyFacts(handle);
      assert.deepEqual(facts.upserts, [{ RemittanceStatus: 'Succeeded', RemittanceErrorCode: null }]);
      assert.deepEqual(facts.timersMs, []);
      assert.deepEqual(await shownAttributes(handle), { status: 'Succeeded', errorCode: null });
    });
  });

  it('not yet: backs off 1 s doubling up to a twelfth of the hour, honours a longer retry-after, and shows each attempt until accepted', async () => {
    const hourLengthMs = 60_000; // backoff cap: 5 s
    const answers = [notYet(1), notYet(2, 600_000), notYet(3), notYet(4), notYet(5, 100), succeeded(6)];
    const s = script({ sendRecord: (_: unknown, n: number) => answers[n - 1] });
    await withTaskQueue(async (tq) => {
      const { handle } = await startRecord(tq, { hourLengthMs });
      // Between attempts the workflow shows Sending, the attempt count and the last error (time
      // skipping is locked until the test awaits the result: the workflow sits in the retry-after).
      const waiting = await until(() => stateOf(handle), (v) => v.attempts === 2, 'the second attempt');
      assert.equal(waiting.status, 'Sending');
      assert.equal(waiting.errorCode, 'marketplace_throttled');
      assert.deepEqual(await shownAttributes(handle), { status: 'Sending', errorCode: 'marketplace_throttled' });
      const result = await handle.result();
      assert.equal(result.status, 'Succeeded');
      assert.equal(result.attempts, 6);
      assert.deepEqual(
        s.calls.map((c) => c.activity),
        Array(6).fill('sendRecord'),
        'nothing but sends: no expiry, no failure marked',
      );
      const facts = await historyFacts(handle);
      // 1 s; the marketplace's 10 min beat the backoff (2 s); 4 s; capped at 5 s; its 100 ms did not shorten the 5 s.
      assert.deepEqual(facts.timersMs, [1000, 600_000, 4000, 5000, 5000]);
      const sends = s.callsOf('sendRecord').map((c) => c.atMs);
      assert.ok(sends[2]! - sends[1]! >= 600_000, 'the third attempt came after the retry-after');
      // Sending is shown once (its error code did not change), then the final status.
      assert.deepEqual(facts.upserts, [
        { RemittanceStatus: 'Sending', RemittanceErrorCode: 'marketplace_throttled' },
        { RemittanceStatus: 'Succeeded', RemittanceErrorCode: null },
      ]);
      assert.deepEqual(await shownAttributes(handle), { status: 'Succeeded', errorCode: null });
    });
  });

  it('not yet until the acceptance deadline: the last wait ends at the deadline, then markExpired, Expired, and no wait for an operator', async () => {
    const s = script({ sendRecord: (_: unknown, n: number) => notYet(n, 2 * HOUR), markExpired: () => expired(3) });
    await withTaskQueue(async (tq) => {
      const { handle, input } = await startRecord(tq, { deadlineMs: (await env.currentTimeMs()) + 5 * HOUR });
      const result = await handle.result();
      assert.deepEqual(
        s.calls.map((c) => c.activity),
        ['sendRecord', 'sendRecord', 'sendRecord', 'markExpired'],
      );
      assert.deepEqual(s.callsOf('markExpired')[0]!.input, { recordId: RECORD, reason: 'Retried until the acceptance deadline passed.' });
      assert.ok(s.callsOf('markExpired')[0]!.atMs >= input.deadlineMs, 'expired only once the deadline had passed');
      assert.equal(result.status, 'Expired');
      assert.equal(result.errorCode, 'marketplace_window_expired');
      const facts = await historyFacts(handle);
      assert.equal(facts.timersMs.length, 3);
      assert.deepEqual(facts.timersMs.slice(0, 2), [2 * HOUR, 2 * HOUR]);
      assert.ok(facts.timersMs[2]! < 2 * HOUR, `the last wait is cut to the deadline (${facts.timersMs[2]} ms)`);
      assert.deepEqual(facts.upserts, [
        { RemittanceStatus: 'Sending', RemittanceErrorCode: 'marketplace_throttled' },
        { RemittanceStatus: 'Expired', RemittanceErrorCode: 'marketplace_window_expired' },
      ]);
      assert.ok(facts.closedAtMs! < input.deadlineMs + HOUR, 'closed at the deadline, not after a wait for an operator');
    });
  });

  it('a send that crashes is retried, and one that hangs is cut by its attempt timeout, then expired: no attempt after the deadline, markExpired, Expired', async () => {
    // The crashed attempts' backoffs are workflow timers (skipped); the hang runs in the worker
    // until its attempt timeout (4 s here, 10 minutes by default), in real time. The deadline
    // bounds when an attempt may begin, not how long a dispatched one may take.
    const s = script({
      sendRecord: async (_: unknown, n: number) => {
        if (n < 3) throw new Error('connection refused');
        await Context.current().sleep(600_000); // the marketplace does not answer; ended by the timeout's cancellation
        return succeeded(n);
      },
      markExpired: () => expired(0),
    });
    await withTaskQueue(async (tq) => {
      const { handle, input } = await startRecord(tq, { deadlineMs: (await env.currentTimeMs()) + 6000, attemptTimeoutMs: 4000 });
      const result = await handle.result();
      const sends = s.callsOf('sendRecord');
      // Three under normal load; a workflow task that times out on a starved machine re-runs its
      // local activities, so only the order is exact.
      assert.ok(sends.length >= 3, `crashed attempts were retried (${sends.length} sends)`);
      // Before the fix, a timeout that fell between the SDK's in-worker retries was dropped and
      // the hang was retried with a fresh window each time, past the deadline.
      assert.deepEqual(sends.filter((c) => c.atMs >= input.deadlineMs).map((c) => c.atMs - input.deadlineMs), [], 'no attempt began after the deadline');
      assert.deepEqual(
        s.calls.filter((c) => c.activity !== 'sendRecord').map((c) => [c.activity, c.input]),
        [['markExpired', { recordId: RECORD, reason: 'Retried until the acceptance deadline passed.' }]],
      );
      assert.equal(s.calls.at(-1)!.activity, 'markExpired');
      assert.ok(s.callsOf('markExpired')[0]!.atMs >= input.deadlineMs, 'expired once the deadline had passed, not before');
      assert.equal(result.status, 'Expired');
      assert.deepEqual(await shownAttributes(handle), { status: 'Expired', errorCode: 'marketplace_window_expired' });
      // Replayed, the timeout comes back from its marker unwrapped: the same decisions.
      await replays(handle);
    });
  });

  it('a crashed attempt says why in the current details while the workflow backs off, then the retry is accepted', async () => {
    const s = script({
      sendRecord: (_: unknown, n: number) => {
        if (n === 1) throw new Error('database connection lost');
        return succeeded(n);
      },
    });
    await withTaskQueue(async (tq) => {
      // A backoff long enough to look at: 1 s, in real time until result() lets the server skip it.
      const { handle } = await startRecord(tq);
      const metadata: any = await until(() => handle.query('__temporal_workflow_metadata'), (m: any) => /database connection lost/.test(String(m.currentDetails)), 'the crash in the current details');
      assert.match(String(metadata.currentDetails), /^\*\*Pending\*\*/, 'the status shown is unchanged');
      assert.match(String(metadata.currentDetails), /failed before the marketplace answered: database connection lost[\s\S]*Trying again in 1 s/);
      const result = await handle.result();
      assert.equal(result.status, 'Succeeded');
      assert.equal(s.callsOf('sendRecord').length, 2);
    });
  });

  it('a send dispatched before the deadline runs to its answer after it: Succeeded, nothing left in doubt', async () => {
    // Cut at the deadline, this call would have been left unconfirmed (Unconfirmed, for an
    // operator to check) although the marketplace accepted it.
    const s = script({
      sendRecord: async (_: unknown, n: number) => {
        await new Promise((r) => setTimeout(r, 2500)); // the answer comes after the deadline
        return succeeded(n);
      },
    });
    await withTaskQueue(async (tq) => {
      const { handle, input } = await startRecord(tq, { deadlineMs: (await env.currentTimeMs()) + 1000 });
      const result = await handle.result();
      assert.deepEqual(s.calls.map((c) => c.activity), ['sendRecord'], 'no markExpired');
      assert.ok(s.calls[0]!.atMs < input.deadlineMs, 'dispatched before the deadline');
      assert.equal(result.status, 'Succeeded');
      assert.equal(result.receiptId, 'receipt-1');
      await replays(handle);
    });
  });

  it('a send that keeps crashing past the deadline: each retry waits on a timer, none begins after the deadline, markExpired, Expired', async () => {
    // Backoffs of 1, 2 and 4 s against a deadline 5 s out: the fourth attempt would begin after
    // it. The SDK's in-worker retries did begin it (the schedule-to-close timeout fired during
    // the backoff and was dropped) and went on to about 60 s of attempts.
    const s = script({
      sendRecord: () => {
        throw new Error('connection refused');
      },
      markExpired: () => expired(3),
    });
    await withTaskQueue(async (tq) => {
      const { handle, input } = await startRecord(tq, { deadlineMs: (await env.currentTimeMs()) + 5000 });
      const result = await handle.result();
      assert.deepEqual(
        s.calls.map((c) => c.activity),
        ['sendRecord', 'sendRecord', 'sendRecord', 'markExpired'],
      );
      assert.deepEqual(s.callsOf('sendRecord').filter((c) => c.atMs >= input.deadlineMs).map((c) => c.atMs - input.deadlineMs), [], 'no attempt began after the deadline');
      assert.ok(s.callsOf('markExpired')[0]!.atMs >= input.deadlineMs, 'expired at the deadline, not before');
      const { timersMs } = await historyFacts(handle);
      assert.deepEqual(timersMs.slice(0, 2), [1000, 2000], 'the backoffs between attempts');
      assert.ok(timersMs.length === 3 && timersMs[2]! <= 2000, `the third backoff (4 s) is cut at the deadline: ${timersMs}`);
      assert.equal(result.status, 'Expired');
      await replays(handle);
    });
  });

  it('an answer lost until the deadline: markExpired settles Unconfirmed, shown as such, and the workflow ends', async () => {
    const unconfirmed: SendResult = { status: 'Unconfirmed', quantity: 7, errorCode: 'marketplace_unconfirmed', reason: 'sent, answer lost', attempts: 2 };
    const s = script({ sendRecord: (_: unknown, n: number) => notYet(n, 4 * HOUR, 'unknown'), markExpired: () => unconfirmed });
    await withTaskQueue(async (tq) => {
      const { handle, input } = await startRecord(tq);
      const result = await handle.result();
      assert.deepEqual(
        s.calls.map((c) => c.activity),
        ['sendRecord', 'sendRecord', 'markExpired'],
      );
      assert.equal(result.status, 'Unconfirmed');
      assert.equal(result.reason, 'sent, answer lost');
      assert.deepEqual(await stateOf(handle), result);
      const facts = await historyFacts(handle);
      assert.deepEqual(facts.upserts, [
        { RemittanceStatus: 'Sending', RemittanceErrorCode: 'unknown' },
        { RemittanceStatus: 'Unconfirmed', RemittanceErrorCode: 'marketplace_unconfirmed' },
      ]);
      assert.equal(facts.timersMs.length, 2, 'no wait for an operator after Unconfirmed');
      assert.ok(facts.closedAtMs! < input.deadlineMs + HOUR);
    });
  });

  it('a non-retryable error from the send: one attempt, markFailed "unknown" with its message, then Failed for good at the deadline when no operator comes', async () => {
    const s = script({
      sendRecord: () => {
        throw ApplicationFailure.nonRetryable('marketplace record rec-1 does not exist', 'NonRetryable');
      },
      markFailed: (a: { errorCode: string; reason: string }) => ({ status: 'Failed', quantity: 7, errorCode: a.errorCode, reason: a.reason, attempts: 1 }),
    });
    await withTaskQueue(async (tq) => {
      const { handle, input } = await startRecord(tq);
      const waiting = await waitForStatus(handle, 'Failed');
      assert.equal(waiting.errorCode, 'unknown');
      assert.deepEqual(await shownAttributes(handle), { status: 'Failed', errorCode: 'unknown' });
      const result = await handle.result();
      assert.deepEqual(
        s.calls.map((c) => [c.activity, c.input]),
        [
          ['sendRecord', { recordId: RECORD }],
          ['markFailed', { recordId: RECORD, errorCode: 'unknown', reason: 'marketplace record rec-1 does not exist' }],
        ],
      );
      assert.equal(result.status, 'Failed');
      assert.match(result.reason ?? '', /does not exist/);
      const facts = await historyFacts(handle);
      assert.equal(facts.timersMs.length, 1, 'one wait: for an operator, until the deadline');
      assert.ok(facts.closedAtMs! >= input.deadlineMs, 'waited for an operator until the deadline');
    });
  });

  it('rejected and no operator until the deadline: waits exactly until the deadline, then ends Failed with its error', async () => {
    const s = script({ sendRecord: (_: unknown, n: number) => rejected(n) });
    await withTaskQueue(async (tq) => {
      const { handle, input, startedAtMs } = await startRecord(tq);
      const waiting = await waitForStatus(handle, 'Failed');
      assert.equal(waiting.errorCode, 'customer_not_subscribed');
      assert.equal(waiting.reason, 'the customer is not subscribed');
      assert.deepEqual(await shownAttributes(handle), { status: 'Failed', errorCode: 'customer_not_subscribed' });
      const result = await handle.result();
      assert.equal(result.status, 'Failed');
      assert.equal(result.errorCode, 'customer_not_subscribed');
      assert.deepEqual(
        s.calls.map((c) => c.activity),
        ['sendRecord'],
      );
      const facts = await historyFacts(handle);
      assert.equal(facts.timersMs.length, 1);
      assert.ok(Math.abs(facts.timersMs[0]! - (input.deadlineMs - startedAtMs)) < 60_000, `the wait (${facts.timersMs[0]} ms) runs to the deadline`);
      assert.ok(facts.closedAtMs! >= input.deadlineMs);
      assert.deepEqual(facts.upserts, [{ RemittanceStatus: 'Failed', RemittanceErrorCode: 'customer_not_subscribed' }]);
    });
  });

  it('Failed at the deadline (markExpired settles Failed): final at once, no wait for an operator', async () => {
    const s = script({ sendRecord: (_: unknown, n: number) => notYet(n, 10 * HOUR), markExpired: () => rejected(1) });
    await withTaskQueue(async (tq) => {
      const { handle, input } = await startRecord(tq, { deadlineMs: (await env.currentTimeMs()) + HOUR });
      const result = await handle.result();
      assert.equal(result.status, 'Failed');
      assert.deepEqual(
        s.calls.map((c) => c.activity),
        ['sendRecord', 'markExpired'],
      );
      const facts = await historyFacts(handle);
      assert.equal(facts.timersMs.length, 1, 'only the backoff to the deadline');
      assert.ok(facts.closedAtMs! < input.deadlineMs + 60_000);
    });
  });

  it('Failed, then a retry signal: audited, recomputed in its hour, Pending, sent again and accepted', async () => {
    const s = script({
      sendRecord: (_: unknown, n: number) => (n === 1 ? rejected(1) : succeeded(2)),
      recordAudit: audited,
      recomputeRecord: () => ({ status: 'Pending', quantity: 9, attempts: 1 }),
    });
    await withTaskQueue(async (tq) => {
      const { handle } = await startRecord(tq);
      await waitForStatus(handle, 'Failed');
      await handle.signal(retrySignal, { actor: 'ops-alice', reason: 'customer re-subscribed' });
      const result = await handle.result();
      assert.deepEqual(
        s.calls.map((c) => [c.activity, c.input]),
        [
          ['sendRecord', { recordId: RECORD }],
          ['recordAudit', { actor: 'ops-alice', action: 'signal:retry', request: { recordId: RECORD, reason: 'customer re-subscribed' }, result: { from: 'Failed' } }],
          ['recomputeRecord', { recordId: RECORD }],
          ['sendRecord', { recordId: RECORD }],
        ],
      );
      assert.equal(result.status, 'Succeeded');
      assert.equal(result.receiptId, 'receipt-2');
      assert.equal(result.errorCode, undefined);
      const facts = await historyFacts(handle);
      assert.deepEqual(facts.signals, ['retry']);
      assert.deepEqual(facts.upserts, [
        { RemittanceStatus: 'Failed', RemittanceErrorCode: 'customer_not_subscribed' },
        { RemittanceStatus: 'Succeeded', RemittanceErrorCode: null },
      ]);
    });
  });

  it('a retry whose resend fails again waits for the operator again; a reset then voids it', async () => {
    const s = script({
      sendRecord: (_: unknown, n: number) => rejected(n),
      recordAudit: audited,
      recomputeRecord: () => ({ status: 'Pending', quantity: 7, attempts: 1 }),
      voidRecord: async () => undefined,
    });
    await withTaskQueue(async (tq) => {
      const { handle } = await startRecord(tq);
      await waitForStatus(handle, 'Failed');
      await handle.signal(retrySignal);
      await until(() => s.callsOf('sendRecord').length, (n) => n === 2, 'the resend');
      await waitForStatus(handle, 'Failed');
      await handle.signal(resetSignal, { actor: 'ops-bob' });
      const result = await handle.result();
      assert.deepEqual(
        s.calls.map((c) => c.activity),
        ['sendRecord', 'recordAudit', 'recomputeRecord', 'sendRecord', 'recordAudit', 'voidRecord'],
      );
      assert.deepEqual(s.callsOf('recordAudit').map((c) => (c.input as { actor: string }).actor), ['signal', 'ops-bob'], 'an anonymous signal is audited as "signal"');
      assert.deepEqual(s.callsOf('voidRecord')[0]!.input, { recordId: RECORD, reason: 'reset by operator signal' });
      assert.equal(result.status, 'Voided');
    });
  });

  it('Failed, then recalculate: the recomputation finds nothing left to send (NothingDue), shown, and the workflow ends without sending', async () => {
    const s = script({
      sendRecord: (_: unknown, n: number) => rejected(n),
      recordAudit: audited,
      recomputeRecord: () => ({ status: 'NothingDue', quantity: 0, reason: 'the contract change left nothing due', attempts: 1 }),
    });
    await withTaskQueue(async (tq) => {
      const { handle } = await startRecord(tq);
      await waitForStatus(handle, 'Failed');
      await handle.signal(recalculateSignal, { actor: 'ops-carol', reason: 'contract fixed' });
      const result = await handle.result();
      assert.deepEqual(
        s.calls.map((c) => c.activity),
        ['sendRecord', 'recordAudit', 'recomputeRecord'],
      );
      assert.equal((s.callsOf('recordAudit')[0]!.input as { action: string }).action, 'signal:recalculate');
      assert.equal(result.status, 'NothingDue');
      assert.equal(result.quantity, 0);
      assert.deepEqual(await stateOf(handle), result);
      const facts = await historyFacts(handle);
      assert.deepEqual(facts.upserts, [
        { RemittanceStatus: 'Failed', RemittanceErrorCode: 'customer_not_subscribed' },
        { RemittanceStatus: 'NothingDue', RemittanceErrorCode: null },
      ]);
    });
  });

  it('Failed, then reset: audited, the record voided with the operator\'s reason, Voided, nothing sent again', async () => {
    const s = script({ sendRecord: (_: unknown, n: number) => rejected(n), recordAudit: audited, voidRecord: async () => undefined });
    await withTaskQueue(async (tq) => {
      const { handle } = await startRecord(tq);
      await waitForStatus(handle, 'Failed');
      await handle.signal(resetSignal, { actor: 'ops-dan', reason: 'billed by hand' });
      const result = await handle.result();
      assert.deepEqual(
        s.calls.map((c) => [c.activity, c.input]),
        [
          ['sendRecord', { recordId: RECORD }],
          ['recordAudit', { actor: 'ops-dan', action: 'signal:reset', request: { recordId: RECORD, reason: 'billed by hand' }, result: { from: 'Failed' } }],
          ['voidRecord', { recordId: RECORD, reason: 'billed by hand' }],
        ],
      );
      assert.equal(result.status, 'Voided');
      const facts = await historyFacts(handle);
      assert.deepEqual(facts.upserts.at(-1), { RemittanceStatus: 'Voided', RemittanceErrorCode: null });
      assert.deepEqual(await shownAttributes(handle), { status: 'Voided', errorCode: null });
    });
  });

  it('a reset queued behind a retry wins; queued retries and recalculates share one recomputation', async () => {
    // Both signals arrive while the first send is still in flight, so both are queued when the
    // workflow turns to its operator requests.
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    const s = script({
      sendRecord: async (_: unknown, n: number) => {
        await held;
        return rejected(n);
      },
      recordAudit: audited,
      recomputeRecord: () => ({ status: 'Pending', quantity: 7, attempts: 1 }),
      voidRecord: async () => undefined,
    });
    await withTaskQueue(async (tq) => {
      const { handle } = await startRecord(tq);
      await until(() => s.callsOf('sendRecord').length, (n) => n === 1, 'the first send');
      await handle.signal(retrySignal, { actor: 'first' });
      await handle.signal(resetSignal, { actor: 'second', reason: 'void it' });
      release();
      const result = await handle.result();
      assert.equal(result.status, 'Voided');
      assert.deepEqual(
        s.calls.map((c) => c.activity),
        ['sendRecord', 'recordAudit', 'voidRecord'],
      );
      assert.equal((s.callsOf('recordAudit')[0]!.input as { action: string }).action, 'signal:reset');
    });

    let release2: () => void = () => {};
    const held2 = new Promise<void>((r) => (release2 = r));
    const t = script({
      sendRecord: async (_: unknown, n: number) => {
        if (n === 1) await held2;
        return n === 1 ? rejected(n) : succeeded(n);
      },
      recordAudit: audited,
      recomputeRecord: () => ({ status: 'Pending', quantity: 7, attempts: 1 }),
    });
    await withTaskQueue(async (tq) => {
      const { handle } = await startRecord(tq);
      await until(() => t.callsOf('sendRecord').length, (n) => n === 1, 'the first send');
      await handle.signal(retrySignal);
      await handle.signal(recalculateSignal);
      await handle.signal(retrySignal);
      release2();
      const result = await handle.result();
      assert.equal(result.status, 'Succeeded');
      assert.deepEqual(
        t.calls.map((c) => c.activity),
        ['sendRecord', 'recordAudit', 'recomputeRecord', 'sendRecord'],
        'three queued requests, one recomputation, one resend',
      );
    });
  });

  it('no record (no contract yet / no dimension): shows the status and reason it was started with and ends without a call', async () => {
    const s = script({});
    await withTaskQueue(async (tq) => {
      const waiting = await startRecord(tq, { recordId: undefined, status: 'WaitingForContract', errorCode: null, reason: 'No contract covers this usage yet.' });
      const view = await waiting.handle.result();
      assert.equal(view.status, 'WaitingForContract');
      assert.equal(view.reason, 'No contract covers this usage yet.');
      assert.equal(view.errorCode, undefined);
      assert.deepEqual(await stateOf(waiting.handle), view);

      const failed = await startRecord(tq, { recordId: undefined, status: undefined, errorCode: 'no_dimension', reason: 'The catalog has no dimension for this metric.' });
      const failedView = await failed.handle.result();
      assert.equal(failedView.status, 'Failed', 'no status given: Failed');
      assert.equal(failedView.errorCode, 'no_dimension');
      assert.equal(failedView.reason, 'The catalog has no dimension for this metric.');

      assert.deepEqual(s.calls, []);
      for (const h of [waiting.handle, failed.handle]) {
        const facts = await historyFacts(h);
        assert.deepEqual(facts.upserts, [], 'the sweep set the status at the start; nothing to upsert');
        assert.deepEqual(facts.timersMs, [], 'no wait for an operator: a later hour bills this usage');
      }
      assert.deepEqual(await shownAttributes(waiting.handle), { status: 'WaitingForContract', errorCode: null });
    });
  });
});
