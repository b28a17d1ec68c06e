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
import { groupCommit } from '../db/group-commit';
import {
  claimHourClose,
  computeGroups,
  findOwingKeys,
  finishHourClose,
  getRecord,
  keysWithUsageOnlyAfter,
  loadContractsForScopes,
  markDispatchedMany,
  markOutcome,
  markSendingMany,
  markSucceededMany,
  recomputeRecord,
  recordAttemptError,
  recordAudit,
  unstartedGroups,
  voidRecord,
  type GroupOutcome,
  type GroupTarget,
  type Outcome,
  type RecordRow,
  type TimeSettings,
} from '../db/ledger';
import { lookupMetric, type Catalog } from '../domain/catalog';
import { keyString, type RemittanceKey } from '../domain/key';
import { recordIdentity, recordTargetOf } from '../domain/record';
import { closedHourAt } from '../domain/time';
import type { Logger } from '../lib/log';
import type { RecordStart } from '../workflows/client';
import type { MarketplaceGateway } from '../marketplaces';
import type { SendOutcome, UsageRecord } from '../marketplaces/types';
import type { RemittanceStatus } from '../domain/lifecycle';

export interface ActivityDeps {
  database: Database;
  catalog: Catalog;
  time: TimeSettings;
  marketplaces: MarketplaceGateway;
  log: Logger;
  /** Starts one record workflow (idempotent per workflow id); used by the sweep that closes an hour. */
  startRecordWorkflow?: (start: RecordStart) => Promise<unknown>;
  /** Workflow starts in flight at once while an hour closes (default 32). */
  startConcurrency?: number;
  now?: () => number;
}

export interface SendResult {
  /** Final (Succeeded, Failed, Expired, ...) or Sending: not yet, send again after a while. */
  status: RemittanceStatus;
  quantity: number;
  receiptId?: string | null;
  errorCode?: string | null;
  reason?: string | null;
  attempts: number;
  /** The marketplace's own retry-after, for a Sending result. */
  retryAfterMs?: number;
}

function toResult(row: RecordRow): SendResult {
  return { status: row.status, quantity: row.quantity, receiptId: row.receiptId, errorCode: row.errorCode, reason: row.reason, attempts: row.attempts };
}

/**
 * A send that may have reached the marketplace and cannot be confirmed: either the acceptance
 * deadline came first (`deadline`), or the confirming re-send was refused (`refused`: after a lost
 * answer or a worker that died mid-call, a refusal does not prove the first send was not recorded,
 * e.g. a customer who unsubscribed in between).
 */
function unconfirmed(last: string, why: 'deadline' | 'refused'): Outcome {
  const what =
    why === 'deadline'
      ? `The record was sent but the marketplace's answer was lost, and it could not be confirmed before its window closed (last: ${last}). `
      : `An earlier attempt may have reached the marketplace (its answer was lost, or the worker stopped mid-call), and the re-send that would confirm it was refused (${last}): the refusal does not show whether the first send was recorded. `;
  return {
    status: 'Unconfirmed',
    errorCode: 'marketplace_unconfirmed',
    reason:
      what +
      'It counts as remitted, so it is never billed twice. Check the marketplace report for this customer, dimension and hour: ' +
      'if the record is not there, reset this hour (POST /v1/remittances/reset) and it is billed in the current hour.',
  };
}

export function toUsageRecord(row: RecordRow): UsageRecord {
  return { recordId: row.id, customer: row.customer, dimension: row.dimension, quantity: row.quantity, timestampMs: new Date(row.remittanceHour).getTime() };
}

/** Heartbeat a regular activity; a local activity cannot (its workflow task is its liveness). */
function heartbeat(details?: unknown): void {
  const ctx = Context.current();
  if (!ctx.info.isLocal) ctx.heartbeat(details);
}

/** Keys per computation transaction while an hour closes (see closeHour). */
const COMPUTE_BATCH_KEYS = 200;

export function createActivities(deps: ActivityDeps) {
  const now = deps.now ?? Date.now;
  const { database } = deps;
  // The records of one marketplace call write their intent, dispatch and acceptance together.
  const markSending = groupCommit((ids: string[]) => markSendingMany(database, ids));
  const markDispatched = groupCommit((ids: string[]) => markDispatchedMany(database, ids));
  const markSucceeded = groupCommit((accepted: Array<{ id: string; receiptId: string }>) => markSucceededMany(database, accepted));

  async function settle(row: RecordRow, outcome: SendOutcome): Promise<SendResult | undefined> {
    switch (outcome.kind) {
      case 'accepted':
        return toResult((await markSucceeded({ id: row.id, receiptId: outcome.receiptId }))!);
      case 'terminal': {
        // After a lost answer, a rejection of the re-send does not prove the first send was not
        // recorded (a customer can unsubscribe in between). Only Azure's expiry, which its client
        // believes only after reading the usage back, is definite.
        const definite = !row.inDoubt || (row.customer.marketplace === 'azure' && outcome.code === 'marketplace_window_expired');
        if (!definite) return toResult((await markOutcome(database, row.id, unconfirmed(`${outcome.code}: ${outcome.reason}`, 'refused')))!);
        const status = outcome.code === 'marketplace_window_expired' ? 'Expired' : 'Failed';
        return toResult((await markOutcome(database, row.id, { status, errorCode: outcome.code, reason: outcome.reason }))!);
      }
      default:
        return undefined;
    }
  }

  /** Workflow starts for what one group's computation produced. */
  function startsOf(g: GroupOutcome, hourMs: number): RecordStart[] {
    const starts: RecordStart[] = [];
    const hourLengthMs = deps.time.hourMs;
    if (g.record) {
      const rows = g.computed.filter((c) => c.status === 'Pending');
      const first = rows[0]!.key;
      starts.push({
        workflowId: g.record.workflowId,
        input: { recordId: g.record.id, remittanceHourMs: hourMs, deadlineMs: new Date(g.record.deadline).getTime(), hourLengthMs },
        attributes: { marketplace: first.billingProvider, billingAccountId: first.billingAccountId, productTag: first.productTag, metric: first.metric, orgIds: rows.map((r) => r.key.orgId), hourMs, status: 'Pending', errorCode: null },
        summary: `${g.record.quantity} ${g.record.dimension} · ${recordIdentity(g.record.customer, g.record.dimension).replace(/\|/g, ' · ')} · ${new Date(hourMs).toISOString()}`,
      });
    }
    // Usage that goes to no record this hour is shown by one workflow per billing account,
    // product and metric: Failed before sending (no dimension, no identifiers), or waiting.
    const unsent = new Map<string, typeof g.computed>();
    for (const c of g.computed) if (c.workflowId && (c.status === 'Failed' || c.status === 'WaitingForContract')) unsent.set(c.workflowId, [...(unsent.get(c.workflowId) ?? []), c]);
    for (const [workflowId, rows] of unsent) {
      const shown = rows.find((r) => r.status === 'Failed') ?? rows[0]!;
      const k = shown.key;
      starts.push({
        workflowId,
        input: { remittanceHourMs: hourMs, deadlineMs: hourMs + hourLengthMs * (deps.time.acceptanceHours[k.billingProvider] ?? 6), hourLengthMs, status: shown.status, errorCode: shown.errorCode, reason: shown.reason },
        attributes: { marketplace: k.billingProvider, billingAccountId: k.billingAccountId, productTag: k.productTag, metric: k.metric, orgIds: rows.map((r) => r.key.orgId), hourMs, status: shown.status, errorCode: shown.errorCode },
        summary: `${shown.status} · ${k.billingProvider} · ${k.billingAccountId} · ${k.productTag} ${k.metric} · ${new Date(hourMs).toISOString()}`,
      });
    }
    return starts;
  }

  return {
    /**
     * Send one record. The intent (Sending, attempts + 1) is committed first; an attempt that
     * finds the record already in flight (a crash or lost answer before) asks the marketplace
     * what it recorded instead of sending blind.
     */
    async sendRecord(a: { recordId: string }): Promise<SendResult> {
      const marked = await markSending(a.recordId);
      if (!marked) throw ApplicationFailure.nonRetryable(`marketplace record ${a.recordId} does not exist`, 'NonRetryable');
      const { row, wasInFlight } = marked;
      if (row.status !== 'Sending') return toResult(row);
      const record = toUsageRecord(row);
      const log = deps.log.child({ recordId: row.id, workflowId: row.workflowId, attempt: row.attempts });
      let outcome: SendOutcome;
      let inDoubt = row.inDoubt;
      const dispatch = () => markDispatched(row.id);
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
      const settled = await settle({ ...row, inDoubt }, outcome);
      if (settled) {
        log.info({ status: settled.status, errorCode: settled.errorCode, quantity: row.quantity }, 'record sent');
        return settled;
      }
      // Not final: the workflow shows the attempt and this error, waits, and sends again.
      const code = outcome.kind === 'retryable' ? outcome.code : 'unknown';
      const message = outcome.kind === 'retryable' ? `${outcome.code}: ${outcome.reason}` : `the marketplace's answer was lost and could not be confirmed yet: ${outcome.kind === 'ambiguous' ? outcome.reason : ''}`;
      await recordAttemptError(database, row.id, message, inDoubt || outcome.kind === 'ambiguous');
      log.warn({ outcome }, 'marketplace send will be retried');
      return { status: 'Sending', quantity: row.quantity, errorCode: code, reason: message, attempts: row.attempts, retryAfterMs: outcome.kind === 'retryable' ? outcome.retryAfterMs : undefined };
    },

    /**
     * The acceptance deadline passed. If some attempt may have reached the marketplace (a lost
     * answer, a worker that died mid-call), ask it once more (Azure can still read its usage
     * back; AWS cannot) and, if it cannot say, record the send as Unconfirmed: counted as
     * remitted, flagged for an operator, never billed a second time. Otherwise it expired.
     */
    async markExpired(a: { recordId: string; reason: string }): Promise<SendResult> {
      const before = await getRecord(database, a.recordId);
      if (!before) throw ApplicationFailure.nonRetryable(`marketplace record ${a.recordId} does not exist`, 'NonRetryable');
      if ((before.status === 'Sending' || before.status === 'Pending') && (before.inDoubt || before.attemptOpen)) {
        const outcome = await deps.marketplaces.resolve(toUsageRecord(before));
        const settled = await settle({ ...before, inDoubt: true }, outcome);
        if (settled) return settled;
        return toResult((await markOutcome(database, before.id, unconfirmed(before.lastError ?? a.reason, 'deadline')))!);
      }
      const reason = before.lastError ? `${a.reason} Last error: ${before.lastError}` : a.reason;
      return toResult((await markOutcome(database, a.recordId, { status: 'Expired', errorCode: 'marketplace_window_expired', reason }))!);
    },

    async markFailed(a: { recordId: string; errorCode: string; reason: string }): Promise<SendResult> {
      return toResult((await markOutcome(database, a.recordId, { status: 'Failed', errorCode: a.errorCode, reason: a.reason }))!);
    },

    /** An operator's retry or recalculate of a failed record: recompute it in its own hour. */
    async recomputeRecord(a: { recordId: string }): Promise<SendResult> {
      return toResult(await recomputeRecord(database, a.recordId, { catalog: deps.catalog, time: deps.time, nowMs: now() }));
    },

    async voidRecord(a: { recordId: string; reason: string }): Promise<void> {
      await voidRecord(database, a.recordId, a.reason);
    },

    async recordAudit(e: { actor: string; action: string; request: unknown; result?: unknown }): Promise<void> {
      await recordAudit(database.pool, e);
    },

    /**
     * Close the newest hour whose window has closed: compute every owing key for it, one
     * marketplace record per customer and dimension (the keys' bills summed), and start one
     * workflow per record (and one per account, product and metric whose usage could not go to
     * a record). Exactly once per hour: the first sweep run to claim the hour owns it; a retry
     * of its activity continues and starts again, idempotently, what the hour already made.
     */
    async closeHour(a: { atMs: number }): Promise<{ hour: string | null; records: number; computed: number }> {
      const start = deps.startRecordWorkflow;
      if (!start) throw new Error('closeHour needs a Temporal client');
      const info = Context.current().info;
      // The hour as of now, not as of when the sweep was scheduled: an attempt retried through a
      // database outage must not create records for an hour older than it must.
      const hour = closedHourAt(Math.max(a.atMs, now()), deps.time);
      const closer = `${info.workflowExecution?.workflowId}/${info.workflowExecution?.runId}`;
      if (!(await claimHourClose(database, hour, closer))) return { hour: null, records: 0, computed: 0 };

      const keys: RemittanceKey[] = [];
      for (let after = ''; ; ) {
        const page = await findOwingKeys(database, 5000, after);
        if (page.length === 0) break;
        keys.push(...page);
        after = keyString(page[page.length - 1]!);
      }
      // Keys whose usage is all after this hour (stored during its grace for the next hour: a
      // top-of-hour burst of new keys) cannot owe anything at this hour: they stay owing for the
      // next close, at no cost here.
      const later = await keysWithUsageOnlyAfter(database, keys.map(keyString), hour);
      if (later.size) keys.splice(0, keys.length, ...keys.filter((k) => !later.has(keyString(k))));
      // Group the keys by the record they go to, as decided by the contracts in force now; the
      // computation re-checks each key under its lock.
      const contracts = await loadContractsForScopes(database.pool, keys);
      const groups = new Map<string, { target: GroupTarget; keys: RemittanceKey[] }>();
      for (const key of keys) {
        const t = recordTargetOf(key, lookupMetric(deps.catalog, key.productTag, key.metric) ?? null, contracts(key), hour);
        const id = 'problem' in t ? ['unsent', key.billingProvider, key.billingAccountId, key.productTag, key.metric].join('|') : recordIdentity(t.customer, t.dimension);
        const g = groups.get(id) ?? { target: 'problem' in t ? null : t, keys: [] };
        g.keys.push(key);
        groups.set(id, g);
      }

      // Groups compute in batches of about COMPUTE_BATCH_KEYS keys, one transaction each (set-based:
      // a dozen statements per batch), two batches at a time, while their workflows start: a
      // record's workflow starts as soon as its batch is committed.
      let records = 0;
      let computed = 0;
      const settings = { catalog: deps.catalog, time: deps.time, nowMs: now() };
      const queue = [...groups.values()];
      const starts: RecordStart[] = [];
      let computing = true;
      const nextBatch = () => {
        const batch: typeof queue = [];
        for (let n = 0; queue.length > 0 && (batch.length === 0 || n + queue[0]!.keys.length <= COMPUTE_BATCH_KEYS); ) {
          const g = queue.shift()!;
          n += g.keys.length;
          batch.push(g);
        }
        return batch;
      };
      const computers = Array.from({ length: Math.min(2, queue.length) }, async () => {
        for (let batch = nextBatch(); batch.length > 0; batch = nextBatch()) {
          const outs = await computeGroups(database, { ...settings, groups: batch, hourMs: hour });
          for (const out of outs) {
            computed += out.computed.length;
            if (out.record) records++;
            starts.push(...startsOf(out, hour));
          }
          heartbeat(computed);
        }
      });
      const starters = Array.from({ length: deps.startConcurrency ?? 32 }, async () => {
        for (;;) {
          const s = starts.shift();
          if (s) await start(s);
          else if (!computing) return;
          else await new Promise((r) => setTimeout(r, 5));
        }
      });
      try {
        await Promise.all(computers);
      } finally {
        computing = false;
        await Promise.all(starters);
      }
      // What an earlier attempt (of this hour, on a retry) or an earlier close (a retry that ran
      // past the next close, a run ended mid-close) made but may not have started.
      const leftover = await unstartedGroups(database, { beforeHourMs: hour, hourMs: info.attempt > 1 ? hour : undefined });
      for (const s of leftover.flatMap((g) => startsOf(g, g.record ? new Date(g.record.remittanceHour).getTime() : hour))) await start(s);
      await finishHourClose(database, hour);
      deps.log.info({ hour: new Date(hour).toISOString(), keys: keys.length, computed, records }, 'hour closed');
      return { hour: new Date(hour).toISOString(), records, computed };
    },
  };
}

export type RemittanceActivities = ReturnType<typeof createActivities>;
