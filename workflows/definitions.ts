// Temporal names shared by workflows, the worker, the API and the CLI: search attributes,
// signals, queries and the remittance status vocabulary. No I/O here: workflow code imports it.

import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { defineQuery, defineSignal } from '@temporalio/workflow';

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

/** What a remittance can be, as shown in the `RemittanceStatus` search attribute. */
export const REMITTANCE_STATUSES = [
  'Pending',
  'Sending',
  'Succeeded',
  'Failed',
  'Expired',
  'WaitingForContract',
  'NothingDue',
  'Gratis',
  'Voided',
  /** Sent, but the marketplace's answer never came back and its window closed: counted, flagged. */
  'Unconfirmed',
] as const;
export type RemittanceStatus = (typeof REMITTANCE_STATUSES)[number];

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
