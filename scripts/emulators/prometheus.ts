// A small Prometheus HTTP API emulator for tests and the local stack (plain HTTP, loopback by
// default). It does not evaluate PromQL: you load the series a query would answer, and a query
// answers every loaded series whose metric name (`__name__`) occurs in the query text. At
// evaluation time t a series answers with its latest sample in (t - lookback, t], as Prometheus'
// instant queries do; the name is dropped from the answer, as aggregations drop it.
//
//   GET|POST /api/v1/query        query, time (unix seconds or RFC 3339; default now)
//   GET|POST /api/v1/query_range  query, start, end, step (seconds)
//   GET      /-/ready, /-/healthy
//
// Admin API:
//   POST   /_emulator/series   {series: [{metric: {__name__, ...labels}, values: [[unixSeconds, "value"], ...]}]}
//                              (or one series, or a list); samples are merged into a series with
//                              the same labels, a sample at the same time replaces the old one
//   GET    /_emulator/series   everything loaded
//   DELETE /_emulator/series   forget every series
//   GET    /_emulator/queries  every query received, with its evaluation time and outcome
//   POST   /_emulator/faults   {kind, count?, durationMs?}: server-error (503), timeout (never
//                              answers), throttle (429 with Retry-After), lost-response (drops
//                              the connection)
//   GET|DELETE /_emulator/faults
//   POST   /_emulator/reset    forget series, queries and faults

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FaultQueue, sharedAdminRoute, type FaultKind } from './faults';

const SUPPORTED_FAULTS: readonly FaultKind[] = ['server-error', 'timeout', 'throttle', 'lost-response'];
const MAX_BODY = 16 * 1024 * 1024;

export interface PrometheusEmulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /**
   * How far back an instant query looks for a sample (Prometheus' lookback delta, 5 minutes).
   * Default: hourMs / 12, which is 5 minutes for a real hour and scales with REMIT_HOUR_SECONDS.
   */
  lookbackMs?: number;
  /** Length of an hour in ms, for the default lookback; default 3,600,000. */
  hourMs?: number;
  now?: () => number;
}

export interface EmulatorSeries {
  metric: Record<string, string>;
  /** [unix seconds, value as Prometheus renders it ("4", "0.5", "NaN")], sorted by time. */
  values: Array<[number, string]>;
}

export interface EmulatorQuery {
  at: string;
  path: string;
  query: string;
  /** Evaluation time, unix seconds (the end of the range for query_range). */
  time: number;
  /** `ok`, or the fault / error that answered. */
  outcome: string;
  series: number;
}

export interface PrometheusEmulator {
  url: string;
  host: string;
  port: number;
  faults: FaultQueue;
  /** Load series (the same as POST /_emulator/series). */
  load(series: EmulatorSeries | EmulatorSeries[]): void;
  series(): EmulatorSeries[];
  clearSeries(): void;
  queries(): EmulatorQuery[];
  reset(): void;
  close(): Promise<void>;
}

class PromError extends Error {
  constructor(
    readonly status: number,
    readonly errorType: string,
    message: string,
  ) {
    super(message);
  }
}

const NAME_CHARS = /[a-zA-Z0-9_:]/;

/** True when `name` occurs in `query` as a whole metric name. */
export function mentions(query: string, name: string): boolean {
  for (let i = query.indexOf(name); i >= 0; i = query.indexOf(name, i + 1)) {
    const before = i === 0 ? '' : query[i - 1]!;
    const after = query[i + name.length] ?? '';
    if (!NAME_CHARS.test(before) && !NAME_CHARS.test(after)) return true;
  }
  return false;
}

function parseTime(v: string | undefined, what: string, def?: number): number {
  if (v === undefined || v === '') {
    if (def !== undefined) return def;
    throw new PromError(400, 'bad_data', `invalid parameter "${what}": missing`);
  }
  const n = Number(v);
  if (Number.isFinite(n)) return n;
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) throw new PromError(400, 'bad_data', `invalid parameter "${what}": cannot parse "${v}" to a valid timestamp`);
  return ms / 1000;
}

function parseSeries(body: unknown): EmulatorSeries[] {
  const list = Array.isArray(body) ? body : body && typeof body === 'object' && Array.isArray((body as { series?: unknown }).series) ? (body as { series: unknown[] }).series : [body];
  return list.map((s, i) => {
    if (!s || typeof s !== 'object') throw new Error(`series[${i}] must be an object {metric, values}`);
    const { metric, values } = s as { metric?: unknown; values?: unknown };
    if (!metric || typeof metric !== 'object' || Array.isArray(metric)) throw new Error(`series[${i}].metric must be an object of labels`);
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(metric)) {
      if (typeof v !== 'string') throw new Error(`series[${i}].metric.${k} must be a string`);
      labels[k] = v;
    }
    if (!labels.__name__) throw new Error(`series[${i}].metric.__name__ is required: a query selects series by name`);
    if (!Array.isArray(values)) throw new Error(`series[${i}].values must be a list of [unixSeconds, "value"]`);
    const samples = values.map((p, j): [number, string] => {
      if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'number' || !Number.isFinite(p[0]) || (typeof p[1] !== 'string' && typeof p[1] !== 'number')) {
        throw new Error(`series[${i}].values[${j}] must be [unixSeconds, "value"]`);
      }
      return [p[0], String(p[1])];
    });
    return { metric: labels, values: samples };
  });
}

function labelId(labels: Record<string, string>): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export async function startPrometheusEmulator(options: PrometheusEmulatorOptions = {}): Promise<PrometheusEmulator> {
  const now = options.now ?? Date.now;
  const lookbackS = (options.lookbackMs ?? (options.hourMs ?? 3_600_000) / 12) / 1000;
  const faults = new FaultQueue(now);
  const store = new Map<string, EmulatorSeries>();
  const log: EmulatorQuery[] = [];
  const hanging = new Set<http.ServerResponse>();

  function load(input: EmulatorSeries | EmulatorSeries[]): void {
    for (const s of Array.isArray(input) ? input : [input]) {
      const id = labelId(s.metric);
      const existing = store.get(id) ?? { metric: { ...s.metric }, values: [] };
      const byTime = new Map(existing.values.map((v) => [v[0], v]));
      for (const v of s.values) byTime.set(v[0], [v[0], v[1]]);
      existing.values = [...byTime.values()].sort((a, b) => a[0] - b[0]);
      store.set(id, existing);
    }
  }

  function select(query: string): EmulatorSeries[] {
    return [...store.values()].filter((s) => mentions(query, s.metric.__name__!));
  }

  function sampleAt(s: EmulatorSeries, t: number): [number, string] | undefined {
    let found: [number, string] | undefined;
    for (const v of s.values) {
      if (v[0] > t) break;
      if (v[0] > t - lookbackS) found = v;
    }
    return found;
  }

  function publicLabels(s: EmulatorSeries): Record<string, string> {
    const { __name__: _name, ...rest } = s.metric;
    return rest;
  }

  function instant(query: string, t: number) {
    const result = [];
    for (const s of select(query)) {
      const v = sampleAt(s, t);
      if (v) result.push({ metric: publicLabels(s), value: [t, v[1]] });
    }
    return { resultType: 'vector', result };
  }

  function range(query: string, start: number, end: number, step: number) {
    if (!(step > 0)) throw new PromError(400, 'bad_data', 'invalid parameter "step": zero or negative query resolution step widths are not accepted');
    if (end < start) throw new PromError(400, 'bad_data', 'invalid parameter "end": end timestamp must not be before start time');
    if ((end - start) / step > 11_000) throw new PromError(400, 'bad_data', 'exceeded maximum resolution of 11,000 points per timeseries');
    const result = [];
    for (const s of select(query)) {
      const values: Array<[number, string]> = [];
      for (let t = start; t <= end; t += step) {
        const v = sampleAt(s, t);
        if (v) values.push([t, v[1]]);
      }
      if (values.length > 0) result.push({ metric: publicLabels(s), values });
    }
    return { resultType: 'matrix', result };
  }

  function reset(): void {
    store.clear();
    log.length = 0;
    faults.clear();
  }

  function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  function handleApi(req: http.IncomingMessage, res: http.ServerResponse, path: string, params: URLSearchParams): void {
    const query = params.get('query') ?? '';
    const entry: EmulatorQuery = { at: new Date(now()).toISOString(), path, query, time: Number.NaN, outcome: 'ok', series: 0 };
    log.push(entry);
    try {
      if (!query) throw new PromError(400, 'bad_data', 'invalid parameter "query": unknown position: parse error: no expression found in input');
      let data: { resultType: string; result: unknown[] };
      if (path === '/api/v1/query') {
        entry.time = parseTime(params.get('time') ?? undefined, 'time', now() / 1000);
        data = instant(query, entry.time);
      } else {
        const start = parseTime(params.get('start') ?? undefined, 'start');
        entry.time = parseTime(params.get('end') ?? undefined, 'end');
        data = range(query, start, entry.time, Number(params.get('step')));
      }
      const fault = faults.take({}, SUPPORTED_FAULTS);
      if (fault) entry.outcome = fault;
      switch (fault) {
        case 'server-error':
          return send(res, 503, { status: 'error', errorType: 'unavailable', error: 'the query engine is unavailable (injected fault)' });
        case 'throttle':
          return send(res, 429, { status: 'error', errorType: 'too_many_requests', error: 'too many concurrent queries (injected fault)' }, { 'retry-after': '1' });
        case 'timeout':
          hanging.add(res);
          res.on('close', () => hanging.delete(res));
          return;
        case 'lost-response':
          res.socket?.destroy();
          return;
        default:
          entry.series = data.result.length;
          return send(res, 200, { status: 'success', data });
      }
    } catch (err) {
      const e = err instanceof PromError ? err : new PromError(500, 'internal', (err as Error).message);
      entry.outcome = `${e.status} ${e.errorType}`;
      return send(res, e.status, { status: 'error', errorType: e.errorType, error: e.message });
    }
  }

  function handleAdmin(req: http.IncomingMessage, res: http.ServerResponse, path: string, body: string): void {
    const route = `${req.method} ${path}`;
    try {
      switch (route) {
        case 'POST /_emulator/series': {
          const series = parseSeries(JSON.parse(body || 'null'));
          load(series);
          return send(res, 200, { loaded: series.length, series: store.size });
        }
        case 'GET /_emulator/series':
          return send(res, 200, { series: [...store.values()] });
        case 'DELETE /_emulator/series':
          store.clear();
          return send(res, 200, { series: [] });
        case 'GET /_emulator/queries':
          return send(res, 200, { queries: log });
        default: {
          const shared = sharedAdminRoute(route, body, faults, reset, (spec) => {
            if (!SUPPORTED_FAULTS.includes(spec.kind)) throw new Error(`the Prometheus emulator supports the faults ${SUPPORTED_FAULTS.join(', ')}, not ${spec.kind}`);
            if (spec.match) throw new Error('the Prometheus emulator does not match faults by customer or dimension');
          });
          return shared ? send(res, shared.status, shared.body) : send(res, 404, { error: `no admin route ${route}` });
        }
      }
    } catch (err) {
      return send(res, 400, { error: (err as Error).message });
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.socket.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://emulator');
      const body = Buffer.concat(chunks).toString('utf8');
      if (url.pathname.startsWith('/_emulator/')) return handleAdmin(req, res, url.pathname, body);
      if (url.pathname === '/-/ready' || url.pathname === '/-/healthy') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end('Prometheus emulator is Ready.\n');
      }
      if (url.pathname === '/api/v1/query' || url.pathname === '/api/v1/query_range') {
        if (req.method !== 'GET' && req.method !== 'POST') return send(res, 405, { status: 'error', errorType: 'bad_data', error: `method ${req.method} not allowed` });
        const params = new URLSearchParams(url.search);
        // POST takes the same parameters form-encoded in the body.
        if (req.method === 'POST') for (const [k, v] of new URLSearchParams(body)) params.set(k, v);
        return handleApi(req, res, url.pathname, params);
      }
      return send(res, 404, { status: 'error', errorType: 'not_found', error: `${req.method} ${url.pathname} is not served by the Prometheus emulator` });
    });
    req.on('error', () => res.socket?.destroy());
  });

  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${address.port}`,
    host,
    port: address.port,
    faults,
    load,
    series: () => [...store.values()].map((s) => ({ metric: { ...s.metric }, values: s.values.map((v) => [v[0], v[1]] as [number, string]) })),
    clearSeries: () => store.clear(),
    queries: () => log.map((q) => ({ ...q })),
    reset,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.socket?.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
