// What the marketplace gateway asks the ledger about its records.

import type { Database } from './client';

/**
 * Whether a record of `marketplace` was made with something to send but not yet handed to a
 * batcher (its workflow is starting). Only recent ones: a record left Pending by a dead workflow
 * must not slow every batch down.
 */
export async function recentPendingRecord(database: Database, marketplace: string): Promise<boolean> {
  const q = await database.pool.query(
    `SELECT 1 FROM marketplace_records WHERE status = 'Pending' AND marketplace = $1 AND updated_at > now() - interval '5 minutes' LIMIT 1`,
    [marketplace],
  );
  return q.rowCount! > 0;
}
