// Late usage of earlier months (issue 9, 1): usage of any month before the one it arrives in is
// billed in the current hour's record, as its own month part against that month's totals and
// contracts, up to REMIT_MAX_USAGE_AGE_DAYS (domain/tally.ts). storeTallies records such months
// on the key (remittance_keys.late_periods, in the same statement that marks the key owing); the
// key's next computation looks at them and forgets them. So a computation looks only at months
// that can still owe something, never at the key's whole history.

import type { PoolClient } from 'pg';

/**
 * SQL selecting the keys' late months up to (including) `monthParam`, one row each as
 * (key, period); later months are not due at that hour. `keyCondition` is what the key must equal
 * ('$1', 'ANY($1::text[])'), `monthParam` a placeholder ('$4').
 */
export function latePeriodsOf(keyCondition: string, monthParam: string): string {
  return `key, p AS period FROM remittance_keys, unnest(late_periods) AS p WHERE key = ${keyCondition} AND p <= ${monthParam}`;
}

/**
 * After a computation of an hour of `month`, under the key's lock: it billed every late month
 * before `month` in full (their totals are taken through their last hour), so they are forgotten.
 * `month` itself stays until a computation of a later month: this one saw it only up to its hour.
 * A store waiting on the key's lock adds its months after this commits, so none is lost.
 */
export async function forgetLatePeriodsMany(c: PoolClient, keys: string[], month: string): Promise<void> {
  if (keys.length === 0) return;
  await c.query(
    `UPDATE remittance_keys SET late_periods = ARRAY(SELECT p FROM unnest(late_periods) AS p WHERE p >= $2 ORDER BY p)
     WHERE key = ANY($1::text[]) AND late_periods <> '{}' AND EXISTS (SELECT 1 FROM unnest(late_periods) AS p WHERE p < $2)`,
    [keys, month],
  );
}

export async function forgetLatePeriods(c: PoolClient, key: string, month: string): Promise<void> {
  await forgetLatePeriodsMany(c, [key], month);
}
