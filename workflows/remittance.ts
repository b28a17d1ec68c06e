// One remittance: one key, one remittance hour, at most one marketplace record.
//
//   wait for the window to close -> compute (DB, serialized per key) -> send until the record's
//   acceptance deadline -> done, or wait for an operator (retry / recalculate / reset) while the
//   hour can still be billed.
//
// Every state is mirrored in the RemittanceStatus / RemittanceErrorCode search attributes and in
// the workflow's current details, so the Web UI answers "why is this not billed?".

import {
  ActivityFailure,
  ApplicationFailure,
  TimeoutFailure,
  condition,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { RetryState } from '@temporalio/common';
import type { RemittanceActivities, SendResult } from '../activities';
import type { RemittanceKey } from '../domain/key';
import {
  SA,
  recalculateSignal,
  resetSignal,
  retrySignal,
  stateQuery,
  type OperatorSignalInput,
  type RemittanceStatus,
  type RemittanceView,
} from './definitions';

export interface RemittanceWorkflowInput {
  key: RemittanceKey;
  /** Start of the remittance hour, epoch ms. */
  remittanceHourMs: number;
  time: {
    hourMs: number;
    /** Window closes at the end of the hour plus this many hours. */
    graceHours: number;
    /** The marketplace rejects records older than this many hours. */
    acceptanceHours: number;
  };
}

type OperatorRequest = { kind: 'retry' | 'recalculate' | 'reset'; input: OperatorSignalInput };

/** Activities that only touch the database: short, retried on any error. */
function dbActivities(hourMs: number) {
  return proxyActivities<RemittanceActivities>({
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '1 second', maximumInterval: `${Math.max(1000, Math.min(60_000, hourMs / 60))} ms`, backoffCoefficient: 2 },
  });
}

export async function remittanceWorkflow(input: RemittanceWorkflowInput): Promise<RemittanceView> {
  const { key, remittanceHourMs: hour, time } = input;
  const windowCloseMs = hour + time.hourMs * (1 + time.graceHours);
  const deadlineMs = hour + time.hourMs * time.acceptanceHours;
  const view: RemittanceView = { status: 'Pending', deadline: new Date(deadlineMs).toISOString() };
  const requests: OperatorRequest[] = [];
  let computed = false;

  setHandler(stateQuery, () => view);
  const accept = (kind: OperatorRequest['kind']) => (i?: OperatorSignalInput) => {
    // Before the first computation there is nothing to retry, recalculate or void: the
    // computation that is about to run already uses the newest tallies and contracts.
    if (computed) requests.push({ kind, input: i ?? {} });
  };
  setHandler(retrySignal, accept('retry'));
  setHandler(recalculateSignal, accept('recalculate'));
  setHandler(resetSignal, accept('reset'));

  const show = (status: RemittanceStatus, details: string, errorCode?: string | null) => {
    view.status = status;
    view.errorCode = errorCode ?? undefined;
    upsertSearchAttributes([
      { key: SA.RemittanceStatus, value: status },
      { key: SA.RemittanceErrorCode, value: errorCode ?? null },
    ]);
    setCurrentDetails(`**${status}**${errorCode ? ` \`${errorCode}\`` : ''}\n\n${details}`);
  };

  show('Pending', `Collecting usage until the window closes at ${new Date(windowCloseMs).toISOString()}.`);
  const wait = windowCloseMs - Date.now();
  if (wait > 0) await sleep(wait);

  const db = dbActivities(time.hourMs);
  let mode: 'initial' | 'retry' = 'initial';
  for (;;) {
    const c = await db.computeRemittance({ key, remittanceHourMs: hour, mode, workflowId: workflowInfo().workflowId });
    computed = true;
    Object.assign(view, { remittanceId: c.remittanceId, quantity: c.bill, reason: c.reason ?? undefined });
    let status = c.status;
    let errorCode: string | null | undefined = c.errorCode;
    let reason: string | null | undefined = c.reason;

    // Sending: the row was already in flight (a Temporal reset re-ran this workflow): resume the
    // send, which asks the marketplace what it recorded before sending anything.
    if (status === 'Pending' || status === 'Sending') {
      show('Sending', `Sending ${c.bill} ${c.dimension ?? ''} to ${key.billingProvider} (deadline ${view.deadline}).`);
      const sent = await send(c.remittanceId, deadlineMs, time.hourMs);
      status = sent.status;
      errorCode = sent.errorCode;
      reason = sent.reason;
      view.receiptId = sent.receiptId ?? undefined;
      view.attempts = sent.attempts;
    }
    view.reason = reason ?? undefined;
    show(status, describe(status, reason, c.bill, view.receiptId), errorCode);

    // Only a failed hour waits for an operator, and only while the marketplace still accepts
    // the hour. Meanwhile its amount no longer counts as remitted, so the next hour's record
    // for the key bills it anyway: nothing is lost if no operator ever comes.
    if (status !== 'Failed') break;
    const remaining = deadlineMs - Date.now();
    if (remaining <= 0 || !(await condition(() => requests.length > 0, remaining))) {
      show('Failed', `${reason ?? 'Failed.'}\n\nThe hour can no longer be sent; its amount is billed in a later hour's record for this key.`, errorCode);
      break;
    }
    // A reset queued behind a retry wins: voiding is what the operator asked for last.
    const req = requests.find((r) => r.kind === 'reset') ?? requests[0]!;
    await db.recordAudit({ actor: req.input.actor ?? 'signal', action: `signal:${req.kind}`, request: { workflowId: workflowInfo().workflowId, reason: req.input.reason }, result: { from: status } });
    if (req.kind === 'reset') {
      await db.voidRemittance({ remittanceId: c.remittanceId, reason: req.input.reason ?? 'reset by operator signal' });
      show('Voided', 'Voided by an operator; the amount is billed in a later hour of this key.');
      break;
    }
    requests.length = 0; // one recomputation answers every queued retry/recalculate
    mode = 'retry';
  }
  log.info('remittance finished', { status: view.status, quantity: view.quantity });
  return view;

  /**
   * Send until the marketplace gives a final answer or the record's acceptance deadline passes.
   * Each attempt is one activity; between attempts the workflow shows the attempt count and the
   * last error (RemittanceErrorCode, current details) and backs off, honouring the marketplace's
   * retry-after. Crashes and database errors inside an attempt are retried by Temporal.
   */
  async function send(remittanceId: string, deadline: number, hourMs: number): Promise<SendResult> {
    const maxBackoff = Math.max(1000, Math.min(600_000, hourMs / 12));
    let backoff = 1000;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return db.markExpired({ remittanceId, reason: 'Retried until the acceptance deadline passed.' });
      const attempt = proxyActivities<RemittanceActivities>({
        startToCloseTimeout: '2 minutes',
        heartbeatTimeout: '10 seconds',
        scheduleToCloseTimeout: remaining,
        retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: `${maxBackoff} ms`, nonRetryableErrorTypes: ['NonRetryable'] },
      });
      let r: SendResult;
      try {
        r = await attempt.sendRemittance({ remittanceId });
      } catch (err) {
        if (err instanceof ActivityFailure && (err.retryState === RetryState.TIMEOUT || err.cause instanceof TimeoutFailure)) {
          return db.markExpired({ remittanceId, reason: 'Retried until the acceptance deadline passed.' });
        }
        if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure) {
          return db.markFailed({ remittanceId, errorCode: 'unknown', reason: err.cause.message });
        }
        throw err;
      }
      if (r.status !== 'Sending') return r;
      const wait = Math.min(Math.max(backoff, r.retryAfterMs ?? 0), Math.max(0, deadline - Date.now()));
      view.attempts = r.attempts;
      show('Sending', `Attempt ${r.attempts} did not go through: ${r.reason}\n\nSending again in ${Math.round(wait / 1000)} s; deadline ${new Date(deadline).toISOString()}.`, r.errorCode);
      if (wait > 0) await sleep(wait);
      backoff = Math.min(maxBackoff, backoff * 2);
    }
  }
}

function describe(status: RemittanceStatus, reason: string | null | undefined, bill: number, receipt: string | undefined): string {
  switch (status) {
    case 'Succeeded':
      return `Accepted: ${bill} billing unit(s), receipt \`${receipt}\`.`;
    case 'NothingDue':
      return reason ?? 'Nothing to bill this hour.';
    case 'Gratis':
      return reason ?? 'Free this month (gratis): recorded as remitted, never sent.';
    case 'WaitingForContract':
      return reason ?? 'Usage is kept until a contract arrives; it is billed then.';
    default:
      return reason ?? status;
  }
}
