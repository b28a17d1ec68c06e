// "What did we remit and what not, and why" as CSV, for the people who reconcile invoices in
// spreadsheets: `GET /v1/remittances?format=csv` (or `Accept: text/csv`) and `remit report --csv`.
// One row per item of the JSON listing, the same values and reasons, flattened: the key's fields
// and the later remittance that billed a failed amount get their own columns, and the
// accumulation periods one cell ("2026-11:3:2.5" = period:bill:claim, space-separated).
// Quoting is RFC 4180: a field with a comma, quote, CR or LF is quoted, quotes doubled; lines end
// with CRLF. A field starting with = + - @ is left as it is: values are data (ids, reasons), and
// spreadsheet programs open CSV files as text when asked to.

/** The JSON item of GET /v1/remittances, as far as the CSV needs it. */
export interface RemittanceCsvItem {
  id: string;
  key: { billingProvider: string; billingAccountId: string; orgId: string; productTag: string; metric: string; sla: string; usage: string };
  remittanceHour: string;
  quantity: number;
  claim: string | null;
  dimension: string | null;
  status: string;
  errorCode: string | null;
  reason: string | null;
  receiptId: string | null;
  billedOn: string | null;
  deadline: string | null;
  attempts: number | null;
  lastError: string | null;
  workflowId: string | null;
  accumulationPeriods?: Array<{ period: string; bill: number; claim: string }> | null;
  rebilledBy: { remittanceId: string; remittanceHour: string; status: string } | null;
}

type Cell = string | number | null | undefined;

export const REMITTANCE_CSV_COLUMNS: ReadonlyArray<[string, (i: RemittanceCsvItem) => Cell]> = [
  ['remittanceHour', (i) => i.remittanceHour],
  ['billingProvider', (i) => i.key.billingProvider],
  ['billingAccountId', (i) => i.key.billingAccountId],
  ['orgId', (i) => i.key.orgId],
  ['productTag', (i) => i.key.productTag],
  ['metric', (i) => i.key.metric],
  ['sla', (i) => i.key.sla],
  ['usage', (i) => i.key.usage],
  ['quantity', (i) => i.quantity],
  ['claim', (i) => i.claim],
  ['dimension', (i) => i.dimension],
  ['status', (i) => i.status],
  ['errorCode', (i) => i.errorCode],
  ['reason', (i) => i.reason],
  ['receiptId', (i) => i.receiptId],
  ['billedOn', (i) => i.billedOn],
  ['deadline', (i) => i.deadline],
  ['attempts', (i) => i.attempts],
  ['lastError', (i) => i.lastError],
  ['rebilledByRemittanceId', (i) => i.rebilledBy?.remittanceId],
  ['rebilledByHour', (i) => (i.rebilledBy ? new Date(i.rebilledBy.remittanceHour).toISOString() : null)],
  ['rebilledByStatus', (i) => i.rebilledBy?.status],
  ['accumulationPeriods', (i) => (i.accumulationPeriods ?? []).map((p) => `${p.period}:${p.bill}:${p.claim}`).join(' ')],
  ['id', (i) => i.id],
  ['workflowId', (i) => i.workflowId],
];

/** One CSV field: quoted when it must be. */
export function csvField(v: Cell): string {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvLine(cells: Cell[]): string {
  return `${cells.map(csvField).join(',')}\r\n`;
}

export function remittancesCsvHeader(): string {
  return csvLine(REMITTANCE_CSV_COLUMNS.map(([name]) => name));
}

/** The rows of `items` (no header). */
export function remittancesCsvRows(items: RemittanceCsvItem[]): string {
  return items.map((i) => csvLine(REMITTANCE_CSV_COLUMNS.map(([, get]) => get(i)))).join('');
}
