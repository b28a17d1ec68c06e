// Prometheus text exposition without a client library: counters kept in memory, and the ledger
// gauges read from the database at scrape time (so every process reports the same truth).

import type { Database } from '../db/client';
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
};

export class Metrics {
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
