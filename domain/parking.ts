// Parking a key (issue 9, 5): a key whose records the marketplace keeps rejecting for the same
// reason (not subscribed, subscription terminated, ...) would otherwise be sent a record every
// hour for ever, because its failed amount stays owed and the sweep bills it again. Marketplaces
// ask sellers not to retry what cannot succeed, and the noise hides real failures. So after
// `threshold` terminal rejections in a row with the same error code the key is parked: nothing
// more is sent for it, its amount stays owed, and it resumes when an operator retries it or a
// contract change touches it (db/parking.ts). Pure: unit tested in test/unit/parking.test.ts.

/** Default of REMIT_PARK_AFTER_REJECTIONS. */
export const DEFAULT_PARK_AFTER_REJECTIONS = 3;

/** Error code of a record not sent because its key is parked. */
export const KEY_PARKED = 'key_parked';

export interface RejectionCount {
  /** Error code of the latest terminal rejections in a row; null after a success or a resume. */
  code: string | null;
  /** How many in a row. */
  count: number;
}

/**
 * Rejections that say nothing about the customer and never park: a duplicate record is two of our
 * own keys colliding on one customer, dimension and hour (docs/design.md, known gaps), which a
 * later hour without the collision bills by itself.
 */
export const NEVER_PARKS: ReadonlySet<string> = new Set(['marketplace_duplicate_record']);

/**
 * The count after one more terminal rejection with `code`, and whether the key is to be parked
 * now. Another code starts a new run: parking is for rejections of the same kind, which a retry
 * evidently does not cure. `threshold` 0 never parks.
 */
export function afterRejection(prev: RejectionCount, code: string, threshold: number): RejectionCount & { park: boolean } {
  const count = prev.code === code ? prev.count + 1 : 1;
  return { code, count, park: threshold > 0 && count >= threshold && !NEVER_PARKS.has(code) };
}

/** Why the key is parked, for the key's state, the report and the held records. */
export function parkReason(code: string, count: number, lastReason: string): string {
  return `${count} records in a row were rejected with ${code} (last: ${lastReason})`;
}

/** The reason of a record that is not sent because its key is parked. */
export function heldReason(parkedAt: string, parkedReason: string, bill: number, dimension: string | null): string {
  return (
    `Not sent: this key is parked since ${parkedAt} because ${parkedReason}. Its ${bill} ${dimension ?? 'billing unit(s)'} stay owed. ` +
    'Fix the cause (e.g. the customer subscribes), then retry the key (POST /v1/remittances/retry, `remit retry`) or change its contract: ' +
    'that resumes it and the next hour bills everything owed.'
  );
}
