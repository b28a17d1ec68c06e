// What `remit audit` (operations/audit.ts) reads of the ledger: every remittance, every
// marketplace record and every key, in a stable order.

import type { Database } from './client';
import type { RemittanceStatus } from '../domain/lifecycle';

/** A marketplace record of the ledger (marketplace_records). */
export interface AuditLedgerRecord {
  id: string;
  marketplace: string;
  remittance_hour: Date;
  status: RemittanceStatus;
  quantity: number;
  receipt_id: string | null;
  dimension: string;
  customer: AuditLedgerRow['customer'];
}

export interface AuditLedgerRow {
  id: string;
  key: string;
  billing_provider: string;
  remittance_hour: Date;
  status: RemittanceStatus;
  bill: number;
  reason: string | null;
  error_code: string | null;
  receipt_id: string | null;
  dimension: string | null;
  customer: { marketplace: string; customerAwsAccountId?: string; resourceId?: string } | null;
  record_id: string | null;
}

export async function readLedgerForAudit(database: Database): Promise<{ rows: AuditLedgerRow[]; records: AuditLedgerRecord[]; keys: string[] }> {
  const rows = (await database.pool.query<AuditLedgerRow>('SELECT id, key, billing_provider, remittance_hour, status, bill, reason, error_code, receipt_id, dimension, customer, record_id FROM remittances ORDER BY key, remittance_hour')).rows;
  const records = (await database.pool.query<AuditLedgerRecord>('SELECT id, marketplace, remittance_hour, status, quantity, receipt_id, dimension, customer FROM marketplace_records ORDER BY remittance_hour, id')).rows;
  const keys = (await database.pool.query<{ key: string }>('SELECT key FROM remittance_keys ORDER BY key')).rows.map((r) => r.key);
  return { rows, records, keys };
}
