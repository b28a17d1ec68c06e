// `remit audit`: checks the three invariants of interface.md against the ledger and, where they
// can be read (the emulators' admin API, Azure's usage API), the marketplaces' own records.
//   1. nothing lost   — once quiet, what the marketplace accepted equals what the rules say is owed
//   2. nothing twice  — at most one accepted record per marketplace/customer/dimension/hour, every
//                       accepted record is one succeeded record of the ledger (whose quantity is
//                       the sum of its remittances' bills), no self-caused duplicates
//   3. nothing hidden — every amount not (yet) accepted has a status and a reason

import type { Database } from '../db/client';
import { readLedgerForAudit, type AuditLedgerRow } from '../db/audit';
import { previewRemittance, type TimeSettings } from '../db/ledger';
import type { Catalog } from '../domain/catalog';
import { parseKeyString } from '../domain/key';
import { NEEDS_REASON, STATUS_GROUPS, type RemittanceStatus } from '../domain/lifecycle';
import { hourStart } from '../domain/time';

/** One record a marketplace says it accepted. */
export interface MarketplaceRecord {
  marketplace: 'aws' | 'azure';
  receiptId: string;
  customer: string;
  dimension: string;
  quantity: number;
  /** Start of the hour slot the record was accepted in, epoch ms. */
  hourMs: number;
}

export interface Violation {
  invariant: 'nothing-lost' | 'nothing-twice' | 'nothing-hidden';
  message: string;
  remittanceId?: string;
  /** A marketplace record of the ledger. */
  recordId?: string;
  key?: string;
}

export interface AuditReport {
  ok: boolean;
  checked: { keys: number; remittances: number; records: number; marketplaceRecords: number | null };
  violations: Violation[];
}

export function customerIdOf(c: AuditLedgerRow['customer']): string | undefined {
  if (!c) return undefined;
  return c.marketplace === 'aws' ? c.customerAwsAccountId : c.resourceId;
}

export async function auditLedger(d: {
  database: Database;
  catalog: Catalog;
  time: TimeSettings;
  /** Per marketplace, the records it accepted; undefined where they cannot be read. */
  marketplaceRecords?: Partial<Record<'aws' | 'azure', MarketplaceRecord[]>>;
  nowMs?: number;
}): Promise<AuditReport> {
  const violations: Violation[] = [];
  const nowMs = d.nowMs ?? Date.now();
  const { rows, records: ledgerRecords, keys } = await readLedgerForAudit(d.database);

  // 3. Nothing hidden.
  for (const r of rows) {
    if (NEEDS_REASON.includes(r.status) && !r.reason) {
      violations.push({ invariant: 'nothing-hidden', message: `${r.status} remittance without a reason`, remittanceId: r.id, key: r.key });
    }
    if (r.status === 'Failed' && !r.error_code) violations.push({ invariant: 'nothing-hidden', message: 'failed remittance without an error code', remittanceId: r.id, key: r.key });
    if (r.status === 'Succeeded' && !r.receipt_id) violations.push({ invariant: 'nothing-hidden', message: 'succeeded remittance without a marketplace receipt', remittanceId: r.id, key: r.key });
    if (r.error_code === 'marketplace_duplicate_record') {
      violations.push({ invariant: 'nothing-twice', message: 'the marketplace rejected a record as a duplicate', remittanceId: r.id, key: r.key });
    }
  }

  // 1. Nothing lost: nothing in flight, and recomputing every key now bills nothing.
  for (const r of rows) {
    if ((STATUS_GROUPS.inFlight as readonly RemittanceStatus[]).includes(r.status)) violations.push({ invariant: 'nothing-lost', message: `remittance still ${r.status}: the system is not quiet`, remittanceId: r.id, key: r.key });
  }
  const hour = hourStart(nowMs, d.time.hourMs);
  for (const k of keys) {
    const p = await previewRemittance(d.database, { key: parseKeyString(k), remittanceHourMs: hour, catalog: d.catalog, time: d.time, nowMs });
    if (p.bill > 0) violations.push({ invariant: 'nothing-lost', message: `${p.bill} billing unit(s) owed but not remitted`, key: k });
  }

  // 2. Nothing twice, and ledger and marketplace agree.
  let recordCount: number | null = null;
  if (d.marketplaceRecords) {
    recordCount = 0;
    for (const [mp, records] of Object.entries(d.marketplaceRecords) as Array<['aws' | 'azure', MarketplaceRecord[]]>) {
      recordCount += records.length;
      const slots = new Map<string, MarketplaceRecord>();
      for (const rec of records) {
        const slot = `${rec.customer}|${rec.dimension}|${rec.hourMs}`;
        if (slots.has(slot)) violations.push({ invariant: 'nothing-twice', message: `${mp} accepted two records for ${slot}` });
        slots.set(slot, rec);
      }
      const byReceipt = new Map(records.map((r) => [r.receiptId, r]));
      const seen = new Set<string>();
      for (const r of ledgerRecords.filter((x) => x.marketplace === mp && x.status === 'Succeeded')) {
        const members = rows.filter((x) => x.record_id === r.id);
        // Every remittance of it voided (an operator reset: the marketplace lost it) explains nothing
        // any more: the marketplace's record, if it has one, is then one the ledger cannot explain.
        if (!members.some((x) => x.status !== 'Voided')) continue;
        let rec = r.receipt_id ? byReceipt.get(r.receipt_id) : undefined;
        // A send confirmed only by reading the usage back (Azure, after a lost answer) has a
        // receipt naming the slot, `usageEvents:<resource>|<dimension>|<hour>`, not the event id.
        if (!rec && r.receipt_id?.startsWith('usageEvents:')) rec = slots.get(`${customerIdOf(r.customer)}|${r.dimension}|${new Date(r.remittance_hour).getTime()}`);
        if (!rec) {
          violations.push({ invariant: 'nothing-lost', message: `succeeded record whose receipt ${r.receipt_id} the marketplace does not have`, recordId: r.id });
          continue;
        }
        // What the ledger says was billed is what its remittances add up to (each key's bill).
        seen.add(rec.receiptId);
        const quantity = members.reduce((sum, x) => sum + x.bill, 0);
        const hourMs = new Date(r.remittance_hour).getTime();
        if (rec.quantity !== quantity || quantity !== r.quantity || rec.dimension !== r.dimension || rec.customer !== customerIdOf(r.customer) || rec.hourMs !== hourMs) {
          violations.push({ invariant: 'nothing-twice', message: `ledger and marketplace disagree for receipt ${rec.receiptId}: ledger ${quantity} ${r.dimension} ${customerIdOf(r.customer)} @${new Date(hourMs).toISOString()}, marketplace ${rec.quantity} ${rec.dimension} ${rec.customer} @${new Date(rec.hourMs).toISOString()}; the ledger's record says ${r.quantity}`, recordId: r.id, ...(members.length === 1 ? { remittanceId: members[0]!.id, key: members[0]!.key } : {}) });
        }
      }
      // An unconfirmed send (its answer lost until its window closed) is what the marketplace
      // says it is: there, it was billed once; missing, it still owes and an operator must reset it.
      for (const r of ledgerRecords.filter((x) => x.marketplace === mp && x.status === 'Unconfirmed')) {
        const rec = slots.get(`${customerIdOf(r.customer)}|${r.dimension}|${new Date(r.remittance_hour).getTime()}`);
        if (rec && rec.quantity === r.quantity) seen.add(rec.receiptId);
        else {
          // Named per remittance, so that the reset (by org and metric) can be aimed at each.
          for (const x of rows.filter((m) => m.record_id === r.id && m.status === 'Unconfirmed')) {
            violations.push({ invariant: 'nothing-lost', message: `unconfirmed record the marketplace does not have (${r.quantity} ${r.dimension}; this remittance ${x.bill}): reset this hour to bill it again`, recordId: r.id, remittanceId: x.id, key: x.key });
          }
        }
      }
      for (const rec of records) {
        if (!seen.has(rec.receiptId)) {
          violations.push({ invariant: 'nothing-twice', message: `${mp} billed ${rec.quantity} ${rec.dimension} for ${rec.customer} @${new Date(rec.hourMs).toISOString()} (receipt ${rec.receiptId}) with no succeeded remittance in the ledger` });
        }
      }
    }
  }
  return { ok: violations.length === 0, checked: { keys: keys.length, remittances: rows.length, records: ledgerRecords.length, marketplaceRecords: recordCount }, violations };
}
