// What the ledger gauges of GET /metrics read (lib/metrics.ts exposes them). Read at scrape time,
// so every API replica reports the same truth from the one database.

import type { Database } from './client';
import { NOT_PARKED, countParkedKeys } from './parking';
import { NOT_REMITTED, STILL_TO_SEND } from '../domain/lifecycle';
import { rebills, sqlStatuses } from './reports';

/** A status list as an SQL literal list; the lists are the lifecycle's constants, never input. */

/** The usage pull's hour statuses (usage_pulls.status, checked by the schema). */
export const USAGE_PULL_STATUSES = ['pulling', 'pulled', 'failed'] as const;

export interface LedgerGauges {
  /** Remittances and their billing units, by marketplace and status (only the pairs that exist). */
  remittances: Array<{ marketplace: string; status: string; count: number; quantity: number }>;
  /** Keys with a change not yet computed, parked keys left out (the sweep does not start them). */
  owingKeys: number;
  parkedKeys: Array<{ marketplace: string; errorCode: string; n: number }>;
  /** Seconds since the oldest amount that no longer counts as remitted and was not billed again (0 when none). */
  unremittedOldestAgeSeconds: number;
  /** Seconds until the earliest deadline not yet passed of the records still to send, by marketplace and status. */
  deadlines: Array<{ marketplace: string; status: string; seconds: number }>;
  usagePulls: {
    /** Hours of the last 62 days by status, every status present (0 when none). */
    hours: Record<(typeof USAGE_PULL_STATUSES)[number], number>;
    rejectedHours: number;
    rejectedSeries: number;
    /** Start of the oldest hour still being read or retried, or null. */
    oldestPullingHour: Date | null;
  };
}

export async function readLedgerGauges(database: Database): Promise<LedgerGauges> {
  const q = database.pool;
  const remittances = await q.query<{ marketplace: string; status: string; count: number; quantity: string }>(
    'SELECT billing_provider AS marketplace, status, COUNT(*)::int AS count, COALESCE(SUM(bill),0)::text AS quantity FROM remittances GROUP BY 1, 2',
  );
  const owing = await q.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM remittance_keys WHERE change_seq > computed_seq AND ${NOT_PARKED}`);
  const oldest = await q.query<{ age: number | null }>(
    `SELECT EXTRACT(EPOCH FROM now() - MIN(r.updated_at))::float8 AS age FROM remittances r
     WHERE r.status IN ${sqlStatuses(NOT_REMITTED)} AND NOT EXISTS (SELECT 1 FROM remittances l WHERE ${rebills('l', 'r')})`,
  );
  // Amounts that can still be sent, and how soon they cannot: the alert pages before the window
  // closes, not after the records expired.
  const deadlines = await q.query<{ marketplace: string; status: string; seconds: number }>(
    `SELECT billing_provider AS marketplace, status, EXTRACT(EPOCH FROM MIN(deadline) - now())::float8 AS seconds FROM remittances
     WHERE status IN ${sqlStatuses(STILL_TO_SEND)} AND deadline > now() GROUP BY 1, 2`,
  );
  const recent = `hour > now() - interval '62 days'`;
  const pullsByStatus = await q.query<{ status: (typeof USAGE_PULL_STATUSES)[number]; n: number }>(`SELECT status, COUNT(*)::int AS n FROM usage_pulls WHERE ${recent} GROUP BY 1`);
  const rejected = await q.query<{ hours: number; series: number }>(
    `SELECT COUNT(*)::int AS hours, COALESCE(SUM(rejected), 0)::int AS series FROM usage_pulls WHERE ${recent} AND rejected > 0`,
  );
  const pulling = await q.query<{ hour: Date | null }>(`SELECT MIN(hour) AS hour FROM usage_pulls WHERE status = 'pulling'`);
  const hours = Object.fromEntries(USAGE_PULL_STATUSES.map((s) => [s, 0])) as LedgerGauges['usagePulls']['hours'];
  for (const row of pullsByStatus.rows) hours[row.status] = row.n;
  return {
    remittances: remittances.rows.map((r) => ({ ...r, quantity: Number(r.quantity) })),
    owingKeys: owing.rows[0]!.n,
    parkedKeys: await countParkedKeys(q),
    unremittedOldestAgeSeconds: oldest.rows[0]!.age ?? 0,
    deadlines: deadlines.rows,
    usagePulls: { hours, rejectedHours: rejected.rows[0]!.hours, rejectedSeries: rejected.rows[0]!.series, oldestPullingHour: pulling.rows[0]!.hour },
  };
}
