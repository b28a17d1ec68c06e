// remit's Temporal wiring, in one place: the task queue, workflow type names, workflow and
// schedule ids, search attributes, signals and queries. Shared by workflows, the worker, the API,
// the CLI and the scripts. No I/O here: workflow code imports it. The statuses the
// `RemittanceStatus` search attribute shows are the pure domain's (domain/lifecycle.ts).

import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { MarketplaceCustomer } from '../domain/record';
import type { RemittanceKey } from '../domain/key';
import type { RemittanceStatus } from '../domain/lifecycle';
import type * as workflows from './index';

/** The task queue remit's workers poll unless REMIT_TASK_QUEUE names another. */
export const DEFAULT_TASK_QUEUE = 'remittance-v1';

/**
 * The workflow types, as clients and schedules start them. Checked at compile time against what
 * the bundle exports (workflows/index.ts), so a renamed workflow cannot leave a stale name here.
 */
export const WORKFLOW_TYPE = {
  record: 'marketplaceRecordWorkflow',
  sweep: 'sweepWorkflow',
  usagePull: 'usagePullWorkflow',
} as const satisfies Record<string, keyof typeof workflows>;

/** The hourly sweep's Schedule: one per task queue, so that several deployments (or tests) can share a namespace. */
export function sweepScheduleId(taskQueue: string): string {
  return `remit-sweep/${taskQueue}`;
}

/** The hourly usage pull's Schedule, likewise one per task queue; also the id of the workflows it starts. */
export function usagePullScheduleId(taskQueue: string): string {
  return `remit-usage-pull/${taskQueue}`;
}

const idPart = (s: string) => s.replace(/%/g, '%25').replace(/\//g, '%2F');
const hourPart = (hourMs: number) => new Date(hourMs).toISOString().replace('.000Z', 'Z');

/**
 * Workflow id of the record of `customer` and `dimension` for the remittance hour `hourMs`,
 * readable by a person and computable from the contracts in force, e.g.
 * `remittance/aws/123456789012/rosa-hcp/four_vcpu_hour/2026-11-25T10:00:00Z` or
 * `remittance/azure/<resourceId>/<planId>/control_plane/2026-11-25T10:00:00Z`.
 */
export function recordWorkflowId(customer: MarketplaceCustomer, dimension: string, hourMs: number): string {
  const who = customer.marketplace === 'aws' ? [customer.customerAwsAccountId, customer.licenseArn ?? customer.productCode] : [customer.resourceId, customer.planId];
  return ['remittance', customer.marketplace, ...who, dimension].map(idPart).concat(hourPart(hourMs)).join('/');
}

/**
 * Where usage that cannot go to a marketplace record is shown: keys of one billing account,
 * product and metric whose hour has no record because no contract says where to send it, or the
 * metric has no dimension there (WaitingForContract, Failed before sending), e.g.
 * `remittance-unsent/aws/123456789012/rosa/Cores/2026-11-25T10:00:00Z`.
 */
export function unsentWorkflowId(k: Pick<RemittanceKey, 'billingProvider' | 'billingAccountId' | 'productTag' | 'metric'>, hourMs: number): string {
  return ['remittance-unsent', k.billingProvider, k.billingAccountId, k.productTag, k.metric].map(idPart).concat(hourPart(hourMs)).join('/');
}

export const SA = {
  Marketplace: defineSearchAttributeKey('Marketplace', SearchAttributeType.KEYWORD),
  BillingAccountId: defineSearchAttributeKey('BillingAccountId', SearchAttributeType.KEYWORD),
  /** Every org whose usage the record carries. */
  OrgId: defineSearchAttributeKey('OrgId', SearchAttributeType.KEYWORD_LIST),
  ProductTag: defineSearchAttributeKey('ProductTag', SearchAttributeType.KEYWORD),
  Metric: defineSearchAttributeKey('Metric', SearchAttributeType.KEYWORD),
  RemittanceStatus: defineSearchAttributeKey('RemittanceStatus', SearchAttributeType.KEYWORD),
  RemittanceErrorCode: defineSearchAttributeKey('RemittanceErrorCode', SearchAttributeType.KEYWORD),
  RemittanceHour: defineSearchAttributeKey('RemittanceHour', SearchAttributeType.DATETIME),
} as const;

/** How the `temporal` CLI and the operator service name each search attribute type. */
export const SEARCH_ATTRIBUTE_TYPE_NAMES: Partial<Record<SearchAttributeType, string>> = {
  [SearchAttributeType.KEYWORD]: 'Keyword',
  [SearchAttributeType.KEYWORD_LIST]: 'KeywordList',
  [SearchAttributeType.DATETIME]: 'Datetime',
};

/** `--search-attribute Name=Type` arguments for `temporal server start-dev`. */
export const SEARCH_ATTRIBUTE_CLI_ARGS: string[] = Object.values(SA).flatMap((k) => ['--search-attribute', `${k.name}=${SEARCH_ATTRIBUTE_TYPE_NAMES[k.type]}`]);

export interface OperatorSignalInput {
  /** Who asked (operator name, ticket); recorded in the audit trail. */
  actor?: string;
  reason?: string;
}

export const retrySignal = defineSignal<[OperatorSignalInput?]>('retry');
export const recalculateSignal = defineSignal<[OperatorSignalInput?]>('recalculate');
export const resetSignal = defineSignal<[OperatorSignalInput?]>('reset');

export interface RemittanceView {
  status: RemittanceStatus;
  /** The marketplace record the workflow sends (absent when its hour has none to send). */
  recordId?: string;
  quantity?: number;
  errorCode?: string;
  reason?: string;
  receiptId?: string;
  attempts?: number;
  deadline?: string;
}
export const stateQuery = defineQuery<RemittanceView>('state');
