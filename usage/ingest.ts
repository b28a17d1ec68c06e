// Ingestion: the one path by which usage enters the ledger, pushed (POST /v1/tallies, api/app.ts)
// or pulled (activities/usage-pull.ts). The tallies are validated (domain/tally.ts) and stored in
// one statement with their keys marked owing (db/tallies.ts); the sweep that closes the hour
// computes and sends what they owe.
//
// The two callers differ only in what an invalid tally does: the API refuses the whole batch
// (its sender can fix and re-send it), the pull leaves each invalid tally out with its reasons
// (a pulled hour has no sender to tell) and stores the rest.

import type { Database } from '../db/client';
import { storeTallies } from '../db/tallies';
import type { Catalog } from '../domain/catalog';
import { validateTallyBatch, type NormalizedTally, type TallyError, type TallyRefusal } from '../domain/tally';

export interface IngestDeps {
  database: Database;
  catalog: Catalog;
  time: { hourMs: number; maxUsageAgeDays?: number };
  now: () => number;
}

export interface IngestOptions {
  /** Leave out invalid tallies (each listed in `leftOut`) and store the others, instead of refusing the batch. */
  leaveOutInvalid?: boolean;
  /** Refuse the batch when a valid tally is not for this hour (epoch ms): a pull reads one hour. */
  onlyHour?: number;
}

export type IngestResult =
  | {
      ok: true;
      /** Stored, one per key and hour. */
      tallies: NormalizedTally[];
      /** Distinct keys among them. */
      keys: number;
      /** Items that replaced an earlier item of the same key and hour in the batch. */
      replaced: number;
      /** With leaveOutInvalid: the position of each tally left out, and why. */
      leftOut: Array<{ index: number; problems: string[] }>;
    }
  | {
      /** Nothing was stored. */
      ok: false;
      errors: TallyError[];
      omittedErrors: number;
      /** Tallies refused per counted reason (remit_tallies_refused_total). */
      refused: Partial<Record<TallyRefusal, number>>;
    };

export async function ingestTallies(deps: IngestDeps, body: unknown, o: IngestOptions = {}): Promise<IngestResult> {
  const opts = { catalog: deps.catalog, hourMs: deps.time.hourMs, nowMs: deps.now(), maxUsageAgeDays: deps.time.maxUsageAgeDays };
  const leftOut: Array<{ index: number; problems: string[] }> = [];
  if (o.leaveOutInvalid) {
    const all = validateTallyBatch(body, { ...opts, maxErrors: Number.POSITIVE_INFINITY });
    if (!all.ok) {
      // A problem of the batch itself (not an object, no list) leaves nothing to keep.
      if (all.errors.some((e) => e.index < 0)) return { ok: false, errors: all.errors, omittedErrors: all.omittedErrors, refused: all.refused ?? {} };
      const bad = new Map<number, string[]>();
      for (const e of all.errors) bad.set(e.index, [...(bad.get(e.index) ?? []), `${e.field}: ${e.message}`]);
      for (const [index, problems] of bad) leftOut.push({ index, problems });
      body = { tallies: (body as { tallies: unknown[] }).tallies.filter((_, i) => !bad.has(i)) };
    }
  }
  const v = validateTallyBatch(body, opts);
  if (!v.ok) return { ok: false, errors: v.errors, omittedErrors: v.omittedErrors, refused: v.refused ?? {} };
  if (o.onlyHour !== undefined) {
    const elsewhere = v.tallies.filter((t) => t.hourMs !== o.onlyHour);
    if (elsewhere.length > 0) {
      const message = `${elsewhere.length} tallies are for another hour than ${new Date(o.onlyHour).toISOString()}, e.g. ${new Date(elsewhere[0]!.hourMs).toISOString()}`;
      return { ok: false, errors: [{ index: -1, field: 'hour', message }], omittedErrors: 0, refused: {} };
    }
  }
  const keys = v.tallies.length > 0 ? (await storeTallies(deps.database, v.tallies)).keys.length : 0;
  return { ok: true, tallies: v.tallies, keys, replaced: v.replaced, leftOut };
}
