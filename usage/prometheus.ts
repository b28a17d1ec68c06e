// The usage source the original system read: Prometheus (or anything that speaks its HTTP API:
// Thanos, Mimir, the emulator in scripts/emulators/prometheus.ts). One instant query per configured
// (product, metric), evaluated at the end of the hour, `GET <base>/api/v1/query?query=&time=`.
//
// Configuration (README "Configuration", docs/usage-source.md):
//   REMIT_PROMETHEUS_URL              base URL of the server (a path prefix is kept); the pull is
//                                     off when unset
//   REMIT_PROMETHEUS_TOKEN            optional bearer token
//   REMIT_PROMETHEUS_TIMEOUT_SECONDS  per query, default 60
//   REMIT_USAGE_QUERIES_PATH          the query file, default config/usage-queries.json
//
// Mapping (pure, unit tested in test/unit/prometheus.test.ts): each series of the answer is one
// key's usage for the hour; `labels` of the query file says which label carries which key field.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Agent, request } from 'undici';
import { Decimal } from '../domain/decimal';
import { rollupFieldOf } from '../domain/tally';
import { UsageReadError, type HourRead, type HourToRead, type RawTally, type UsageSource } from './source';

export const DEFAULT_USAGE_QUERIES_PATH = resolve(__dirname, '..', 'config', 'usage-queries.json');

/** Key fields taken from series labels; productTag and metric come from the query entry. */
export const LABEL_FIELDS = ['orgId', 'sla', 'usage', 'billingProvider', 'billingAccountId'] as const;
export type LabelField = (typeof LABEL_FIELDS)[number];

export interface UsageQuery {
  productTag: string;
  metric: string;
  /** PromQL with `$hour` placeholders (see expandQuery). */
  query: string;
  /** Label name per key field. */
  labels: Record<LabelField, string>;
  /** Value of a key field whose label is missing or empty. */
  defaults: Partial<Record<LabelField, string>>;
}

export class UsageQueriesError extends Error {
  override name = 'UsageQueriesError';
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid usage query file ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const TOP_KEYS = new Set(['$comment', 'labels', 'defaults', 'queries']);
const QUERY_KEYS = new Set(['$comment', 'productTag', 'metric', 'query', 'labels', 'defaults']);
// Prometheus label names: [a-zA-Z_][a-zA-Z0-9_]*.
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function fieldMap(v: unknown, at: string, problems: string[], what: 'label' | 'default'): Partial<Record<LabelField, string>> {
  const out: Partial<Record<LabelField, string>> = {};
  if (v === undefined) return out;
  if (!isObject(v)) {
    problems.push(`${at}: must be an object {${LABEL_FIELDS.join(', ')}}`);
    return out;
  }
  for (const [k, val] of Object.entries(v)) {
    if (!(LABEL_FIELDS as readonly string[]).includes(k)) {
      problems.push(`${at}.${k}: unknown key field (known: ${LABEL_FIELDS.join(', ')})`);
    } else if (typeof val !== 'string' || val.length === 0 || (what === 'label' && !LABEL_NAME_RE.test(val))) {
      problems.push(`${at}.${k}: must be ${what === 'label' ? 'a Prometheus label name' : 'a non-empty string'}, got ${JSON.stringify(val)}`);
    } else if (what === 'default' && rollupFieldOf({ [k]: val }) !== null) {
      // Every series without the label would become a roll-up row, which is never billed.
      problems.push(`${at}.${k}: ${JSON.stringify(val)} marks a roll-up row, which is never billed; give a specific value`);
    } else {
      out[k as LabelField] = val;
    }
  }
  return out;
}

/** Validate a parsed query file. Throws UsageQueriesError naming every problem. */
export function parseUsageQueries(json: unknown, source = '(in memory)'): UsageQuery[] {
  const problems: string[] = [];
  if (!isObject(json)) throw new UsageQueriesError(source, ['the top level must be an object {"labels": {...}, "queries": [...]}']);
  for (const k of Object.keys(json)) if (!TOP_KEYS.has(k)) problems.push(`${k}: unknown field (allowed: ${[...TOP_KEYS].join(', ')})`);
  const labels = fieldMap(json.labels, 'labels', problems, 'label');
  const defaults = fieldMap(json.defaults, 'defaults', problems, 'default');
  const out: UsageQuery[] = [];
  const seen = new Set<string>();
  if (!Array.isArray(json.queries)) problems.push('queries: must be an array');
  for (const [i, q] of (Array.isArray(json.queries) ? json.queries : []).entries()) {
    const at = `queries[${i}]`;
    if (!isObject(q)) {
      problems.push(`${at}: must be an object`);
      continue;
    }
    for (const k of Object.keys(q)) if (!QUERY_KEYS.has(k)) problems.push(`${at}.${k}: unknown field (allowed: ${[...QUERY_KEYS].join(', ')})`);
    for (const f of ['productTag', 'metric'] as const) if (typeof q[f] !== 'string' || q[f].length === 0) problems.push(`${at}.${f}: must be a non-empty string`);
    const text = Array.isArray(q.query) && q.query.every((l) => typeof l === 'string') ? q.query.join('\n') : q.query;
    if (typeof text !== 'string' || text.trim().length === 0) problems.push(`${at}.query: must be a PromQL string or a list of lines`);
    const ql = { ...labels, ...fieldMap(q.labels, `${at}.labels`, problems, 'label') };
    const qd = { ...defaults, ...fieldMap(q.defaults, `${at}.defaults`, problems, 'default') };
    for (const f of LABEL_FIELDS) if (!ql[f] && !qd[f]) problems.push(`${at}: no label and no default for ${f}`);
    const id = `${String(q.productTag)}/${String(q.metric).toLowerCase().replace(/_/g, '-')}`;
    if (seen.has(id)) problems.push(`${at}: a second query for ${q.productTag} ${q.metric}; one query per product and metric`);
    seen.add(id);
    if (typeof q.productTag === 'string' && typeof q.metric === 'string' && typeof text === 'string') {
      out.push({ productTag: q.productTag, metric: q.metric, query: text, labels: ql as Record<LabelField, string>, defaults: qd });
    }
  }
  if (out.length === 0 && problems.length === 0) problems.push('queries: at least one query is needed');
  if (problems.length > 0) throw new UsageQueriesError(source, problems);
  return out;
}

export function loadUsageQueries(path?: string, env: NodeJS.ProcessEnv = process.env): UsageQuery[] {
  const file = path ?? (env.REMIT_USAGE_QUERIES_PATH || DEFAULT_USAGE_QUERIES_PATH);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UsageQueriesError(file, [`cannot read it as JSON: ${(err as Error).message}`]);
  }
  return parseUsageQueries(json, file);
}

/** A PromQL duration of `ms`: 3600000 -> "1h", 5000 -> "5s", 1500 -> "1500ms". */
export function promDuration(ms: number): string {
  if (!Number.isInteger(ms) || ms <= 0) throw new Error(`not a positive whole number of ms: ${ms}`);
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** The query as sent: every `$hour` becomes the length of one hour as a PromQL duration. */
export function expandQuery(query: string, hourLengthMs: number): string {
  return query.replace(/\$hour\b/g, promDuration(hourLengthMs));
}

/** Evaluation time of hour H: its end, in Prometheus' unix seconds ("1767229200" or "1767229203.5"). */
export function evaluationTime(h: HourToRead): string {
  const ms = h.hourMs + h.hourLengthMs;
  return ms % 1000 === 0 ? String(ms / 1000) : (ms / 1000).toFixed(3);
}

function describeSeries(labels: Record<string, unknown>): string {
  const s = `{${Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}}`;
  return s.length > 200 ? `${s.slice(0, 197)}...}` : s;
}

// Prometheus renders sample values as Go floats: "4", "0.25", "1e+21", "NaN", "+Inf", "-Inf".
const PROM_FLOAT_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * The tallies of one query's answer (the `data` of a successful /api/v1/query response) for
 * hour `hourMs`, and one reason per series that cannot be billed (a whole answer of the wrong
 * shape is one reason). Series that map to the same key are summed exactly; a bad series is
 * left out alone, so that it never holds back the usage of other keys.
 */
export function mapQueryResult(data: unknown, q: UsageQuery, hourMs: number): HourRead {
  const where = `${q.productTag} ${q.metric}`;
  if (!isObject(data) || !Array.isArray(data.result)) return { tallies: [], rejected: [`${where}: the answer has no result list`] };
  if (data.resultType !== 'vector') return { tallies: [], rejected: [`${where}: the query must return an instant vector, got ${JSON.stringify(data.resultType)}; aggregate it (sum by (...)) in config/usage-queries.json`] };
  const problems: string[] = [];
  const byKey = new Map<string, { tally: Omit<RawTally, 'value'>; value: Decimal }>();
  const keyId = (f: Record<LabelField, string>) => [f.billingProvider, f.billingAccountId, f.orgId, f.sla, f.usage].join('\u0000');
  const hour = new Date(hourMs).toISOString();
  for (const series of data.result as unknown[]) {
    if (!isObject(series) || !isObject(series.metric)) {
      problems.push(`${where}: a series without labels`);
      continue;
    }
    const labels = series.metric;
    const name = describeSeries(labels);
    const fields = {} as Record<LabelField, string>;
    let ok = true;
    for (const f of LABEL_FIELDS) {
      const label = q.labels[f];
      const raw = label === undefined ? undefined : labels[label];
      const v = typeof raw === 'string' && raw !== '' ? raw : q.defaults[f];
      if (v === undefined) {
        problems.push(`${where} series ${name}: no ${f} (label ${JSON.stringify(label)} is missing or empty and there is no default)`);
        ok = false;
      } else fields[f] = v;
    }
    const sample = series.value;
    const text = Array.isArray(sample) && sample.length === 2 ? sample[1] : undefined;
    let value: Decimal | null = null;
    if (typeof text !== 'string') {
      problems.push(`${where} series ${name}: no sample value${isObject(series) && 'histogram' in series ? ' (a native histogram cannot be billed)' : ''}`);
    } else if (!PROM_FLOAT_RE.test(text)) {
      problems.push(`${where} series ${name}: value ${JSON.stringify(text)} is not a finite number`);
    } else {
      value = Decimal.parse(text.replace(/^\+/, '').replace(/^(-?)\./, '$10.').replace(/\.(?=[eE]|$)/, ''));
      if (value.isNegative()) {
        problems.push(`${where} series ${name}: value ${text} is negative`);
        value = null;
      }
    }
    if (!ok || value === null) continue;
    const tally = { orgId: fields.orgId, productTag: q.productTag, metric: q.metric, sla: fields.sla, usage: fields.usage, billingProvider: fields.billingProvider, billingAccountId: fields.billingAccountId, hour };
    const id = keyId(fields);
    const prev = byKey.get(id);
    if (prev) prev.value = prev.value.add(value);
    else byKey.set(id, { tally, value });
  }
  return { tallies: [...byKey.values()].map(({ tally, value }) => ({ ...tally, value: value.toNumber() })), rejected: problems };
}

/** Why a non-200 Prometheus answer failed, from its JSON error body when there is one. */
export function describeErrorAnswer(status: number, body: string): string {
  try {
    const j = JSON.parse(body) as { errorType?: unknown; error?: unknown };
    if (typeof j.error === 'string') return `HTTP ${status} ${typeof j.errorType === 'string' ? `${j.errorType}: ` : ''}${j.error}`;
  } catch {
    /* not JSON */
  }
  const text = body.replace(/\s+/g, ' ').trim();
  return `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ''}`;
}

function retryAfterMs(header: string | string[] | undefined): number | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

export interface PrometheusSourceOptions {
  /** Server base URL, e.g. http://prometheus:9090 or https://thanos.example/prometheus. */
  url: string;
  queries: UsageQuery[];
  token?: string;
  /** Per query; default 60 s. */
  timeoutMs?: number;
}

export class PrometheusSource implements UsageSource {
  readonly name = 'prometheus';
  private readonly agent: Agent;
  private readonly base: string;
  private readonly timeoutMs: number;

  constructor(private readonly o: PrometheusSourceOptions) {
    this.base = o.url.replace(/\/+$/, '');
    this.timeoutMs = o.timeoutMs ?? 60_000;
    this.agent = new Agent({ connections: 8, keepAliveTimeout: 10_000, connectTimeout: Math.min(this.timeoutMs, 10_000) });
  }

  get queries(): readonly UsageQuery[] {
    return this.o.queries;
  }

  async readHour(h: HourToRead): Promise<HourRead> {
    const settled = await Promise.allSettled(this.o.queries.map((q) => this.readQuery(q, h)));
    const out: HourRead = { tallies: [], rejected: [] };
    for (const s of settled) {
      // A read failure wins: the hour is read again anyway, and may then be fine.
      if (s.status === 'rejected') throw s.reason instanceof UsageReadError ? s.reason : new UsageReadError(String((s.reason as Error)?.message ?? s.reason));
      out.tallies.push(...s.value.tallies);
      out.rejected.push(...s.value.rejected);
    }
    return out;
  }

  private async readQuery(q: UsageQuery, h: HourToRead): Promise<HourRead> {
    const where = `${q.productTag} ${q.metric}`;
    const params = new URLSearchParams({
      query: expandQuery(q.query, h.hourLengthMs),
      time: evaluationTime(h),
      timeout: `${Math.max(1, Math.floor(this.timeoutMs / 1000))}s`,
      // Thanos: fail rather than answer from the stores that happen to be up.
      partial_response: 'false',
    });
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(`${this.base}/api/v1/query?${params.toString()}`, {
        dispatcher: this.agent,
        method: 'GET',
        headers: { accept: 'application/json', ...(this.o.token ? { authorization: `Bearer ${this.o.token}` } : {}) },
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
    } catch (err) {
      throw new UsageReadError(`${where}: Prometheus at ${this.base} could not be read: ${(err as Error).message}${(err as { code?: string }).code ? ` (${(err as { code?: string }).code})` : ''}`);
    }
    let body: string;
    try {
      body = await res.body.text();
    } catch (err) {
      throw new UsageReadError(`${where}: the answer of Prometheus at ${this.base} was cut off: ${(err as Error).message}`);
    }
    if (res.statusCode !== 200) {
      // Every error answer is a read failure: a 5xx or 429 passes, and a refused query (400
      // bad_data, 422 execution, 401/403/404) is a configuration problem that an operator fixes,
      // after which the retry succeeds. None of them says anything about the hour's usage.
      const hint = res.statusCode === 400 || res.statusCode === 422 ? ' (fix the query in the usage query file; the pull retries until it succeeds)' : '';
      throw new UsageReadError(`${where}: Prometheus answered ${describeErrorAnswer(res.statusCode, body)}${hint}`, res.statusCode, retryAfterMs(res.headers['retry-after']));
    }
    let json: { status?: unknown; data?: unknown; warnings?: unknown; error?: unknown; errorType?: unknown };
    try {
      json = JSON.parse(body) as typeof json;
    } catch {
      throw new UsageReadError(`${where}: Prometheus at ${this.base} answered 200 with something that is not JSON: ${body.slice(0, 120)}`, 200);
    }
    if (json.status !== 'success') throw new UsageReadError(`${where}: Prometheus answered status ${JSON.stringify(json.status)}: ${String(json.errorType ?? '')} ${String(json.error ?? '')}`.trim(), 200);
    if (Array.isArray(json.warnings) && json.warnings.length > 0) {
      // A partial answer (a store or a shard missing) would look like less usage; read it again.
      throw new UsageReadError(`${where}: Prometheus answered with warnings, the answer may be partial: ${json.warnings.slice(0, 3).join('; ')}`, 200);
    }
    return mapQueryResult(json.data, q, h.hourMs);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

export function createPrometheusSource(o: PrometheusSourceOptions): PrometheusSource {
  return new PrometheusSource(o);
}

/** The source configured by the environment, or undefined when REMIT_PROMETHEUS_URL is unset (no pull). */
export function prometheusSourceFromEnv(env: NodeJS.ProcessEnv = process.env): PrometheusSource | undefined {
  const url = env.REMIT_PROMETHEUS_URL;
  if (!url) return undefined;
  try {
    new URL(url);
  } catch {
    throw new Error(`REMIT_PROMETHEUS_URL must be a URL such as http://prometheus:9090, got ${JSON.stringify(url)}`);
  }
  const rawTimeout = env.REMIT_PROMETHEUS_TIMEOUT_SECONDS;
  const timeoutS = rawTimeout === undefined || rawTimeout === '' ? 60 : Number(rawTimeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new Error(`REMIT_PROMETHEUS_TIMEOUT_SECONDS must be a positive number, got ${JSON.stringify(rawTimeout)}`);
  return createPrometheusSource({ url, queries: loadUsageQueries(undefined, env), token: env.REMIT_PROMETHEUS_TOKEN || undefined, timeoutMs: Math.round(timeoutS * 1000) });
}
