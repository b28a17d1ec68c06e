// One marketplace record: one marketplace, customer, dimension and remittance hour, carrying the
// summed bills of every remittance key (any org, SLA or usage) that bills that customer and
// dimension. Started by the sweep when the hour's window closes, after the ledger computed the
// keys and made the record, so it starts sending at once:
//
//   send until the record's acceptance deadline -> done, or (Failed) wait for an operator
//   (retry / recalculate / reset) while the hour can still be billed.
//
// Cheap on purpose (docs/performance.md): every step is a local activity, so a record that goes
// through on the first call costs one workflow task and one search-attribute upsert (its final
// status); each state is still mirrored in RemittanceStatus / RemittanceErrorCode and the
// workflow's current details, so the Web UI answers "why is this not billed?".
//
// A workflow without a record shows why an hour's usage could not go to one (no contract, no
// dimension) and ends: a contract change bills it in a later hour.

import {
  ActivityFailure,
  ApplicationFailure,
  TimeoutFailure,
  condition,
  isCancellation,
  log,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { TimeoutType } from '@temporalio/common';
import type { RemittanceActivities, SendResult } from '../activities';
import {
  SA,
  recalculateSignal,
  resetSignal,
  retrySignal,
  stateQuery,
  type OperatorSignalInput,
  type RemittanceView,
} from './definitions';
import type { RemittanceStatus } from '../domain/lifecycle';

export interface RecordWorkflowInput {
  /** The marketplace record to send; absent when the hour's usage could not go to a record. */
  recordId?: string;
  /** Start of the remittance hour, epoch ms (the record's timestamp). */
  remittanceHourMs: number;
  /** The marketplace rejects the record after this instant, epoch ms. */
  deadlineMs: number;
  /** Length of an hour, ms: bounds the backoff between attempts. */
  hourLengthMs: number;
  /** How long one send attempt may take before it is cut and tried again; default 10 minutes. */
  attemptTimeoutMs?: number;
  /** Without a record: what the hour's usage is (Failed, WaitingForContract) and why. */
  status?: RemittanceStatus;
  errorCode?: string | null;
  reason?: string | null;
}

type OperatorRequest = { kind: 'retry' | 'recalculate' | 'reset'; input: OperatorSignalInput };

/** Database steps: short, retried on any error. */
function dbActivities(hourMs: number) {
  return proxyLocalActivities<RemittanceActivities>({
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '1 second', maximumInterval: `${Math.max(1000, Math.min(60_000, hourMs / 60))} ms`, backoffCoefficient: 2, nonRetryableErrorTypes: ['NonRetryable'] },
  });
}

export async function marketplaceRecordWorkflow(input: RecordWorkflowInput): Promise<RemittanceView> {
  const { recordId, deadlineMs, hourLengthMs, attemptTimeoutMs = 10 * 60_000 } = input;
  const view: RemittanceView = { status: 'Pending', recordId, deadline: new Date(deadlineMs).toISOString() };
  const requests: OperatorRequest[] = [];
  setHandler(stateQuery, () => view);
  const accept = (kind: OperatorRequest['kind']) => (i?: OperatorSignalInput) => void requests.push({ kind, input: i ?? {} });
  setHandler(retrySignal, accept('retry'));
  setHandler(recalculateSignal, accept('recalculate'));
  setHandler(resetSignal, accept('reset'));

  // The sweep started the workflow with RemittanceStatus=Pending; upsert only what changes.
  let shown: { status: RemittanceStatus; errorCode: string | null } = { status: 'Pending', errorCode: null };
  /** The Web UI's current details: the status shown, then why. */
  const explain = (details: string) => setCurrentDetails(`**${view.status}**${view.errorCode ? ` \`${view.errorCode}\`` : ''}\n\n${details}`);
  const show = (status: RemittanceStatus, details: string, errorCode?: string | null) => {
    view.status = status;
    view.errorCode = errorCode ?? undefined;
    if (shown.status !== status || shown.errorCode !== (errorCode ?? null)) {
      upsertSearchAttributes([
        { key: SA.RemittanceStatus, value: status },
        { key: SA.RemittanceErrorCode, value: errorCode ?? null },
      ]);
      shown = { status, errorCode: errorCode ?? null };
    }
    explain(details);
  };

  if (!recordId) {
    // Started with its status already in the search attributes: only the explanation is added.
    view.status = input.status ?? 'Failed';
    view.reason = input.reason ?? undefined;
    view.errorCode = input.errorCode ?? undefined;
    setCurrentDetails(`**${view.status}**${input.errorCode ? ` \`${input.errorCode}\`` : ''}\n\n${input.reason ?? ''}\n\nNo marketplace record this hour: once a contract supplies what is missing, a later hour bills this usage.`);
    return view;
  }

  const db = dbActivities(hourLengthMs);
  for (;;) {
    const sent = await send(recordId);
    Object.assign(view, { quantity: sent.quantity, receiptId: sent.receiptId ?? undefined, attempts: sent.attempts, reason: sent.reason ?? undefined });
    show(sent.status, describe(sent), sent.errorCode);

    // Only a failed record waits for an operator, and only while the marketplace still accepts
    // the hour. Meanwhile its amount no longer counts as remitted, so the next hour's record
    // bills it anyway: nothing is lost if no operator ever comes.
    if (sent.status !== 'Failed') break;
    const remaining = deadlineMs - Date.now();
    if (remaining <= 0 || !(await condition(() => requests.length > 0, remaining))) {
      show('Failed', `${sent.reason ?? 'Failed.'}\n\nThe hour can no longer be sent; its amount is billed in a later hour's record.`, sent.errorCode);
      break;
    }
    // A reset queued behind a retry wins: voiding is what the operator asked for last.
    const req = requests.find((r) => r.kind === 'reset') ?? requests[0]!;
    requests.length = 0; // one recomputation answers every queued retry/recalculate
    await db.recordAudit({ actor: req.input.actor ?? 'signal', action: `signal:${req.kind}`, request: { recordId, reason: req.input.reason }, result: { from: sent.status } });
    if (req.kind === 'reset') {
      await db.voidRecord({ recordId, reason: req.input.reason ?? 'reset by operator signal' });
      show('Voided', 'Voided by an operator; the amount is billed in a later hour.');
      break;
    }
    const again = await db.recomputeRecord({ recordId });
    if (again.status !== 'Pending') {
      view.quantity = again.quantity;
      show(again.status, again.reason ?? 'Nothing is left to send in this hour.', again.errorCode);
      break;
    }
  }
  // A success is logged by the send itself (one line per record, with its receipt); what did
  // not go through is worth a line of its own.
  if (view.status !== 'Succeeded') log.warn('remittance record finished without being accepted', { status: view.status, errorCode: view.errorCode, quantity: view.quantity });
  return view;

  /**
   * Send until the marketplace gives a final answer or the record's acceptance deadline passes.
   * Each attempt is one local activity; between attempts the workflow shows the attempt count and
   * the last error (RemittanceErrorCode, current details) and backs off, honouring the
   * marketplace's retry-after. An attempt that crashes (a database error, a dropped connection)
   * or hangs past its start-to-close timeout is tried again after the same backoff.
   *
   * This loop is the only retry, and the deadline bounds when an attempt may begin, not how long
   * it may take: each attempt is scheduled once (no SDK retries) and only while the deadline is
   * ahead; the marketplace gateway refuses to dispatch a call within its margin of the window's
   * end; a call dispatched before it runs to its answer (bounded by the attempt's timeout), so a
   * send in flight as the window closes ends Succeeded or Expired, not in doubt. Cut at the
   * deadline, such a call was left unconfirmed (Unconfirmed, for an operator to check).
   * The SDK's own in-worker retries of a local activity also broke the bound: a schedule-to-close
   * timeout that fired between two of them was dropped, and each later attempt got a fresh
   * window (its start-to-close is clamped to the whole schedule-to-close) until the backoff
   * outgrew the 1-minute local retry threshold. Seen: a 6-s deadline overrun by 80 s.
   */
  async function send(id: string): Promise<SendResult> {
    const maxBackoff = Math.max(1000, Math.min(600_000, hourLengthMs / 12));
    let backoff = 1000;
    const nextWait = (retryAfterMs = 0): number => {
      const wait = Math.min(Math.max(backoff, retryAfterMs), Math.max(0, deadlineMs - Date.now()));
      backoff = Math.min(maxBackoff, backoff * 2);
      return wait;
    };
    for (;;) {
      const remaining = deadlineMs - Date.now();
      if (remaining <= 0) return db.markExpired({ recordId: id, reason: 'Retried until the acceptance deadline passed.' });
      const attempt = proxyLocalActivities<RemittanceActivities>({
        // Waiting in the batcher and for the marketplace's rate limit is part of an attempt.
        startToCloseTimeout: attemptTimeoutMs,
        retry: { maximumAttempts: 1 },
      });
      let r: SendResult;
      try {
        r = await attempt.sendRecord({ recordId: id });
      } catch (err) {
        if (isCancellation(err)) throw err;
        // A local activity's failure reaches the workflow unwrapped (the SDK records it in the
        // marker as thrown, without an ActivityFailure around it), and so does a timeout when the
        // history is replayed; a timeout comes wrapped only live. Both shapes are handled alike.
        const failure = err instanceof ActivityFailure ? err.cause : err;
        // Only in histories of the versions that cut attempts at the deadline (a
        // schedule-to-close timeout): they replay as they ran.
        if (failure instanceof TimeoutFailure && failure.timeoutType === TimeoutType.SCHEDULE_TO_CLOSE) {
          return db.markExpired({ recordId: id, reason: 'Retried until the acceptance deadline passed.' });
        }
        if (failure instanceof ApplicationFailure && (failure.nonRetryable || failure.type === 'NonRetryable')) {
          return db.markFailed({ recordId: id, errorCode: 'unknown', reason: failure.message });
        }
        // Anything but the attempt's own failure (an activity the worker does not register, a
        // bug in this code) fails the workflow task, which Temporal retries once it is fixed.
        if (!(failure instanceof ApplicationFailure || failure instanceof TimeoutFailure)) throw err;
        // Crashed or cut by its timeout: nothing the marketplace answered, so the status shown
        // stays as it was, and the details say why nothing changes. Past the deadline, the loop
        // expires it.
        log.warn('send attempt crashed; trying again', { recordId: id, error: failure.message });
        const wait = nextWait();
        explain(`A send attempt failed before the marketplace answered: ${failure.message}\n\nTrying again in ${Math.round(wait / 1000)} s; deadline ${view.deadline}.`);
        if (wait > 0) await sleep(wait);
        continue;
      }
      if (r.status !== 'Sending') return r;
      const wait = nextWait(r.retryAfterMs);
      view.attempts = r.attempts;
      show('Sending', `Attempt ${r.attempts} did not go through: ${r.reason}\n\nSending again in ${Math.round(wait / 1000)} s; deadline ${view.deadline}.`, r.errorCode);
      if (wait > 0) await sleep(wait);
    }
  }
}

function describe(r: SendResult): string {
  switch (r.status) {
    case 'Succeeded':
      return `Accepted: ${r.quantity} billing unit(s), receipt \`${r.receiptId}\`.`;
    default:
      return r.reason ?? r.status;
  }
}
