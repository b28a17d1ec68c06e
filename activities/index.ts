// Activities: the only place remittance work touches the database and the marketplaces.
// Dependencies come in through the factory; the worker wires them.
//
// How errors cross the activity/workflow line:
// - every marketplace answer is *returned*, never thrown: final ones (accepted, rejected,
//   expired) with their status, retryable and unconfirmed ones as status Sending with the error
//   code, reason and the marketplace's retry-after, so the workflow shows each attempt (search
//   attributes, current details) and decides when to send again, until the record's deadline;
// - database errors and crashes are thrown (or time out): Temporal retries the activity.

import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Database } from '../db/client';
import {
  computeRemittance,
  getRemittance,
  markDispatched,
  markOutcome,
  markSending,
  recordAttemptError,
  recordAudit,
  voidRemittances,
  withTransaction,
  findOwingKeys,
  type Outcome,
  type RemittanceRow,
  type TimeSettings,
} from '../db/ledger';
import type { Catalog } from '../domain/catalog';
import { keyString, type RemittanceKey } from '../domain/key';
import { hourStart } from '../domain/time';
import type { Logger } from '../lib/log';
import type { MarketplaceGateway } from '../marketplaces';
import type { SendOutcome, UsageRecord } from '../marketplaces/types';
import type { RemittanceStatus } from '../workflows/definitions';

export interface ActivityDeps {
  database: Database;
  catalog: Catalog;
  time: TimeSettings;
  marketplaces: MarketplaceGateway;
  log: Logger;
  /** Starts the remittances of keys for an hour (idempotent); used by the hourly sweep. */
  startRemittances?: (keys: RemittanceKey[], hourMs: number) => Promise<unknown>;
  now?: () => number;
}

export interface SendResult {
  /** Final (Succeeded, Failed, Expired, ...) or Sending: not yet, send again after a while. */
  status: RemittanceStatus;
  receiptId?: string | null;
  errorCode?: string | null;
  reason?: string | null;
  attempts: number;
  /** The marketplace's own retry-after, for a Sending result. */
  retryAfterMs?: number;
}

function toResult(row: RemittanceRow): SendResult {
  return { status: row.status, receiptId: row.receiptId, errorCode: row.errorCode, reason: row.reason, attempts: row.attempts };
}

function unconfirmed(last: string): Outcome {
  return {
    status: 'Unconfirmed',
    errorCode: 'marketplace_unconfirmed',
    reason:
      `The record was sent but the marketplace's answer was lost, and it could not be confirmed before its window closed (last: ${last}). ` +
      'It counts as remitted, so it is never billed twice. Check the marketplace report for this customer, dimension and hour: ' +
      'if the record is not there, reset this hour (POST /v1/remittances/reset) and it is billed in the current hour.',
  };
}

export function toUsageRecord(row: RemittanceRow): UsageRecord {
  if (!row.customer || !row.dimension) throw ApplicationFailure.nonRetryable(`remittance ${row.id} has no marketplace customer or dimension`, 'NonRetryable');
  return { recordId: row.id, customer: row.customer, dimension: row.dimension, quantity: row.bill, timestampMs: new Date(row.remittanceHour).getTime() };
}

export function createActivities(deps: ActivityDeps) {
  const now = deps.now ?? Date.now;
  const { database } = deps;

  async function settle(row: RemittanceRow, outcome: SendOutcome): Promise<SendResult | undefined> {
    switch (outcome.kind) {
      case 'accepted':
        return toResult((await markOutcome(database, row.id, { status: 'Succeeded', receiptId: outcome.receiptId }))!);
      case 'terminal': {
        // After a lost answer, a rejection of the re-send does not prove the first send was not
        // recorded (a customer can unsubscribe in between). Only Azure's expiry, which its client
        // believes only after reading the usage back, is definite.
        const definite = !row.inDoubt || (row.customer?.marketplace === 'azure' && outcome.code === 'marketplace_window_expired');
        if (!definite) return toResult((await markOutcome(database, row.id, unconfirmed(`${outcome.code}: ${outcome.reason}`)))!);
        const status = outcome.code === 'marketplace_window_expired' ? 'Expired' : 'Failed';
        return toResult((await markOutcome(database, row.id, { status, errorCode: outcome.code, reason: outcome.reason }))!);
      }
      default:
        return undefined;
    }
  }

  return {
    async computeRemittance(a: { key: RemittanceKey; remittanceHourMs: number; mode: 'initial' | 'retry'; workflowId: string }) {
      const out = await computeRemittance(database, { ...a, catalog: deps.catalog, time: deps.time, nowMs: now() });
      deps.log.info({ key: a.key, hour: new Date(a.remittanceHourMs).toISOString(), workflowId: a.workflowId, status: out.status, bill: out.bill }, 'remittance computed');
      return out;
    },

    /**
     * Send one remittance's record. The intent (Sending, attempts + 1) is committed first; an
     * attempt that finds the record already in flight (a crash or lost answer before) asks the
     * marketplace what it recorded instead of sending blind.
     */
    async sendRemittance(a: { remittanceId: string }): Promise<SendResult> {
      const marked = await markSending(database, a.remittanceId);
      if (!marked) throw ApplicationFailure.nonRetryable(`remittance ${a.remittanceId} does not exist`, 'NonRetryable');
      const { row, wasInFlight } = marked;
      if (row.status !== 'Sending') return toResult(row);
      const record = toUsageRecord(row);
      const log = deps.log.child({ remittanceId: row.id, workflowId: row.workflowId, attempt: row.attempts });
      // Heartbeats let Temporal notice within seconds that this worker died mid-send, instead of
      // waiting for the start-to-close timeout.
      const ctx = Context.current();
      const beat = setInterval(() => ctx.heartbeat(row.attempts), 1000);
      let outcome: SendOutcome;
      let inDoubt = row.inDoubt;
      try {
        const dispatch = () => markDispatched(database, row.id);
        if (wasInFlight) {
          await dispatch();
          outcome = await deps.marketplaces.resolve(record);
        } else {
          outcome = await deps.marketplaces.submit(record, { onDispatch: dispatch });
        }
        if (outcome.kind === 'ambiguous') {
          inDoubt = true;
          log.warn({ reason: outcome.reason }, 'marketplace answer lost; asking the marketplace what it recorded');
          outcome = await deps.marketplaces.resolve(record);
        }
      } finally {
        clearInterval(beat);
      }
      const settled = await settle({ ...row, inDoubt }, outcome);
      if (settled) {
        log.info({ status: settled.status, errorCode: settled.errorCode }, 'remittance sent');
        return settled;
      }
      // Not final: the workflow shows the attempt and this error, waits, and sends again.
      const code = outcome.kind === 'retryable' ? outcome.code : 'unknown';
      const message = outcome.kind === 'retryable' ? `${outcome.code}: ${outcome.reason}` : `the marketplace's answer was lost and could not be confirmed yet: ${outcome.kind === 'ambiguous' ? outcome.reason : ''}`;
      await recordAttemptError(database, row.id, message, inDoubt || outcome.kind === 'ambiguous');
      log.warn({ outcome }, 'marketplace send will be retried');
      return { status: 'Sending', errorCode: code, reason: message, attempts: row.attempts, retryAfterMs: outcome.kind === 'retryable' ? outcome.retryAfterMs : undefined };
    },

    /**
     * The acceptance deadline passed. If some attempt may have reached the marketplace (a lost
     * answer, a worker that died mid-call), ask it once more (Azure can still read its usage
     * back; AWS cannot) and, if it cannot say, record the send as Unconfirmed: counted as
     * remitted, flagged for an operator, never billed a second time. Otherwise it expired.
     */
    async markExpired(a: { remittanceId: string; reason: string }): Promise<SendResult> {
      const before = await getRemittance(database, a.remittanceId);
      if (!before) throw ApplicationFailure.nonRetryable(`remittance ${a.remittanceId} does not exist`, 'NonRetryable');
      if ((before.status === 'Sending' || before.status === 'Pending') && (before.inDoubt || before.attemptOpen) && before.customer) {
        const doubtful = { ...before, inDoubt: true };
        const outcome = await deps.marketplaces.resolve(toUsageRecord(before));
        const settled = await settle(doubtful, outcome);
        if (settled) return settled;
        return toResult((await markOutcome(database, before.id, unconfirmed(before.lastError ?? a.reason)))!);
      }
      const reason = before.lastError ? `${a.reason} Last error: ${before.lastError}` : a.reason;
      return toResult((await markOutcome(database, a.remittanceId, { status: 'Expired', errorCode: 'marketplace_window_expired', reason }))!);
    },

    async markFailed(a: { remittanceId: string; errorCode: string; reason: string }): Promise<SendResult> {
      const row = await markOutcome(database, a.remittanceId, { status: 'Failed', errorCode: a.errorCode, reason: a.reason });
      return toResult(row!);
    },

    async voidRemittance(a: { remittanceId: string; reason: string }): Promise<void> {
      await withTransaction(database, (c) => voidRemittances(c, [a.remittanceId], a.reason));
    },

    async recordAudit(e: { actor: string; action: string; request: unknown; result?: unknown }): Promise<void> {
      await recordAudit(database.pool, e);
    },

    /** The hourly sweep: start the current hour's remittance of every key that still owes. */
    async startOwingRemittances(a: { atMs: number }): Promise<{ started: number }> {
      if (!deps.startRemittances) throw new Error('startOwingRemittances needs a Temporal client');
      // The hour as of now, not as of when the sweep was scheduled: an attempt retried through a
      // database outage must not start remittances for an hour that is already over.
      const hour = hourStart(Math.max(a.atMs, now()), deps.time.hourMs);
      let started = 0;
      let after = '';
      for (;;) {
        const keys = await findOwingKeys(database, deps.time, 500, after);
        if (keys.length === 0) break;
        await deps.startRemittances(keys, hour);
        started += keys.length;
        Context.current().heartbeat(started);
        const last = keys[keys.length - 1]!;
        after = keyString(last);
      }
      deps.log.info({ hour: new Date(hour).toISOString(), started }, 'sweep started remittances for owing keys');
      return { started };
    },
  };
}

export type RemittanceActivities = ReturnType<typeof createActivities>;
