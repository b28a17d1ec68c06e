// Reading the audit trail (GET /v1/audit): operator actions and contract changes, newest first.
// Entries are written by recordAudit (db/ledger.ts) in the transaction of the change they record.

import type { Database } from './client';

export interface AuditEntry {
  id: number;
  at: Date;
  actor: string;
  action: string;
  dryRun: boolean;
  request: unknown;
  result: unknown;
}

/** One page, newest first; `before` is the id the previous page ended on (exclusive). */
export async function listAuditTrail(database: Database, page: { before?: number; limit: number }): Promise<{ items: AuditEntry[]; nextCursor: string | null }> {
  const r = await database.pool.query<AuditEntry>(
    `SELECT id, at, actor, action, dry_run AS "dryRun", request, result FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2`,
    [page.before ?? Number.MAX_SAFE_INTEGER, page.limit + 1],
  );
  const items = r.rows.slice(0, page.limit);
  return { items, nextCursor: r.rows.length > page.limit ? String(items[items.length - 1]!.id) : null };
}
