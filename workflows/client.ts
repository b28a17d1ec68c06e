// Client-side helpers for remittance workflows (the worker's close activity, the API, the CLI),
// typed against the workflows they start and signal. The sweep that closes an hour starts one
// workflow per marketplace record (and per account, product and metric whose usage went to no
// record). Starting is idempotent: a workflow id already started (a retried close) is left alone,
// and a closed one is never redone by a start (operators use signals or the reset API).

import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { RemittanceStatus } from '../domain/lifecycle';
import { SA, WORKFLOW_TYPE, retrySignal, type OperatorSignalInput } from './definitions';
import type { marketplaceRecordWorkflow, RecordWorkflowInput } from './remittance';

export interface RecordStart {
  workflowId: string;
  input: RecordWorkflowInput;
  /** Search attributes at start: the Web UI filters on them before the workflow runs. */
  attributes: {
    marketplace: string;
    billingAccountId: string;
    productTag: string;
    metric: string;
    /** Every org whose usage the workflow carries. */
    orgIds: string[];
    hourMs: number;
    status: RemittanceStatus;
    errorCode: string | null;
  };
  /** One line for the Web UI's list. */
  summary: string;
}

export interface RecordStarterOptions {
  client: Client;
  taskQueue: string;
  /**
   * Ask the server to hand the workflow's first task straight back to this process's worker
   * (eager workflow start) instead of queueing it for a poll. Only a Client on the worker's own
   * NativeConnection can ask, and only the worker polling `taskQueue` benefits: the hour close.
   */
  eager?: boolean;
}

export async function startRecordWorkflow(o: RecordStarterOptions, s: RecordStart): Promise<boolean> {
  const a = s.attributes;
  try {
    await o.client.workflow.start<typeof marketplaceRecordWorkflow>(WORKFLOW_TYPE.record, {
      workflowId: s.workflowId,
      taskQueue: o.taskQueue,
      args: [s.input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      ...(o.eager ? { requestEagerStart: true } : {}),
      staticSummary: s.summary,
      typedSearchAttributes: [
        { key: SA.Marketplace, value: a.marketplace },
        { key: SA.BillingAccountId, value: a.billingAccountId },
        { key: SA.OrgId, value: [...new Set(a.orgIds)].sort() },
        { key: SA.ProductTag, value: a.productTag },
        { key: SA.Metric, value: a.metric },
        { key: SA.RemittanceHour, value: new Date(a.hourMs) },
        { key: SA.RemittanceStatus, value: a.status },
        ...(a.errorCode ? [{ key: SA.RemittanceErrorCode, value: a.errorCode }] : []),
      ],
    });
    return true;
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return false;
    throw err;
  }
}

/**
 * Signal `retry` to a record workflow that is still running (waiting on a failed send); false when
 * it has finished or does not exist, so that the caller recomputes the key instead.
 */
export async function signalRetryIfRunning(client: Client, workflowId: string, input: OperatorSignalInput): Promise<boolean> {
  try {
    const h = client.workflow.getHandle<typeof marketplaceRecordWorkflow>(workflowId);
    const desc = await h.describe();
    if (desc.status.name !== 'RUNNING') return false;
    await h.signal(retrySignal, input);
    return true;
  } catch {
    return false;
  }
}
