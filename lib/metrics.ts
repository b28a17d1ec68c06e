// Prometheus text exposition without a client library: counters kept in memory, and the ledger
// gauges read from the database at scrape time (so every process reports the same truth).
//
// Replicas: every API replica reports the same ledger gauges (they are read from the one
// database), so rules and dashboards take them once with `max by (...)` over instances, never
// `sum` (which counts them once per replica). Counters (requests, tallies ingested) are each
// replica's own and are summed. See docs/operations.md "Metrics and replicas".

import type { Database } from '../db/client';
import { MARKETPLACES } from '../domain/key';
import { REMITTANCE_STATUSES } from '../domain/lifecycle';
import { NOT_PARKED, countParkedKeys } from '../db/parking';

type Labels = Record<string, string>;

function fmt(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

const HELP: Record<string, [string, 'counter' | 'gauge']> = {
  remit_api_requests_total: ['HTTP requests served, by route, method and status.', 'counter'],
  remit_tallies_ingested_total: ['Tallies accepted by POST /v1/tallies.', 'counter'],
  remit_tallies_refused_total: ['Tallies refused by POST /v1/tallies, by reason: too_old (older than REMIT_MAX_USAGE_AGE_DAYS), rollup (an _ANY roll-up row).', 'counter'],
  remit_marketplace_calls_total: ['Marketplace calls, by marketplace and outcome.', 'counter'],
  remit_remittances: ['Remittances in the ledger, by marketplace and status.', 'gauge'],
  remit_remittance_quantity: ['Billing units in the ledger, by marketplace and status.', 'gauge'],
  remit_owing_keys: ['Keys with a change not yet computed (the next sweep starts them).', 'gauge'],
  remit_parked_keys: ['Keys parked after repeated terminal rejections of the same kind, by marketplace and error code: nothing is sent for them, their amount stays owed.', 'gauge'],
  remit_unremitted_oldest_age_seconds: ['Age of the oldest failed, expired or voided amount not yet billed again.', 'gauge'],
  remit_remittance_deadline_seconds: ['Seconds until the earliest acceptance deadline of the records still unsent (Pending, Sending, Failed) whose deadline has not passed, by marketplace and status.', 'gauge'],
  remit_usage_pull_hours: ['Hours of the usage pull of the last 62 days, by status (pulling: being read or retrying; pulled; failed: nothing could be stored).', 'gauge'],
  remit_usage_pull_rejected_hours: ['Pulled hours of the last 62 days whose last read left out series that cannot be billed (re-pull them once the source is fixed).', 'gauge'],
  remit_usage_pull_rejected_series: ['Series left out, summed over remit_usage_pull_rejected_hours.', 'gauge'],
  remit_usage_pull_oldest_pulling_age_seconds: ['Seconds since the end of the oldest hour still being read or retried (0 when none).', 'gauge'],
};

export class Metrics {
  /** Length of an hour in ms (REMIT_HOUR_SECONDS scales it in tests and demos). */
  constructor(private readonly hourMs = 3_600_000) {}

  private counters = new Map<string, Map<string, number>>();
  private gauges = new Map<string, Map<string, number>>();

  inc(name: string, labels: Labels = {}, by = 1): void {
    const m = this.counters.get(name) ?? new Map<string, number>();
    this.counters.set(name, m);
    const k = fmt(labels);
    m.set(k, (m.get(k) ?? 0) + by);
  }

  set(name: string, labels: Labels, value: number): void {
    const m = this.gauges.get(name) ?? new Map<string, number>();
    this.gauges.set(name, m);
    m.set(fmt(labels), value);
  }

  async collectFromDatabase(database: Database): Promise<void> {
    this.gauges.clear();
    const r = await database.pool.query<{ mp: string; status: string; n: number; q: string }>(
      'SELECT billing_provider AS mp, status, COUNT(*)::int AS n, COALESCE(SUM(bill),0)::text AS q FROM remittances GROUP BY 1, 2',
    );
    // Every marketplace and status from 0, so that the first failure of a marketplace is a change
    // (0 -> 1) that delta() sees, not a series that starts at 1.
    for (const mp of MARKETPLACES) {
      for (const status of REMITTANCE_STATUSES) {
        this.set('remit_remittances', { marketplace: mp, status }, 0);
        this.set('remit_remittance_quantity', { marketplace: mp, status }, 0);
      }
    }
    for (const row of r.rows) {
      this.set('remit_remittances', { marketplace: row.mp, status: row.status }, row.n);
      this.set('remit_remittance_quantity', { marketplace: row.mp, status: row.status }, Number(row.q));
    }
    // Parked keys are left out: the sweep does not start them, they wait for an operator (remit_parked_keys).
    const owing = await database.pool.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM remittance_keys WHERE change_seq > computed_seq AND ${NOT_PARKED}`);
    this.set('remit_owing_keys', {}, owing.rows[0]!.n);
    this.set('remit_parked_keys', {}, 0);
    for (const p of await countParkedKeys(database.pool)) this.set('remit_parked_keys', { marketplace: p.marketplace, error_code: p.errorCode }, p.n);
    const oldest = await database.pool.query<{ age: number | null }>(
      `SELECT EXTRACT(EPOCH FROM now() - MIN(r.updated_at))::float8 AS age FROM remittances r
       WHERE r.status IN ('Failed','Expired','Voided') AND NOT EXISTS (
         SELECT 1 FROM remittances l WHERE l.key = r.key AND l.id <> r.id AND l.updated_at >= r.updated_at AND l.bill > 0 AND l.status IN ('Pending','Sending','Succeeded','Gratis'))`,
    );
    this.set('remit_unremitted_oldest_age_seconds', {}, oldest.rows[0]!.age ?? 0);
    // Amounts that can still be sent, and how soon they cannot: the alert pages before the
    // window closes, not after the records expired.
    const deadlines = await database.pool.query<{ mp: string; status: string; s: number }>(
      `SELECT billing_provider AS mp, status, EXTRACT(EPOCH FROM MIN(deadline) - now())::float8 AS s FROM remittances
       WHERE status IN ('Pending','Sending','Failed') AND deadline > now() GROUP BY 1, 2`,
    );
    for (const row of deadlines.rows) this.set('remit_remittance_deadline_seconds', { marketplace: row.mp, status: row.status }, row.s);
    await this.collectUsagePulls(database);
  }

  private async collectUsagePulls(database: Database): Promise<void> {
    const recent = `hour > now() - interval '62 days'`;
    const byStatus = await database.pool.query<{ status: string; n: number }>(`SELECT status, COUNT(*)::int AS n FROM usage_pulls WHERE ${recent} GROUP BY 1`);
    const counts: Record<string, number> = { pulling: 0, pulled: 0, failed: 0 };
    for (const row of byStatus.rows) counts[row.status] = row.n;
    for (const [status, n] of Object.entries(counts)) this.set('remit_usage_pull_hours', { status }, n);
    const rejected = await database.pool.query<{ hours: number; series: number }>(
      `SELECT COUNT(*)::int AS hours, COALESCE(SUM(rejected), 0)::int AS series FROM usage_pulls WHERE ${recent} AND rejected > 0`,
    );
    this.set('remit_usage_pull_rejected_hours', {}, rejected.rows[0]!.hours);
    this.set('remit_usage_pull_rejected_series', {}, rejected.rows[0]!.series);
    // The hour's end, not the row's age: the pull of an hour starts after the hour ended.
    const pulling = await database.pool.query<{ hour: Date | null }>(`SELECT MIN(hour) AS hour FROM usage_pulls WHERE status = 'pulling'`);
    const oldest = pulling.rows[0]!.hour;
    const hourMs = this.hourMs;
    this.set('remit_usage_pull_oldest_pulling_age_seconds', {}, oldest ? Math.max(0, (Date.now() - oldest.getTime() - hourMs) / 1000) : 0);
  }

  render(): string {
    const lines: string[] = [];
    for (const [kind, store] of [['counter', this.counters], ['gauge', this.gauges]] as const) {
      for (const [name, series] of store) {
        const [help] = HELP[name] ?? [name];
        lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${kind}`);
        for (const [labels, v] of series) lines.push(`${name}${labels} ${v}`);
      }
    }
    return lines.join('\n') + '\n';
  }
}
