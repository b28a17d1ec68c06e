// The remittance lifecycle (docs/design.md, "Remittance lifecycle") as data. The ledger's
// updates are guarded by it (`WHERE status = ANY(from(to))`), so a late or duplicated event can
// never move a remittance backwards: an accepted record is never marked failed, a voided one
// never succeeds, an in-flight one is never voided.

import type { RemittanceStatus } from '../workflows/definitions';

/** What a computation can produce. */
export const COMPUTED: readonly RemittanceStatus[] = ['Pending', 'NothingDue', 'Gratis', 'WaitingForContract', 'Failed'];

/** Statuses an operator retry / recalculate may recompute in place (the hour was never accepted). */
export const RECOMPUTABLE: readonly RemittanceStatus[] = ['Failed', 'NothingDue', 'WaitingForContract'];

export const TRANSITIONS: Readonly<Record<RemittanceStatus, readonly RemittanceStatus[]>> = {
  Pending: ['Sending', 'Failed', 'Expired'],
  Sending: ['Sending', 'Succeeded', 'Failed', 'Expired', 'Unconfirmed'],
  Succeeded: ['Voided'],
  Gratis: ['Voided'],
  Failed: [...COMPUTED, 'Voided'],
  NothingDue: COMPUTED,
  WaitingForContract: COMPUTED,
  Expired: [],
  Voided: [],
  // Counted as remitted (it may be billed); an operator voids it once the marketplace's report
  // shows it missing, and a later read-back may still confirm it.
  Unconfirmed: ['Succeeded', 'Voided'],
};

/** Amounts in these statuses no longer count as remitted: a later hour bills them again. */
export const NOT_REMITTED: readonly RemittanceStatus[] = ['Failed', 'Expired', 'Voided'];

export function canMove(from: RemittanceStatus, to: RemittanceStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Every status a remittance may be in for it to move to `to`. */
export function sourcesOf(to: RemittanceStatus): RemittanceStatus[] {
  return (Object.keys(TRANSITIONS) as RemittanceStatus[]).filter((from) => canMove(from, to));
}

/**
 * A later remittance of the key in one of these, with a bill, carries an amount that no longer
 * counted (NOT_REMITTED) toward the marketplace: pending, in flight, accepted or free.
 */
export const CARRIES_AMOUNT: readonly RemittanceStatus[] = ['Pending', 'Sending', 'Succeeded', 'Gratis'];

/** Records still to be sent before their acceptance deadline (remit_remittance_deadline_seconds). */
export const STILL_TO_SEND: readonly RemittanceStatus[] = ['Pending', 'Sending', 'Failed'];
