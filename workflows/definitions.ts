// Temporal names shared by workflows, the worker, the API and the CLI: search attributes,
// signals, queries and the remittance status vocabulary. No I/O here: workflow code imports it.

import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { defineQuery, defineSignal } from '@temporalio/workflow';

export const SA = {
  Marketplace: defineSearchAttributeKey('Marketplace', SearchAttributeType.KEYWORD),
  BillingAccountId: defineSearchAttributeKey('BillingAccountId', SearchAttributeType.KEYWORD),
  OrgId: defineSearchAttributeKey('OrgId', SearchAttributeType.KEYWORD),
  ProductTag: defineSearchAttributeKey('ProductTag', SearchAttributeType.KEYWORD),
  Metric: defineSearchAttributeKey('Metric', SearchAttributeType.KEYWORD),
  RemittanceStatus: defineSearchAttributeKey('RemittanceStatus', SearchAttributeType.KEYWORD),
  RemittanceErrorCode: defineSearchAttributeKey('RemittanceErrorCode', SearchAttributeType.KEYWORD),
  RemittanceHour: defineSearchAttributeKey('RemittanceHour', SearchAttributeType.DATETIME),
} as const;

/** `--search-attribute Name=Type` arguments for `temporal server start-dev`. */
export const SEARCH_ATTRIBUTE_CLI_ARGS: string[] = Object.values(SA).flatMap((k) => [
  '--search-attribute',
  `${k.name}=${k.type === SearchAttributeType.DATETIME ? 'Datetime' : 'Keyword'}`,
]);

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
  remittanceId?: string;
  quantity?: number;
  errorCode?: string;
  reason?: string;
  receiptId?: string;
  attempts?: number;
  deadline?: string;
}
export const stateQuery = defineQuery<RemittanceView>('state');
