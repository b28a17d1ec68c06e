// Parked keys (domain/parking.ts says why). The state lives on remittance_keys (parked_at,
// parked_reason, and the run of terminal rejections: rejection_code, rejections). The ledger and
// the operations call in here with one line each:
// - markOutcome: countRejection after a terminal Failed; markSucceededMany clears the run after a success;
// - computeGroup / recomputeRecord: holdIfParked turns a record that would be sent into Failed `key_parked`
//   (its parts keep the amount, which stays owed, and nothing reaches the marketplace), and an
//   operator's recomputation (retry / recalculate signal) resumes the key;
// - findOwingKeys: NOT_PARKED keeps the sweep from starting parked keys;
// - retryRemittances (API, CLI) and putContract: resumeKeys.

import type { PoolClient } from 'pg';
import type { Database } from './client';
import { parkAfterRejectionsFromEnv } from '../config/env';
import { KEY_PARKED, afterRejection, heldReason, parkReason } from '../domain/parking';
import type { RecordDecision } from '../domain/remittance';

type Queryable = PoolClient | Database['pool'];

let threshold: number | undefined;

/**
 * REMIT_PARK_AFTER_REJECTIONS (default 3; 0 never parks), read once from the environment (loadConfig
 * refuses a bad value at start-up): markOutcome's callers need no new argument.
 */
function parkAfterRejections(): number {
  threshold ??= parkAfterRejectionsFromEnv();
  return threshold;
}

/** SQL condition on remittance_keys: the key is not parked. */
export const NOT_PARKED = 'parked_at IS NULL';

/** SQL of a remittance's key state when parked ({since, reason, errorCode}), else null; `keyColumn` names the key. */
export function parkedJson(keyColumn: string): string {
  return `(SELECT json_build_object('since', pk.parked_at, 'reason', pk.parked_reason, 'errorCode', pk.rejection_code)
     FROM remittance_keys pk WHERE pk.key = ${keyColumn} AND pk.parked_at IS NOT NULL)`;
}

/** One more terminal rejection of each key (its record just became Failed); parks at the threshold. */
export async function countRejection(c: PoolClient, keys: string[], o: { errorCode: string; reason: string }): Promise<void> {
  for (const key of keys) {
    const r = await c.query<{ code: string | null; count: number; parked: boolean }>(
      'SELECT rejection_code AS code, rejections AS count, parked_at IS NOT NULL AS parked FROM remittance_keys WHERE key = $1 FOR UPDATE',
      [key],
    );
    const prev = r.rows[0];
    if (!prev) continue;
    const next = afterRejection(prev, o.errorCode, parkAfterRejections());
    await c.query(
      `UPDATE remittance_keys SET rejection_code = $2, rejections = $3,
         parked_at = CASE WHEN $4 AND parked_at IS NULL THEN now() ELSE parked_at END,
         parked_reason = CASE WHEN $4 AND parked_at IS NULL THEN $5 ELSE parked_reason END
       WHERE key = $1`,
      [key, next.code, next.count, next.park && !prev.parked, parkReason(o.errorCode, next.count, o.reason)],
    );
  }
}

/**
 * A decision that would send a record, held back when the key is parked (see heldReason). A
 * recomputation an operator asked for (mode `retry`: the retry or recalculate signal, also sent by
 * bulk replay and `remit replay`) resumes the key instead; a dry run changes nothing.
 */
export async function holdIfParked(c: PoolClient, key: string, d: RecordDecision, mode: 'initial' | 'retry', dryRun: boolean): Promise<RecordDecision> {
  if (mode === 'retry' && !dryRun) {
    await resumeKeys(c, [key]);
    return d;
  }
  if (d.status !== 'Pending') return d;
  const r = await c.query<{ at: Date; reason: string }>('SELECT parked_at AS at, parked_reason AS reason FROM remittance_keys WHERE key = $1 AND parked_at IS NOT NULL', [key]);
  return holdParked(d, r.rows[0] ?? null);
}

/** holdIfParked's rule, for a caller that already read the key's parked state (parked_at, parked_reason). */
export function holdParked(d: RecordDecision, parked: { at: Date | string; reason: string } | null): RecordDecision {
  if (d.status !== 'Pending' || !parked) return d;
  return { ...d, status: 'Failed', errorCode: KEY_PARKED, reason: heldReason(new Date(parked.at).toISOString(), parked.reason, d.bill, d.dimension) };
}

/**
 * Resume keys (an operator retry, a contract change): not parked any more, the run of rejections
 * forgotten. The callers mark the keys owing, so the sweep or the current hour bills what they owe.
 * Returns the keys that were parked.
 */
export async function resumeKeys(q: Queryable, keys: string[]): Promise<string[]> {
  if (keys.length === 0) return [];
  const r = await q.query<{ key: string; was: boolean }>(
    `UPDATE remittance_keys k SET parked_at = NULL, parked_reason = NULL, rejection_code = NULL, rejections = 0
     FROM (SELECT key, parked_at IS NOT NULL AS was FROM remittance_keys WHERE key IN (SELECT unnest($1::text[])) ORDER BY key FOR UPDATE) o
     WHERE k.key = o.key AND (k.parked_at IS NOT NULL OR k.rejections > 0) RETURNING k.key, o.was`,
    [keys],
  );
  return r.rows.filter((x) => x.was).map((x) => x.key);
}

/** Parked keys per marketplace and error code (the remit_parked_keys gauge). */
export async function countParkedKeys(q: Queryable): Promise<Array<{ marketplace: string; errorCode: string; n: number }>> {
  const r = await q.query<{ marketplace: string; errorCode: string; n: number }>(
    `SELECT billing_provider AS marketplace, COALESCE(rejection_code, '') AS "errorCode", COUNT(*)::int AS n
     FROM remittance_keys WHERE parked_at IS NOT NULL GROUP BY 1, 2`,
  );
  return r.rows;
}
