// Storing tallies: one statement for a whole batch (10,000+ tallies), all-or-nothing.
// A re-sent tally replaces its hour's value (a correction); its key is marked owing in the same
// transaction, so usage can never be stored without the sweep knowing a computation is due.

import type { Database } from './client';
import { keyString, type RemittanceKey } from '../domain/key';
import { monthOf } from '../domain/time';

export interface StoredTally {
  key: RemittanceKey;
  hourMs: number;
  /** Exact decimal string, metric units. */
  value: string;
}

const DEADLOCK = '40P01';

export async function storeTallies(database: Database, tallies: StoredTally[]): Promise<{ keys: RemittanceKey[] }> {
  const cols: string[][] = [[], [], [], [], [], [], [], [], [], [], []];
  const keys = new Map<string, RemittanceKey>();
  for (const t of tallies) {
    const k = keyString(t.key);
    keys.set(k, t.key);
    const row = [k, t.key.billingProvider, t.key.billingAccountId, t.key.orgId, t.key.productTag, t.key.metric, t.key.sla, t.key.usage, new Date(t.hourMs).toISOString(), monthOf(t.hourMs), t.value];
    for (let i = 0; i < row.length; i++) cols[i]!.push(row[i]!);
  }
  const sql = `
    WITH input AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::text[], $11::numeric[])
        AS t(key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, hour, period, value)
    ), late AS (
      -- Usage of a month before the current one: the next computation of the key must look at
      -- that month, whichever hour it computes (ledger gatherPeriods).
      SELECT key, array_agg(DISTINCT period ORDER BY period) AS periods FROM input
      WHERE period < to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM') GROUP BY key
    ), touched AS (
      INSERT INTO remittance_keys AS k (key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, change_seq, computed_seq, late_periods)
      SELECT DISTINCT ON (i.key) i.key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, 1, 0, COALESCE(l.periods, '{}')
      FROM input i LEFT JOIN late l ON l.key = i.key ORDER BY i.key
      ON CONFLICT (key) DO UPDATE SET change_seq = k.change_seq + 1, last_change_at = now(),
        late_periods = CASE WHEN EXCLUDED.late_periods = '{}' THEN k.late_periods
                            ELSE ARRAY(SELECT DISTINCT p FROM unnest(k.late_periods || EXCLUDED.late_periods) AS p ORDER BY p) END
      RETURNING 1
    )
    INSERT INTO tallies AS t (key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, hour, period, value)
    SELECT key, billing_provider, billing_account_id, org_id, product_tag, metric, sla, usage, hour, period, value FROM input
    ON CONFLICT (key, hour) DO UPDATE SET value = EXCLUDED.value, received_at = now()`;
  // Two batches touching the same keys lock them in key order; a deadlock is still retried.
  for (let attempt = 1; ; attempt++) {
    try {
      await database.pool.query(sql, cols);
      return { keys: [...keys.values()] };
    } catch (err) {
      if ((err as { code?: string }).code !== DEADLOCK || attempt >= 5) throw err;
    }
  }
}
