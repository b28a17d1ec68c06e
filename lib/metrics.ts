// The API's Prometheus metrics (GET /metrics), on prom-client: counters kept in memory, and the
// ledger gauges read from the database at scrape time (db/metrics.ts), so every process reports
// the same truth.
//
// Replicas: every API replica reports the same ledger gauges (they are read from the one
// database), so rules and dashboards take them once with `max by (...)` over instances, never
// `sum` (which counts them once per replica). Counters (requests, tallies ingested) are each
// replica's own and are summed. See docs/operations.md "Metrics and replicas".
//
// The names and labels are what ops/prometheus/alerts.yml and ops/grafana/remit-dashboard.json
// query; test/integration/metrics-exposition.test.ts scrapes this endpoint and checks them.

import { Counter, Gauge, Registry } from 'prom-client';
import type { Database } from '../db/client';
import { readLedgerGauges } from '../db/metrics';
import { MARKETPLACES } from '../domain/key';
import type { TallyRefusal } from '../domain/tally';
import { REMITTANCE_STATUSES } from '../domain/lifecycle';

const REFUSALS = ['too_old', 'rollup'] as const satisfies readonly TallyRefusal[];

export class Metrics {
  /** One registry per instance (not prom-client's global one): several APIs in one test process stay apart. */
  readonly registry = new Registry();

  readonly requests = new Counter({ name: 'remit_api_requests_total', help: 'HTTP requests served, by route, method and status.', labelNames: ['route', 'method', 'status'] as const, registers: [this.registry] });
  readonly talliesIngested = new Counter({ name: 'remit_tallies_ingested_total', help: 'Tallies accepted by POST /v1/tallies.', registers: [this.registry] });
  readonly talliesRefused = new Counter({
    name: 'remit_tallies_refused_total',
    help: 'Tallies refused by POST /v1/tallies, by reason: too_old (older than REMIT_MAX_USAGE_AGE_DAYS), rollup (an _ANY roll-up row).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  private readonly gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) => new Gauge<L>({ name, help, labelNames, registers: [this.registry] });
  private readonly remittances = this.gauge('remit_remittances', 'Remittances in the ledger, by marketplace and status.', ['marketplace', 'status']);
  private readonly quantity = this.gauge('remit_remittance_quantity', 'Billing units in the ledger, by marketplace and status.', ['marketplace', 'status']);
  private readonly owingKeys = this.gauge('remit_owing_keys', 'Keys with a change not yet computed (the next sweep starts them).');
  private readonly parkedKeys = this.gauge(
    'remit_parked_keys',
    'Keys parked after repeated terminal rejections of the same kind, by marketplace and error code: nothing is sent for them, their amount stays owed.',
    ['marketplace', 'error_code'],
  );
  private readonly unremittedAge = this.gauge('remit_unremitted_oldest_age_seconds', 'Age of the oldest failed, expired or voided amount not yet billed again.');
  private readonly deadline = this.gauge(
    'remit_remittance_deadline_seconds',
    'Seconds until the earliest acceptance deadline of the records still unsent (Pending, Sending, Failed) whose deadline has not passed, by marketplace and status.',
    ['marketplace', 'status'],
  );
  private readonly pullHours = this.gauge('remit_usage_pull_hours', 'Hours of the usage pull of the last 62 days, by status (pulling: being read or retrying; pulled; failed: nothing could be stored).', ['status']);
  private readonly pullRejectedHours = this.gauge('remit_usage_pull_rejected_hours', 'Pulled hours of the last 62 days whose last read left out series that cannot be billed (re-pull them once the source is fixed).');
  private readonly pullRejectedSeries = this.gauge('remit_usage_pull_rejected_series', 'Series left out, summed over remit_usage_pull_rejected_hours.');
  private readonly pullOldestAge = this.gauge('remit_usage_pull_oldest_pulling_age_seconds', 'Seconds since the end of the oldest hour still being read or retried (0 when none).');

  /** Length of an hour in ms (REMIT_HOUR_SECONDS scales it in tests and demos). */
  constructor(private readonly hourMs = 3_600_000) {
    // Refusals from 0, so that the first one is an increase that rate() sees.
    for (const reason of REFUSALS) this.talliesRefused.inc({ reason }, 0);
  }

  /** The exposition's content type (text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Reads the ledger gauges and renders every metric. */
  async scrape(database: Database): Promise<string> {
    const g = await readLedgerGauges(database);
    for (const m of [this.remittances, this.quantity, this.parkedKeys, this.deadline]) m.reset();
    // Every marketplace and status from 0, so that the first failure of a marketplace is a change
    // (0 -> 1) that delta() sees, not a series that starts at 1.
    for (const marketplace of MARKETPLACES) {
      for (const status of REMITTANCE_STATUSES) {
        this.remittances.set({ marketplace, status }, 0);
        this.quantity.set({ marketplace, status }, 0);
      }
    }
    for (const r of g.remittances) {
      this.remittances.set({ marketplace: r.marketplace, status: r.status }, r.count);
      this.quantity.set({ marketplace: r.marketplace, status: r.status }, r.quantity);
    }
    this.owingKeys.set(g.owingKeys);
    // An unlabelled 0 keeps the metric present (not absent()) while no key is parked.
    this.parkedKeys.set(0);
    for (const p of g.parkedKeys) this.parkedKeys.set({ marketplace: p.marketplace, error_code: p.errorCode }, p.n);
    this.unremittedAge.set(g.unremittedOldestAgeSeconds);
    for (const d of g.deadlines) this.deadline.set({ marketplace: d.marketplace, status: d.status }, d.seconds);
    for (const [status, n] of Object.entries(g.usagePulls.hours)) this.pullHours.set({ status }, n);
    this.pullRejectedHours.set(g.usagePulls.rejectedHours);
    this.pullRejectedSeries.set(g.usagePulls.rejectedSeries);
    // The hour's end, not the row's age: the pull of an hour starts after the hour ended.
    const oldest = g.usagePulls.oldestPullingHour;
    this.pullOldestAge.set(oldest ? Math.max(0, (Date.now() - oldest.getTime() - this.hourMs) / 1000) : 0);
    return this.registry.metrics();
  }
}
