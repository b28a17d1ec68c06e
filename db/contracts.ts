// Contracts: create or replace, list. A new or changed contract marks every key of its org,
// marketplace, billing account and product owing, so usage waiting for it is billed. Every
// change is in the audit trail (who, the contract before and after), in the same transaction.

import type { Database } from './client';
import { markKeysOwing, recordAudit, withTransaction } from './ledger';
import { resumeKeys } from './parking';
import type { Contract } from '../domain/contracts';
import type { RemittanceKey } from '../domain/key';

const SELECT = `SELECT contract_id AS "contractId", org_id AS "orgId", billing_provider AS "billingProvider",
  billing_account_id AS "billingAccountId", product_tag AS "productTag", start_date AS "startDate", end_date AS "endDate",
  license_id AS "licenseId", aws, azure, metrics, updated_at AS "updatedAt" FROM contracts`;

function normalize(row: Record<string, unknown>): Contract & { updatedAt: string } {
  return {
    ...(row as unknown as Contract),
    startDate: new Date(row.startDate as string).toISOString(),
    endDate: row.endDate ? new Date(row.endDate as string).toISOString() : null,
    updatedAt: new Date(row.updatedAt as string).toISOString(),
  };
}

/** Who changes a contract: the credential's role (`contracts-token`, ...) and what the client says about itself. */
export interface ContractActor {
  actor: string;
  claimedBy?: string;
}

/**
 * Upsert; returns whether anything changed and the keys whose bill may now change. A put that
 * changes nothing is not audited: contract feeds re-send the same contracts all day.
 */
export async function putContract(database: Database, c: Contract, by: ContractActor): Promise<{ created: boolean; changed: boolean; keys: RemittanceKey[]; auditId?: number }> {
  return withTransaction(database, async (tx) => {
    const before = await tx.query(`${SELECT} WHERE contract_id = $1 FOR UPDATE`, [c.contractId]);
    const old = before.rows[0] ? normalize(before.rows[0]) : undefined;
    const same = old && canonical(comparable(old)) === canonical(comparable(c));
    if (same) return { created: false, changed: false, keys: [] };
    await tx.query(
      `INSERT INTO contracts (contract_id, org_id, billing_provider, billing_account_id, product_tag, start_date, end_date, license_id, aws, azure, metrics)
       VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
       ON CONFLICT (contract_id) DO UPDATE SET org_id=$2, billing_provider=$3, billing_account_id=$4, product_tag=$5, start_date=$6,
         end_date=$7, license_id=$8, aws=$9, azure=$10, metrics=$11, updated_at=now()`,
      [c.contractId, c.orgId, c.billingProvider, c.billingAccountId, c.productTag, c.startDate, c.endDate ?? null, c.licenseId ?? null,
        c.aws ? JSON.stringify(c.aws) : null, c.azure ? JSON.stringify(c.azure) : null, JSON.stringify(c.metrics ?? [])],
    );
    // Both the old and the new scope: moving a contract to another account changes both.
    const scopes = [c, ...(old ? [old] : [])];
    const keys: RemittanceKey[] = [];
    const seen = new Set<string>();
    for (const s of scopes) {
      const r = await tx.query<RemittanceKey & { key: string }>(
        `SELECT key, billing_provider AS "billingProvider", billing_account_id AS "billingAccountId", org_id AS "orgId",
                product_tag AS "productTag", metric, sla, usage
         FROM remittance_keys WHERE org_id=$1 AND billing_provider=$2 AND billing_account_id=$3 AND product_tag=$4`,
        [s.orgId, s.billingProvider, s.billingAccountId, s.productTag],
      );
      for (const row of r.rows) {
        if (seen.has(row.key)) continue;
        seen.add(row.key);
        const { key: _k, ...k } = row;
        keys.push(k);
      }
    }
    await markKeysOwing(tx, [...seen]);
    await resumeKeys(tx, [...seen]); // a contract change may be what a parked key waited for
    const { updatedAt: _u, ...previous } = old ?? { updatedAt: undefined };
    const auditId = await recordAudit(tx, {
      actor: by.actor,
      action: 'put-contract',
      request: { contractId: c.contractId, contract: c, ...(by.claimedBy ? { claimedBy: by.claimedBy } : {}) },
      result: { created: !old, keysAffected: keys.length, previous: old ? previous : null },
    });
    return { created: !old, changed: true, keys, auditId };
  });
}

/** JSON with object keys sorted: jsonb gives the stored contract's keys back in its own order. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x));
}

function comparable(c: Contract) {
  return [c.orgId, c.billingProvider, c.billingAccountId, c.productTag, c.startDate, c.endDate ?? null, c.licenseId ?? null, c.aws ?? null, c.azure ?? null, c.metrics ?? []];
}

export async function listContracts(database: Database, f: { orgId?: string; billingAccountId?: string; cursor?: string; limit: number }) {
  const r = await database.pool.query(
    `${SELECT} WHERE ($1::text IS NULL OR org_id = $1) AND ($2::text IS NULL OR billing_account_id = $2) AND contract_id > $3
     ORDER BY contract_id LIMIT $4`,
    [f.orgId ?? null, f.billingAccountId ?? null, f.cursor ?? '', f.limit + 1],
  );
  const items = r.rows.slice(0, f.limit).map(normalize);
  return { items, nextCursor: r.rows.length > f.limit ? items[items.length - 1]!.contractId : null };
}
