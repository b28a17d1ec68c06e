// Late usage of earlier months (issue 9, 1): usage of any month before the one it arrives in is
// billed in the current hour's record, as its own month part against that month's totals and
// contracts, up to REMIT_MAX_USAGE_AGE_DAYS (domain/tally.ts). storeTallies records such months
// on the key (remittance_keys.late_periods, in the same statement that marks the key owing); the
// key's next computation looks at them and forgets them. So a computation looks only at months
// that can still owe something, never at the key's whole history.

import type { PoolClient } from 'pg';

/**
 * SQL selecting the key's late months up to (including) `monthParam`, one row each as `period`;
 * later months are not due at that hour. Both arguments are placeholders ('$1', '$4').
 */
export function latePeriodsOf(keyParam: string, monthParam: string): string {
  return `p FROM remittance_keys, unnest(late_periods) AS p WHERE key = ${keyParam} AND p <= ${monthParam}`;
}

/**
 * After a computation of an hour of `month`, under the key's lock: it billed every late month
 * before `month` in full (their totals are taken through their last hour), so they are forgotten.
 * `month` itself stays until a computation of a later month: this one saw it only up to its hour.
 * A store waiting on the key's lock adds its months after this commits, so none is lost.
 */
export async function forgetLatePeriods(c: PoolClient, key: string, month: string): Promise<void> {
  await c.query(
    `UPDATE remittance_keys SET late_periods = ARRAY(SELECT p FROM unnest(late_periods) AS p WHERE p >= $2 ORDER BY p)
     WHERE key = $1 AND late_periods <> '{}' AND EXISTS (SELECT 1 FROM unnest(late_periods) AS p WHERE p < $2)`,
    [key, month],
  );
}
