// Where usage comes from when remit pulls it instead of being sent it (docs/usage-source.md).
//
// A UsageSource answers one question: "what was the usage of every key in hour H?", as tallies
// in exactly the shape of the items of `POST /v1/tallies`, so that pulled usage goes through the
// same validation (domain/tally.ts) and the same store (db/tallies.ts) as pushed usage.
//
// A read can fail in two ways, and they are handled differently, so a source must say which:
// - UsageReadError (retryable): the source could not be read (network, timeout, 5xx, 429, a
//   query the server refused). Nothing is known about the hour; the pull is retried with backoff
//   until it succeeds. The original system dropped the hour here; remit never does.
// - rejected series (permanent, per series): the source answered, but part of what it said
//   cannot be billed (a value that is not a finite number >= 0, a series without the labels of a
//   key, an answer of the wrong shape). Reading again gives the same answer. One bad series must
//   not stop the hour for everyone (the original system skipped only the bad measurement): the
//   source returns them in `rejected`, every good series is stored, and the hour's usage_pulls row
//   keeps the reasons until an operator fixes the data and re-pulls.
// - UsageDataError (permanent, whole hour): for a source that cannot tell good from bad parts; the
//   hour is recorded as failed with these reasons and nothing of it is stored.

/** One tally as the API takes it (interface.md, `POST /v1/tallies`). */
export interface RawTally {
  orgId: string;
  productTag: string;
  metric: string;
  sla: string;
  usage: string;
  billingProvider: string;
  billingAccountId: string;
  /** ISO-8601 UTC instant of the start of the hour. */
  hour: string;
  /** Metric units, finite, >= 0. */
  value: number;
}

export interface HourToRead {
  /** Start of the hour, epoch ms (a multiple of hourLengthMs). */
  hourMs: number;
  /** Length of an hour in ms (REMIT_HOUR_SECONDS x 1000; 3,600,000 in production). */
  hourLengthMs: number;
}

/** What a source read for one hour. */
export interface HourRead {
  tallies: RawTally[];
  /** One human sentence per series that cannot be billed (it names the series and why). */
  rejected: string[];
}

export interface UsageSource {
  /** Short name for logs and the usage_pulls table ("prometheus"). */
  readonly name: string;
  /**
   * Every tally of the hour, and every series that cannot be billed. Tallies for the same key and
   * hour may repeat (the last one wins, as in a batch). Throws UsageReadError when the read may
   * succeed later, UsageDataError when the answer as a whole is unusable.
   */
  readHour(hour: HourToRead): Promise<HourRead>;
  /** Release connections. */
  close?(): Promise<void>;
}

/** Base of the two failures a source may throw; `retryable` tells them apart. */
export abstract class UsageSourceError extends Error {
  abstract readonly retryable: boolean;
}

/** The source could not be read; retrying may succeed. */
export class UsageReadError extends UsageSourceError {
  override name = 'UsageReadError';
  readonly retryable = true;
  constructor(
    message: string,
    /** HTTP status when the source answered with an error, for logs. */
    readonly status?: number,
    /** The source's own hint of when to retry, in ms (e.g. Retry-After). */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** The source answered with data that cannot be billed; reading again does not help. */
export class UsageDataError extends UsageSourceError {
  override name = 'UsageDataError';
  readonly retryable = false;
  constructor(
    /** Every problem found, one human sentence each. */
    readonly problems: string[],
  ) {
    super(`${problems.length} problem${problems.length === 1 ? '' : 's'} in the usage read: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? `; and ${problems.length - 5} more` : ''}`);
  }
}

export function isUsageSourceError(err: unknown): err is UsageSourceError {
  return err instanceof UsageSourceError;
}
