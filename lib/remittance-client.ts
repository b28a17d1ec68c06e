// Client-side helpers for remittance workflows, shared by the API, the sweep activity and the
// CLI. Starting is idempotent: a running workflow for the same key and hour is reused, and a
// closed one is left alone (its hour is over; a later hour bills what it did not).

import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { keyString, remittanceWorkflowId, type RemittanceKey } from '../domain/key';
import type { Database } from '../db/client';
import { markScheduled } from '../db/ledger';
import { SA } from '../workflows/definitions';
import type { RemittanceWorkflowInput } from '../workflows/remittance';
import type { TimeSettings } from '../config/env';

export interface RemittanceStarterOptions {
  client: Client;
  taskQueue: string;
  time: TimeSettings;
}

export function remittanceInput(key: RemittanceKey, hourMs: number, time: TimeSettings): RemittanceWorkflowInput {
  return {
    key,
    remittanceHourMs: hourMs,
    time: { hourMs: time.hourMs, graceHours: time.graceHours, acceptanceHours: time.acceptanceHours[key.billingProvider] ?? 6 },
  };
}

export async function startRemittance(o: RemittanceStarterOptions, key: RemittanceKey, hourMs: number): Promise<{ workflowId: string; started: boolean }> {
  const workflowId = remittanceWorkflowId(key, hourMs);
  try {
    await o.client.workflow.start('remittanceWorkflow', {
      workflowId,
      taskQueue: o.taskQueue,
      args: [remittanceInput(key, hourMs, o.time)],
      workflowIdConflictPolicy: 'USE_EXISTING',
      // A finished hour is never redone by a start; operators use signals or the reset API.
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      staticSummary: `${key.billingProvider} · ${key.billingAccountId} · ${key.orgId} · ${key.productTag} ${key.metric} · ${new Date(hourMs).toISOString()}`,
      typedSearchAttributes: [
        { key: SA.Marketplace, value: key.billingProvider },
        { key: SA.BillingAccountId, value: key.billingAccountId },
        { key: SA.OrgId, value: key.orgId },
        { key: SA.ProductTag, value: key.productTag },
        { key: SA.Metric, value: key.metric },
        { key: SA.RemittanceHour, value: new Date(hourMs) },
        { key: SA.RemittanceStatus, value: 'Pending' },
      ],
    });
    return { workflowId, started: true };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { workflowId, started: false };
    throw err;
  }
}

/**
 * Start the remittance of every key for `hourMs` (idempotent per key and hour), a few at a
 * time, and record in the ledger that their changes are covered, so the hourly sweep does not
 * start them again. Used by ingestion, contracts, operator actions, the sweep and the usage pull.
 */
export async function startRemittances(o: RemittanceStarterOptions & { database: Database; concurrency?: number }, keys: RemittanceKey[], hourMs: number): Promise<string[]> {
  const ids: string[] = new Array(keys.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(o.concurrency ?? 16, keys.length) }, async () => {
    while (next < keys.length) {
      const i = next++;
      ids[i] = (await startRemittance(o, keys[i]!, hourMs)).workflowId;
    }
  });
  await Promise.all(lanes);
  await markScheduled(o.database.pool, keys.map(keyString), hourMs);
  return ids;
}
