// "What did we remit and what not, and why": remittance listings and summaries.

import type { Database } from './client';
import { ROW_COLUMNS, ROW_FROM, type RemittanceRow } from './ledger';
import { parkedJson } from './parking';
import { COUNTS_AS_REMITTED, STATUS_GROUPS, type RemittanceStatus } from '../domain/lifecycle';

/** A status set of domain/lifecycle.ts as an SQL list, `('Failed','Expired')`: the sets are constants of the vocabulary, never input. */
export function sqlStatuses(statuses: readonly RemittanceStatus[]): string {
  return `(${statuses.map((s) => `'${s}'`).join(',')})`;
}

/**
 * SQL condition on `l`: a later remittance of the key of remittance `r` that carries an amount
 * counted as remitted, i.e. the one that re-billed what `r` failed to remit. One rule for the
 * listing's "rebilled by" and the oldest-unremitted-amount gauge.
 */
export function rebills(l: string, r: string): string {
  return `${l}.key = ${r}.key AND ${l}.id <> ${r}.id AND ${l}.updated_at >= ${r}.updated_at AND ${l}.bill > 0 AND ${l}.status IN ${sqlStatuses(COUNTS_AS_REMITTED)}`;
}

export interface RemittanceFilter {
  orgId?: string;
  orgIds?: string[];
  billingAccountId?: string;
  billingAccountIds?: string[];
  billingProvider?: string;
  productTag?: string;
  metric?: string;
  status?: string[];
  /** Remittance hours in [from, to). */
  from?: Date;
  to?: Date;
}

export const GROUP_BY = ['billingProvider', 'billingAccountId', 'orgId', 'productTag', 'metric', 'status', 'period'] as const;
export type GroupBy = (typeof GROUP_BY)[number];
const GROUP_COLUMN: Record<GroupBy, string> = {
  billingProvider: 'r.billing_provider', billingAccountId: 'r.billing_account_id', orgId: 'r.org_id', productTag: 'r.product_tag',
  metric: 'r.metric', status: 'r.status', period: 'p.period',
};

function where(f: RemittanceFilter, params: unknown[]): string {
  const clauses: string[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    clauses.push(sql.replace('?', `$${params.length}`));
  };
  if (f.orgId) add('r.org_id = ?', f.orgId);
  if (f.orgIds) add('r.org_id = ANY(?)', f.orgIds);
  if (f.billingAccountId) add('r.billing_account_id = ?', f.billingAccountId);
  if (f.billingAccountIds) add('r.billing_account_id = ANY(?)', f.billingAccountIds);
  if (f.billingProvider) add('r.billing_provider = ?', f.billingProvider);
  if (f.productTag) add('r.product_tag = ?', f.productTag);
  if (f.metric) add('r.metric = ?', f.metric);
  if (f.status?.length) add('r.status = ANY(?)', f.status);
  if (f.from) add('r.remittance_hour >= ?', f.from);
  if (f.to) add('r.remittance_hour < ?', f.to);
  return clauses.length ? clauses.join(' AND ') : 'TRUE';
}

export interface RemittanceItem extends RemittanceRow {
  /** For an amount a later hour bills (failed, expired, voided, waiting for a contract): the later remittance that counts it. */
  rebilledBy: { remittanceId: string; remittanceHour: string; status: string } | null;
  /** The key is parked (db/parking.ts): nothing is sent for it until an operator retry or a contract change. */
  keyParked: { since: string; reason: string; errorCode: string | null } | null;
}

/** Paginated, newest hour first. The cursor is opaque: `<hour ms>.<id>` of the last item. */
export async function listRemittances(database: Database, f: RemittanceFilter, page: { cursor?: string; limit: number }) {
  const params: unknown[] = [];
  let cond = where(f, params);
  if (page.cursor) {
    const [ms, id] = decodeCursor(page.cursor);
    params.push(new Date(ms), id);
    cond += ` AND (r.remittance_hour, r.id) < ($${params.length - 1}, $${params.length})`;
  }
  params.push(page.limit + 1);
  const r = await database.pool.query<RemittanceItem>(
    `SELECT ${ROW_COLUMNS},
       COALESCE((SELECT json_agg(json_build_object('period', p.period, 'bill', p.bill, 'claim', p.claim, 'mtd', p.mtd, 'coverage', p.coverage, 'gratis', p.gratis) ORDER BY p.period)
                 FROM remittance_parts p WHERE p.remittance_id = r.id), '[]') AS periods,
       CASE WHEN r.status IN ${sqlStatuses(STATUS_GROUPS.billedLater)} THEN
         (SELECT json_build_object('remittanceId', l.id, 'remittanceHour', l.remittance_hour, 'status', l.status)
          FROM remittances l WHERE ${rebills('l', 'r')} ORDER BY l.remittance_hour LIMIT 1)
       END AS "rebilledBy",
       ${parkedJson('r.key')} AS "keyParked"
     FROM ${ROW_FROM} WHERE ${cond} ORDER BY r.remittance_hour DESC, r.id DESC LIMIT $${params.length}`,
    params,
  );
  const items = r.rows.slice(0, page.limit);
  const last = items[items.length - 1];
  return { items, nextCursor: r.rows.length > page.limit && last ? encodeCursor(new Date(last.remittanceHour).getTime(), last.id) : null };
}

export async function summarize(database: Database, f: RemittanceFilter, groupBy: GroupBy[]) {
  const params: unknown[] = [];
  const cond = where(f, params);
  const groups = groupBy.map((g) => `${GROUP_COLUMN[g]} AS "${g}"`);
  const byPeriod = groupBy.includes('period');
  const r = await database.pool.query(
    `SELECT ${[...groups, 'r.status AS "statusKey"'].join(', ')}, COUNT(DISTINCT r.id)::int AS remittances,
            COALESCE(SUM(${byPeriod ? 'p.bill' : 'r.bill'}), 0)::bigint AS quantity,
            COALESCE(SUM(${byPeriod ? 'p.claim' : 'r.claim'}), 0)::text AS claim
     FROM remittances r ${byPeriod ? 'JOIN remittance_parts p ON p.remittance_id = r.id' : ''}
     WHERE ${cond} GROUP BY ${[...groupBy.map((g) => GROUP_COLUMN[g]), 'r.status'].join(', ')}
     ORDER BY ${[...groupBy.map((g) => GROUP_COLUMN[g]), 'r.status'].join(', ')}`,
    params,
  );
  const t = await database.pool.query<{ status: string; remittances: number; quantity: string; claim: string }>(
    `SELECT r.status, COUNT(*)::int AS remittances, COALESCE(SUM(r.bill), 0)::text AS quantity, COALESCE(SUM(r.claim), 0)::text AS claim
     FROM remittances r WHERE ${cond} GROUP BY r.status ORDER BY r.status`,
    params,
  );
  const totals = Object.fromEntries(t.rows.map((x) => [x.status, { remittances: x.remittances, quantity: Number(x.quantity), claim: x.claim }]));
  const rows = r.rows.map(({ statusKey, ...rest }) => ({ ...rest, status: statusKey, quantity: Number(rest.quantity) }));
  return { totals, groups: groupBy.length ? rows : [] };
}

function encodeCursor(ms: number, id: string): string {
  return Buffer.from(`${ms}.${id}`).toString('base64url');
}

function decodeCursor(c: string): [number, string] {
  const s = Buffer.from(c, 'base64url').toString();
  const dot = s.indexOf('.');
  const ms = Number(s.slice(0, dot));
  if (dot < 0 || !Number.isFinite(ms) || Number.isNaN(new Date(ms).getTime())) throw new Error('invalid cursor');
  return [ms, s.slice(dot + 1)];
}

/**
 * Keys with tallies or remittances of `f.productTag` in [f.from, f.to), narrowed by orgs, billing
 * accounts and metric (what a recalculation recomputes); its status filter is not used.
 */
export async function keysWithActivity(database: Database, f: RemittanceFilter): Promise<string[]> {
  const res = await database.pool.query<{ key: string }>(
    `SELECT DISTINCT key FROM (
       SELECT key, org_id, billing_account_id, metric FROM tallies WHERE product_tag = $1 AND hour >= $2 AND hour < $3
       UNION SELECT key, org_id, billing_account_id, metric FROM remittances WHERE product_tag = $1 AND remittance_hour >= $2 AND remittance_hour < $3
     ) s WHERE ($4::text[] IS NULL OR org_id = ANY($4)) AND ($5::text[] IS NULL OR billing_account_id = ANY($5)) AND ($6::text IS NULL OR metric = $6) ORDER BY key`,
    [f.productTag, f.from, f.to, f.orgIds ?? null, f.billingAccountIds ?? null, f.metric ?? null],
  );
  return res.rows.map((x) => x.key);
}

