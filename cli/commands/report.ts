// `remit report`: what was remitted and what not, and why.

import { API_OPTIONS, JSON_OPTION, instant, int, listOf, oneOf, str, UsageError, bool, type Command } from '../args';
import { ApiClient } from '../api';
import { oneLine, plural, printJson, table } from '../format';
import { apiSettings, loadStack } from '../stack';
import { GROUP_BY } from '../../db/reports';
import { remittancesCsvHeader, remittancesCsvRows } from '../../lib/remittance-csv';
import { MARKETPLACES } from '../../domain/key';
import type { RemittanceCsvItem } from '../../lib/remittance-csv';
import { REMITTANCE_STATUSES, STATUS_GROUPS } from '../../domain/lifecycle';

/** One item of GET /v1/remittances: the fields the CSV has too, and the key's parked state. */
export interface RemittanceItem extends RemittanceCsvItem {
  /** Set while the key is parked after repeated rejections of the same kind. */
  keyParked?: { since: string; reason: string; errorCode: string | null } | null;
}

interface Summary {
  totals: Record<string, { remittances: number; quantity: number; claim: string }>;
  groups: Array<Record<string, unknown> & { status: string; remittances: number; quantity: number; claim: string }>;
}

/** The summary's lines: every status group of domain/lifecycle.ts, so that no status is left out. */
const SUMMARY_LINES: Array<{ label: string; statuses: readonly string[]; note: string }> = [
  { label: 'remitted', statuses: STATUS_GROUPS.remitted, note: 'accepted by the marketplace' },
  { label: 'unconfirmed', statuses: STATUS_GROUPS.unconfirmed, note: 'sent, the answer lost: counted as remitted; `remit audit` checks the marketplace has it' },
  { label: 'in flight', statuses: STATUS_GROUPS.inFlight, note: 'not settled yet' },
  { label: 'not remitted', statuses: STATUS_GROUPS.billedLater, note: 'see the reason below; the amount is billed in a later hour of the key' },
  { label: 'nothing due', statuses: STATUS_GROUPS.notDue, note: 'nothing to send' },
];

/** The summary lines under the totals: billing units and remittances per status group. */
export function summaryLines(totals: Summary['totals']): string[] {
  const out: string[] = [];
  for (const { label, statuses, note } of SUMMARY_LINES) {
    const xs = REMITTANCE_STATUSES.filter((s) => statuses.includes(s) && totals[s]);
    const n = xs.reduce((a, s) => a + totals[s]!.remittances, 0);
    const q = xs.reduce((a, s) => a + totals[s]!.quantity, 0);
    if (n > 0) out.push(`  ${label.padEnd(14)}${plural(q, 'billing unit')} in ${plural(n, 'remittance')} (${xs.map((s) => `${s} ${totals[s]!.remittances}`).join(', ')}): ${note}`);
  }
  return out;
}

export const report: Command = {
  name: 'report',
  summary: 'what was remitted and what not, and why',
  options: {
    ...API_OPTIONS,
    ...JSON_OPTION,
    org: { type: 'string' },
    account: { type: 'string' },
    marketplace: { type: 'string' },
    product: { type: 'string' },
    metric: { type: 'string' },
    status: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    limit: { type: 'string' },
    all: { type: 'boolean' },
    cursor: { type: 'string' },
    'group-by': { type: 'string' },
    csv: { type: 'boolean' },
  },
  help: `Usage: remit report [filters] [--group-by FIELDS] [--limit N | --all] [--json | --csv]

What was remitted and what not, and why: totals by status (GET /v1/remittances/summary), then
one line per remittance, newest hour first (GET /v1/remittances), with its status, error code,
reason, marketplace receipt and, for an amount not remitted, the later remittance that billed it.

Filters (all optional, combined with AND):
  --org ORG_ID                 organization
  --account BILLING_ACCOUNT    billing account (AWS account id, Azure subscription)
  --marketplace aws|azure      billing provider
  --product PRODUCT_TAG        product tag
  --metric METRIC              metric
  --status S1,S2               statuses: ${REMITTANCE_STATUSES.join(', ')}
  --from INSTANT --to INSTANT  remittance hours in [from, to), ISO-8601 (e.g. 2026-11-25T00:00:00Z)

Output:
  --group-by F1,F2             also total by ${GROUP_BY.join(', ')}
  --limit N                    remittances to list (default 50, at most 10000)
  --all                        list every matching remittance
  --cursor CURSOR              continue a listing where the last one stopped
  --json                       print {filters, summary, items, nextCursor} as JSON
  --csv                        print the remittances as CSV (RFC 4180, a header line, one row per
                               remittance, the same rows and reasons as the JSON; no totals), for
                               spreadsheets: remit report --all --csv > remittances.csv

Where the API is: --api URL --token-file FILE (or --token TOKEN), else REMIT_API_URL / REMIT_OPERATOR_TOKEN_FILE /
REMIT_OPERATOR_TOKEN, else
.remit/local-stack.json (--stack FILE names another; REMIT_STACK_FILE=none ignores it).

Examples:
  remit report --org org-1 --from 2026-11-01 --to 2026-12-01
  remit report --status Failed,Expired --group-by billingProvider,status
`,
  async run(v, _p, io) {
    const from = instant(v, 'from');
    const to = instant(v, 'to');
    if (from && to && to <= from) throw new UsageError('--to must be after --from');
    const filters = {
      orgId: str(v, 'org'),
      billingAccountId: str(v, 'account'),
      billingProvider: oneOf(v, 'marketplace', MARKETPLACES),
      productTag: str(v, 'product'),
      metric: str(v, 'metric'),
      status: listOf(v, 'status', REMITTANCE_STATUSES)?.join(','),
      from: from?.toISOString(),
      to: to?.toISOString(),
    };
    const groupBy = listOf(v, 'group-by', GROUP_BY);
    const all = bool(v, 'all');
    const limitFlag = int(v, 'limit', 1, 10_000);
    if (all && limitFlag !== undefined) throw new UsageError('give --limit or --all, not both');
    const limit = all ? Infinity : (limitFlag ?? 50);
    const cursor0 = str(v, 'cursor');
    const csv = bool(v, 'csv');
    if (csv && bool(v, 'json')) throw new UsageError('give --json or --csv, not both');
    if (csv && groupBy?.length) throw new UsageError('--group-by makes totals, which the CSV does not have: leave it out, or use --json');

    const stack = loadStack(str(v, 'stack'), io);
    const api = apiSettings({ api: str(v, 'api'), token: str(v, 'token'), tokenFile: str(v, 'token-file') }, io, stack);
    const client = new ApiClient(api.url, api.token, { source: api.source });

    const summary = csv ? undefined : await client.get<Summary>('/v1/remittances/summary', { ...filters, groupBy: groupBy?.join(',') });
    const items: RemittanceItem[] = [];
    let cursor: string | null | undefined = cursor0;
    do {
      const page: { items: RemittanceItem[]; nextCursor: string | null } = await client.get('/v1/remittances', { ...filters, cursor: cursor ?? undefined, limit: String(Math.min(1000, limit - items.length)) });
      items.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor && items.length < limit);

    if (csv || !summary) {
      // CRLF line ends, as the API's CSV: io.out adds the final "\n" of each line.
      io.out((remittancesCsvHeader() + remittancesCsvRows(items)).slice(0, -1));
      if (cursor) io.err(`More: add --cursor ${cursor} (or --all).`);
      return 0;
    }
    const shownFilters = Object.fromEntries(Object.entries(filters).filter(([, x]) => x !== undefined));
    if (bool(v, 'json')) {
      printJson(io.out, { filters: shownFilters, summary, items, nextCursor: cursor ?? null });
      return 0;
    }

    const scope = Object.entries(shownFilters).map(([k, x]) => `${k}=${x}`).join(' ');
    io.out(`Remittances${scope ? ` (${scope})` : ''} at ${api.url}`);
    io.out('');
    const statuses = Object.keys(summary.totals).sort((a, b) => REMITTANCE_STATUSES.indexOf(a as never) - REMITTANCE_STATUSES.indexOf(b as never));
    if (statuses.length === 0) {
      io.out('No remittances match.');
      return 0;
    }
    io.out('Totals by status:');
    for (const l of table(['STATUS', 'REMITTANCES', 'QUANTITY', 'CLAIM'], statuses.map((s) => [s, summary.totals[s]!.remittances, summary.totals[s]!.quantity, summary.totals[s]!.claim]), { indent: '  ' })) io.out(l);
    io.out('');
    for (const l of summaryLines(summary.totals)) io.out(l);

    if (groupBy?.length) {
      io.out('');
      io.out(`Totals by ${groupBy.join(', ')}:`);
      const cols = [...groupBy.filter((g) => g !== 'status'), 'status'];
      for (const l of table([...cols.map((c) => c.toUpperCase()), 'REMITTANCES', 'QUANTITY', 'CLAIM'], summary.groups.map((g) => [...cols.map((c) => String(g[c] ?? '')), g.remittances, g.quantity, g.claim]), { indent: '  ' })) io.out(l);
    }

    io.out('');
    io.out(`Remittances, newest hour first (${items.length} shown):`);
    for (const l of table(['HOUR', 'MARKETPLACE', 'ACCOUNT', 'ORG', 'PRODUCT', 'METRIC', 'QUANTITY', 'STATUS', 'WHY / RECEIPT'], items.map((i) => [i.remittanceHour, i.key.billingProvider, i.key.billingAccountId, i.key.orgId, i.key.productTag, i.key.metric, i.quantity, i.status, why(i)]), { indent: '  ' })) io.out(l);
    if (cursor) io.out(`\nMore: add --cursor ${cursor} (or --all).`);
    return 0;
  },
};

/** Why a remittance is where it is, in one line. */
export function why(i: RemittanceItem): string {
  const parts: string[] = [];
  if (i.keyParked) parts.push(`KEY PARKED since ${i.keyParked.since}: ${oneLine(i.keyParked.reason)}; resume with \`remit retry\` or a contract change;`);
  if (i.receiptId) parts.push(`receipt ${i.receiptId}${i.billedOn ? ` billed ${i.billedOn}` : ''}`);
  if (i.errorCode) parts.push(`[${i.errorCode}]`);
  if (i.reason && i.status !== 'Succeeded') parts.push(oneLine(i.reason));
  else if (!i.receiptId && i.lastError) parts.push(`last error: ${oneLine(i.lastError)}`);
  if ((STATUS_GROUPS.billedLater as readonly string[]).includes(i.status)) {
    parts.push(i.rebilledBy ? `-> rebilled by ${i.rebilledBy.remittanceHour} (${i.rebilledBy.status}, ${i.rebilledBy.remittanceId})` : '-> not billed by a later hour yet');
  }
  if ((STATUS_GROUPS.inFlight as readonly string[]).includes(i.status) && i.deadline) parts.push(`deadline ${i.deadline}${i.attempts ? `, ${plural(i.attempts, 'attempt')}` : ''}`);
  return parts.join(' ');
}
