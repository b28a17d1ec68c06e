// `remit audit`: the three invariants of interface.md checked against the ledger and the
// marketplaces' own records where they can be read (the emulators' admin API). Exit 1 on any
// violation. `remit audit log`: the audit trail of operator actions (GET /v1/audit).

import { API_OPTIONS, CliError, JSON_OPTION, UsageError, bool, int, str, type Command, type Io, type Values } from '../args';
import { ApiClient } from '../api';
import { oneLine, plural, printJson, table } from '../format';
import { apiSettings, caFile, databaseUrl, loadStack, redactUrl, requireFile, type LocalStack } from '../stack';
import { openDatabase } from '../../db/client';
import { type Catalog } from '../../domain/catalog';
import { loadCatalog } from '../../config/catalog';
import { timeSettingsFromEnv, type TimeSettings } from '../../config/env';
import { auditLedger, type AuditReport, type MarketplaceRecord, type Violation } from '../../operations/audit';

type Mp = 'aws' | 'azure';

interface RecordSource {
  marketplace: Mp;
  url: string;
  /** The flag or the stack file that named the URL. */
  from: string;
  records?: MarketplaceRecord[];
}

export const audit: Command = {
  name: 'audit',
  summary: 'check the invariants against the ledger and the marketplaces; `audit log`: the audit trail',
  positionals: ['log'],
  options: {
    ...API_OPTIONS,
    ...JSON_OPTION,
    database: { type: 'string' },
    catalog: { type: 'string' },
    'aws-records': { type: 'string' },
    'azure-records': { type: 'string' },
    'no-marketplace': { type: 'boolean' },
    ca: { type: 'string' },
    log: { type: 'boolean' },
    limit: { type: 'string' },
    cursor: { type: 'string' },
  },
  help: `Usage: remit audit [--database URL] [--aws-records URL|none] [--azure-records URL|none] [--no-marketplace] [--json]
       remit audit log [--limit N] [--cursor C] [--json]      (also: remit audit --log)

Checks the invariants against the ledger (PostgreSQL) and the records the marketplaces say they
accepted, and prints every violation:
  nothing-lost    once quiet, what the marketplace accepted equals what the billing rules say is
                  owed: nothing in flight, recomputing every key bills nothing, and every
                  succeeded remittance's receipt is in the marketplace's records
  nothing-twice   at most one accepted record per marketplace, customer, dimension and hour;
                  ledger and marketplace agree on quantity, dimension, customer and hour; no
                  record without a succeeded remittance; no duplicate rejections
  nothing-hidden  every amount not accepted has a status, an error code and a reason
Exits 0 when clean, 1 on any violation (or when it cannot check), 2 on bad flags.

  --database URL        the ledger (else DATABASE_URL, else local-stack.json "database")
  --catalog FILE        product catalog (else REMIT_CATALOG_PATH, else config/catalog.json)
  --aws-records URL     AWS records, {records:[...]} as the AWS emulator's GET /_emulator/records
                        serves them (else local-stack.json emulators.aws.admin + /records)
  --azure-records URL   Azure usage events, likewise (HTTPS; else emulators.azure.admin + /records)
  --ca FILE             CA to trust for HTTPS record sources (else REMIT_EXTRA_CA_CERT_FILE, else
                        .remit/certs/ca.pem next to the stack file)
  --no-marketplace      check the ledger alone; "none" as a records URL skips one marketplace
  --json                print {ok, checked, violations, marketplaces} as JSON
Time settings (hour length, grace, acceptance windows) come from REMIT_HOUR_SECONDS and friends,
as for the services; REMIT_HOUR_SECONDS defaults to local-stack.json "hourSeconds".

audit log: the audit trail (who did what, when, dry runs included), newest first, from the API:
  --limit N  entries (default 20, at most 1000)   --cursor C  older entries
  --api URL --token-file FILE (or --token TOKEN), else REMIT_API_URL / REMIT_OPERATOR_TOKEN_FILE /
REMIT_OPERATOR_TOKEN, else local-stack.json.
`,
  async run(v, positionals, io) {
    if (positionals.includes('log') || bool(v, 'log')) return auditLog(v, io);
    for (const f of ['limit', 'cursor']) if (v[f] !== undefined) throw new UsageError(`--${f} is for \`remit audit log\``);
    return runAudit(v, io);
  },
};

async function runAudit(v: Values, io: Io): Promise<number> {
  const noMarketplace = bool(v, 'no-marketplace');
  const awsFlag = str(v, 'aws-records');
  const azureFlag = str(v, 'azure-records');
  if (noMarketplace && (awsFlag || azureFlag)) throw new UsageError('--no-marketplace and --aws-records/--azure-records contradict each other');
  for (const [name, x] of [['aws-records', awsFlag], ['azure-records', azureFlag]] as const) {
    if (x && x !== 'none' && !/^https?:\/\//.test(x)) throw new UsageError(`--${name} must be an http(s) URL or "none", got ${JSON.stringify(x)}`);
  }
  const stack = loadStack(str(v, 'stack'), io);
  const db = databaseUrl(str(v, 'database'), io, stack);
  const time = timeOf(io, stack);
  const catalog = catalogOf(str(v, 'catalog'), io);

  const sources: RecordSource[] = [];
  if (!noMarketplace) {
    const fromStack = (mp: Mp) => {
      const admin = stack?.emulators[mp]?.admin;
      return admin ? `${admin.replace(/\/+$/, '')}/records` : undefined;
    };
    for (const [mp, flag] of [['aws', awsFlag], ['azure', azureFlag]] as const) {
      const url = flag ?? fromStack(mp);
      if (url && url !== 'none') sources.push({ marketplace: mp, url, from: flag ? `--${mp}-records` : (stack?.file ?? '') });
    }
  }
  const ca = sources.some((s) => s.url.startsWith('https:')) ? caFile(str(v, 'ca'), io, stack) : undefined;
  const caPem = ca ? requireFile(ca, 'the CA file') : undefined;
  for (const s of sources) s.records = await readRecords(s, caPem);

  const database = openDatabase(db.url, { max: 4, applicationName: 'remit-cli-audit' });
  let report: AuditReport;
  try {
    const marketplaceRecords = sources.length ? Object.fromEntries(sources.map((s) => [s.marketplace, s.records ?? []])) : undefined;
    report = await auditLedger({ database, catalog, time, marketplaceRecords });
  } catch (err) {
    const e = err as Error & { code?: string };
    const hint = db.fromStackFile && /password|authentication/i.test(e.message) ? ' (local-stack.json hides the database password: pass --database or set DATABASE_URL)' : '';
    throw new CliError(`cannot audit the ledger at ${redactUrl(db.url)} (from ${db.source}): ${e.message || e.code}${hint}`);
  } finally {
    await database.close().catch(() => undefined);
  }

  const marketplaces = Object.fromEntries((['aws', 'azure'] as const).map((mp) => {
    const s = sources.find((x) => x.marketplace === mp);
    return [mp, s ? { source: s.url, records: s.records?.length ?? 0 } : null];
  }));
  if (bool(v, 'json')) {
    printJson(io.out, { ...report, database: redactUrl(db.url), marketplaces });
    return report.ok ? 0 : 1;
  }
  io.out(`remit audit: ledger ${redactUrl(db.url)}: ${plural(report.checked.keys, 'key')}, ${plural(report.checked.remittances, 'remittance')}`);
  for (const mp of ['aws', 'azure'] as const) {
    const s = marketplaces[mp];
    io.out(`  ${mp} records: ${s ? `${s.records} from ${s.source}` : `not read (${noMarketplace ? '--no-marketplace' : `no source: --${mp}-records URL`}); ledger-only checks`}`);
  }
  io.out('');
  if (report.ok) {
    io.out('OK: no violations. Nothing lost, nothing twice, nothing hidden.');
    return 0;
  }
  io.out(`FAILED: ${plural(report.violations.length, 'violation')}`);
  const by = new Map<string, Violation[]>();
  for (const x of report.violations) by.set(x.invariant, [...(by.get(x.invariant) ?? []), x]);
  for (const [inv, xs] of by) {
    io.out('');
    io.out(`${inv} (${xs.length}):`);
    for (const x of xs) {
      io.out(`  - ${oneLine(x.message)}`);
      if (x.remittanceId || x.key) io.out(`    ${[x.remittanceId ? `remittance ${x.remittanceId}` : '', x.key ? `key ${x.key}` : ''].filter(Boolean).join(', ')}`);
    }
  }
  return 1;
}

function timeOf(io: Io, stack: LocalStack | undefined): TimeSettings {
  const env = { ...io.env };
  if (!env.REMIT_HOUR_SECONDS && stack?.hourSeconds) env.REMIT_HOUR_SECONDS = String(stack.hourSeconds);
  try {
    return timeSettingsFromEnv(env);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function catalogOf(flag: string | undefined, io: Io): Catalog {
  try {
    return loadCatalog(flag, io.env);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
}

/** What one marketplace says it accepted, as the emulators' admin API serves it. */
async function readRecords(s: RecordSource, caPem: string | undefined): Promise<MarketplaceRecord[]> {
  const { Agent, request } = await import('undici'); // loaded only here: --help stays fast
  const https = s.url.startsWith('https:');
  const dispatcher = https && caPem ? new Agent({ connect: { ca: caPem } }) : undefined;
  let json: unknown;
  try {
    const res = await request(s.url, { dispatcher, headersTimeout: 30_000, bodyTimeout: 30_000 });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
    json = JSON.parse(text);
  } catch (err) {
    const e = err as Error & { code?: string; cause?: { code?: string } };
    const tlsHint = https && /certificate|self.signed|CERT/i.test(`${e.message} ${e.code ?? ''} ${e.cause?.code ?? ''}`) ? ' (pass --ca with the emulator CA, e.g. .remit/certs/ca.pem)' : '';
    throw new CliError(`cannot read the ${s.marketplace} records from ${s.url} (from ${s.from}): ${e.code ?? e.cause?.code ?? e.message}${tlsHint}. Pass --${s.marketplace}-records none or --no-marketplace to audit without them.`);
  } finally {
    await dispatcher?.close();
  }
  const records = (json as { records?: unknown })?.records;
  if (!Array.isArray(records)) throw new CliError(`the ${s.marketplace} records from ${s.url} are not {records: [...]}`);
  return records.map((r, i) => {
    const o = (r ?? {}) as Record<string, unknown>;
    const hourMs = typeof o.hour === 'string' ? Date.parse(o.hour) : NaN;
    if (typeof o.receiptId !== 'string' || typeof o.customer !== 'string' || typeof o.dimension !== 'string' || typeof o.quantity !== 'number' || Number.isNaN(hourMs)) {
      throw new CliError(`the ${s.marketplace} record #${i} from ${s.url} lacks receiptId, customer, dimension, quantity or hour: ${JSON.stringify(r).slice(0, 200)}`);
    }
    return { marketplace: s.marketplace, receiptId: o.receiptId, customer: o.customer, dimension: o.dimension, quantity: o.quantity, hourMs };
  });
}

interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  dryRun: boolean;
  request: unknown;
  result: unknown;
}

async function auditLog(v: Values, io: Io): Promise<number> {
  for (const f of ['database', 'catalog', 'aws-records', 'azure-records', 'no-marketplace', 'ca']) if (v[f] !== undefined) throw new UsageError(`--${f} is for \`remit audit\`, not \`remit audit log\``);
  const limit = int(v, 'limit', 1, 1000) ?? 20;
  const stack = loadStack(str(v, 'stack'), io);
  const api = apiSettings({ api: str(v, 'api'), token: str(v, 'token'), tokenFile: str(v, 'token-file') }, io, stack);
  const page = await new ApiClient(api.url, api.token, { source: api.source }).get<{ items: AuditEntry[]; nextCursor: string | null }>('/v1/audit', { limit: String(limit), cursor: str(v, 'cursor') });
  if (bool(v, 'json')) {
    printJson(io.out, page);
    return 0;
  }
  if (page.items.length === 0) {
    io.out('The audit trail is empty.');
    return 0;
  }
  const rows = page.items.map((e) => [e.id, new Date(e.at).toISOString(), e.actor, e.action, e.dryRun ? 'dry run' : '', compact(e.request), compact(e.result)]);
  for (const l of table(['ID', 'AT', 'ACTOR', 'ACTION', 'DRY RUN', 'REQUEST', 'RESULT'], rows)) io.out(l);
  if (page.nextCursor) io.out(`\nOlder: remit audit log --cursor ${page.nextCursor}`);
  return 0;
}

function compact(x: unknown): string {
  if (x === null || x === undefined) return '';
  if (typeof x !== 'object') return String(x);
  const first = ['productTag', 'start', 'end', 'orgIds', 'billingAccountIds', 'status', 'workflowId', 'reason'];
  const rank = (k: string) => (first.includes(k) ? first.indexOf(k) : first.length);
  return Object.entries(x as Record<string, unknown>)
    .sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b))
    .filter(([, val]) => val !== undefined && val !== null)
    .map(([k, val]) => `${k}=${Array.isArray(val) ? val.join(',') : typeof val === 'object' ? JSON.stringify(val) : String(val)}`)
    .join(' ');
}
