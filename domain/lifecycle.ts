// The remittance statuses and their lifecycle (docs/design.md, "Remittance lifecycle") as data:
// the one vocabulary the ledger, the API, the search attribute, the CLI, the metrics and the
// audit use. The ledger's updates are guarded by it (`WHERE status = ANY(from(to))`), so a late
// or duplicated event can never move a remittance backwards: an accepted record is never marked
// failed, a voided one never succeeds, an in-flight one is never voided. Pure: no imports.

/** What a remittance (and a marketplace record) can be, spelled as the database and the `RemittanceStatus` search attribute spell it. */
export const REMITTANCE_STATUSES = [
  'Pending',
  'Sending',
  'Succeeded',
  'Failed',
  'Expired',
  'WaitingForContract',
  'NothingDue',
  'Gratis',
  'Voided',
  /** Sent, but the marketplace's answer never came back and its window closed: counted, flagged. */
  'Unconfirmed',
] as const;
export type RemittanceStatus = (typeof REMITTANCE_STATUSES)[number];

export function isRemittanceStatus(v: unknown): v is RemittanceStatus {
  return typeof v === 'string' && (REMITTANCE_STATUSES as readonly string[]).includes(v);
}

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

/**
 * Amounts in these statuses no longer count as remitted: a later hour bills them again
 * (billing.md, E8). Everything else counts, Unconfirmed included (a send whose outcome we could
 * not learn): counting it risks billing late, which the audit sees and an operator fixes by
 * voiding; not counting it risks billing twice, which a marketplace cannot undo.
 */
export const NOT_REMITTED: readonly RemittanceStatus[] = ['Failed', 'Expired', 'Voided'];

/** Amounts in these statuses count as remitted (billed, in flight, free, or possibly billed). */
export const COUNTS_AS_REMITTED: readonly RemittanceStatus[] = REMITTANCE_STATUSES.filter((s) => !NOT_REMITTED.includes(s));

/**
 * The statuses as a report totals them, each in exactly one group: what the marketplace accepted,
 * what was sent but never confirmed (counted, flagged for the audit), what is still being sent,
 * what a later hour of the key bills (not remitted, or waiting for a contract), what owes nothing.
 */
export const STATUS_GROUPS = {
  remitted: ['Succeeded'],
  unconfirmed: ['Unconfirmed'],
  inFlight: ['Pending', 'Sending'],
  billedLater: ['Failed', 'Expired', 'Voided', 'WaitingForContract'],
  notDue: ['NothingDue', 'Gratis'],
} as const satisfies Record<string, readonly RemittanceStatus[]>;

/** Statuses whose remittance must say why (a reason a person reads). */
export const NEEDS_REASON: readonly RemittanceStatus[] = [...STATUS_GROUPS.billedLater, ...STATUS_GROUPS.unconfirmed];

/** What an operator reset voids: what was recorded as remitted, never what is still in flight (its send may yet be accepted). */
export const RESETTABLE: readonly RemittanceStatus[] = ['Succeeded', 'Gratis', 'Unconfirmed'];

/** What an operator retry may be aimed at: amounts that failed or expired. */
export const RETRYABLE = ['Failed', 'Expired'] as const satisfies readonly RemittanceStatus[];

export function canMove(from: RemittanceStatus, to: RemittanceStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Every status a remittance may be in for it to move to `to`. */
export function sourcesOf(to: RemittanceStatus): RemittanceStatus[] {
  return (Object.keys(TRANSITIONS) as RemittanceStatus[]).filter((from) => canMove(from, to));
}

/** Records still to be sent before their acceptance deadline (remit_remittance_deadline_seconds). */
export const STILL_TO_SEND: readonly RemittanceStatus[] = ['Pending', 'Sending', 'Failed'];
