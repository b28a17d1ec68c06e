// The HTTP API (interface.md): ingestion, contracts, remittance reports and operator actions.
// Bad input gets a 4xx with a clear message and changes nothing; the service keeps running.

import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { timingSafeEqual } from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { Database } from '../db/client';
import { putContract, listContracts } from '../db/contracts';
import type { TimeSettings } from '../db/ledger';
import { GROUP_BY, listRemittances, summarize, type GroupBy, type RemittanceFilter } from '../db/reports';
import { storeTallies } from '../db/tallies';
import type { Catalog } from '../domain/catalog';
import { parseContract } from '../domain/contracts';
import { isMarketplace } from '../domain/key';
import { validateTallyBatch } from '../domain/tally';
import { hourStart } from '../domain/time';
import type { Logger } from '../lib/log';
import { Metrics } from '../lib/metrics';
import { DEFAULT_OPERATION_LIMITS, parseOperationRequest, recalculateRemittances, resetRemittances, retryRemittances, type OperationDeps, type OperationLimits } from '../operations';
import { remittancesCsvHeader, remittancesCsvRows } from '../lib/remittance-csv';
import { REMITTANCE_STATUSES } from '../domain/lifecycle';
import { openApiDocument } from './openapi';

export interface ApiDeps {
  database: Database;
  catalog: Catalog;
  time: TimeSettings;
  temporal?: { client: Client; taskQueue: string };
  /**
   * Bearer tokens by role. `contracts` (REMIT_CONTRACTS_TOKEN) may change contracts; unset, the
   * ingest token does. `metrics` (REMIT_METRICS_TOKEN): when set, GET /metrics requires it.
   */
  tokens: { ingest: string; operator: string; contracts?: string; metrics?: string };
  /** Bounds of one reset / recalculate / retry request unless it says `force: true`. */
  operationLimits?: OperationLimits;
  log: Logger;
  metrics?: Metrics;
  now?: () => number;
  bodyLimitBytes?: number;
}

/** What a token may do. The audit trail names the token that acted (credentials below), never a header. */
type Role = 'ingest' | 'contracts' | 'operator';

class HttpError extends Error {
  constructor(readonly statusCode: number, message: string, readonly details?: unknown) {
    super(message);
  }
}

function bearerToken(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  return typeof h === 'string' && h.startsWith('Bearer ') ? h.slice(7) : undefined;
}

function tokenMatches(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const now = deps.now ?? Date.now;
  const metrics = deps.metrics ?? new Metrics(deps.time.hourMs);
  const app = Fastify({ bodyLimit: deps.bodyLimitBytes ?? 64 * 1024 * 1024, logger: false });
  // JSON only: a text/plain body is refused with 415 rather than read as a string.
  app.removeContentTypeParser('text/plain');
  const opDeps: OperationDeps = { database: deps.database, catalog: deps.catalog, time: deps.time, temporal: deps.temporal, now };

  const limits = deps.operationLimits ?? DEFAULT_OPERATION_LIMITS;
  // Each credential and the roles it holds. Without a token of its own, the contracts role is
  // the ingest token's.
  const credentials: Array<{ name: string; token: string; roles: Role[] }> = [
    { name: 'operator-token', token: deps.tokens.operator, roles: ['operator'] },
    { name: 'ingest-token', token: deps.tokens.ingest, roles: deps.tokens.contracts ? ['ingest'] : ['ingest', 'contracts'] },
    ...(deps.tokens.contracts ? [{ name: 'contracts-token', token: deps.tokens.contracts, roles: ['contracts'] as Role[] }] : []),
  ];
  const credentialOf = new WeakMap<FastifyRequest, string>();
  // An onRequest hook: it runs before the body is read, so a request without a valid token is
  // refused with 401 whatever it carries (a malformed or oversized body is never parsed).
  const authorize = (allowed: Role[]) => async (req: FastifyRequest) => {
    const token = bearerToken(req);
    const c = token === undefined ? undefined : credentials.find((x) => x.roles.some((r) => allowed.includes(r)) && tokenMatches(token, x.token));
    if (!c) throw new HttpError(401, token === undefined ? 'missing bearer token' : 'invalid bearer token');
    credentialOf.set(req, c.name);
  };
  /**
   * The audit trail's actor is the credential that was presented (`operator-token`, ...). The
   * x-remit-actor header is kept only as what the client says about itself (`claimedBy`).
   */
  const actorOf = (req: FastifyRequest) => credentialOf.get(req) ?? 'unknown';
  const claimedBy = (req: FastifyRequest) => {
    const h = req.headers['x-remit-actor'];
    return typeof h === 'string' && h !== '' ? h.slice(0, 200) : undefined;
  };

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; details?: unknown }, req, reply) => {
    let status = err.statusCode ?? 500;
    let message = err.message;
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') message = 'content-type must be application/json';
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') status = 413;
    if (err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      status = 400;
      message = `malformed JSON: ${err.message}`;
    }
    if (status >= 500) {
      // The detail (a database error, a stack) goes to the log, never to the client.
      deps.log.error({ err, url: req.url }, 'request failed');
      message = 'internal error; the cause is in the service log';
      err.details = undefined;
    }
    void reply.status(status).send({ error: message, ...(err.details ? { errors: err.details } : {}) });
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.inc('remit_api_requests_total', { route: req.routeOptions.url ?? 'unknown', method: req.method, status: String(reply.statusCode) });
  });

  app.get('/healthz', async () => ({ ok: true }));
  // Unauthenticated: a failing check says 'unavailable'; its error (hosts, users, versions) goes to the log.
  app.get('/readyz', async (_req, reply) => {
    const checks: Record<string, string> = {};
    try {
      await deps.database.pool.query('SELECT 1');
      checks.database = 'ok';
    } catch (err) {
      deps.log.warn({ err }, 'readiness: the database is unavailable');
      checks.database = 'unavailable';
    }
    if (deps.temporal) {
      try {
        await deps.temporal.client.connection.workflowService.getSystemInfo({});
        checks.temporal = 'ok';
      } catch (err) {
        deps.log.warn({ err }, 'readiness: Temporal is unavailable');
        checks.temporal = 'unavailable';
      }
    } else checks.temporal = 'not configured';
    const ready = Object.values(checks).every((v) => v === 'ok');
    return reply.status(ready ? 200 : 503).send({ ready, checks });
  });
  app.get('/openapi.json', async () => openApiDocument());
  const metricsAuth = deps.tokens.metrics ? { onRequest: metricsToken(deps.tokens.metrics) } : {};
  app.get('/metrics', metricsAuth, async (_req, reply) => {
    await metrics.collectFromDatabase(deps.database);
    return reply.type('text/plain; version=0.0.4').send(metrics.render());
  });

  app.post('/v1/tallies', { onRequest: authorize(['ingest']) }, async (req, reply) => {
    const nowMs = now();
    const v = validateTallyBatch(req.body, { catalog: deps.catalog, hourMs: deps.time.hourMs, nowMs, maxUsageAgeDays: deps.time.maxUsageAgeDays });
    if (!v.ok) for (const [reason, n] of Object.entries(v.refused ?? {})) metrics.inc('remit_tallies_refused_total', { reason }, n);
    if (!v.ok) throw new HttpError(400, `${v.errors.length} invalid tall${v.errors.length === 1 ? 'y field' : 'y fields'}; nothing was stored`, v.errors.slice(0, 1000));
    const { keys } = await storeTallies(deps.database, v.tallies);
    metrics.inc('remit_tallies_ingested_total', {}, v.tallies.length);
    // Answered once stored: the sweep that closes this hour computes the keys and starts the
    // marketplace records' workflows, so a slow or unreachable Temporal never slows ingestion.
    return reply.status(202).send({ accepted: v.tallies.length, keys: keys.length, windowClosesAt: new Date(windowCloseOf(nowMs)).toISOString() });
  });

  /** When the window of the remittance hour containing `ms` closes: its usage is computed then. */
  const windowCloseOf = (ms: number) => hourStart(ms, deps.time.hourMs) + Math.round(deps.time.hourMs * (1 + deps.time.graceHours));

  app.put<{ Params: { contractId: string } }>('/v1/contracts/:contractId', { onRequest: authorize(['contracts', 'operator']) }, async (req, reply) => {
    const v = parseContract(req.params.contractId, req.body, { catalog: deps.catalog });
    if (!v.ok) throw new HttpError(400, 'invalid contract; nothing was stored', v.errors);
    const r = await putContract(deps.database, v.contract, { actor: actorOf(req), claimedBy: claimedBy(req) });
    // Keys it can change are marked owing in the same transaction: the next hour's close bills them.
    return reply.status(r.created ? 201 : 200).send({ contract: v.contract, created: r.created, changed: r.changed, keysAffected: r.keys.length, ...(r.changed ? { windowClosesAt: new Date(windowCloseOf(now())).toISOString() } : {}) });
  });

  app.get<{ Querystring: Record<string, string> }>('/v1/contracts', { onRequest: authorize(['ingest', 'contracts', 'operator']) }, async (req) => {
    const q = req.query;
    checkQuery(q);
    return listContracts(deps.database, { orgId: q.orgId, billingAccountId: q.billingAccountId, cursor: q.cursor, limit: limitOf(q.limit) });
  });

  app.get<{ Querystring: Record<string, string> }>('/v1/remittances', { onRequest: authorize(['operator']) }, async (req, reply) => {
    // CSV for spreadsheets (lib/remittance-csv.ts): the same page of rows, the next cursor in a header.
    const { format, ...query } = req.query;
    if (format !== undefined && format !== 'json' && format !== 'csv') throw new HttpError(400, 'format must be json or csv');
    const csv = format === 'csv' || (format === undefined && wantsCsv(req.headers.accept));
    const page = await listRemittances(deps.database, filterFromQuery(query), { cursor: query.cursor, limit: limitOf(query.limit) }).catch((e: Error) => {
      if (e.message === 'invalid cursor') throw new HttpError(400, 'invalid cursor');
      throw e;
    });
    const items = page.items.map(present);
    if (!csv) return { items, nextCursor: page.nextCursor };
    if (page.nextCursor) reply.header('x-next-cursor', page.nextCursor);
    return reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="remittances.csv"').send(remittancesCsvHeader() + remittancesCsvRows(items));
  });

  app.get<{ Querystring: Record<string, string> }>('/v1/remittances/summary', { onRequest: authorize(['operator']) }, async (req) => {
    checkQuery(req.query);
    const groupBy = (req.query.groupBy ?? '').split(',').filter(Boolean);
    for (const g of groupBy) if (!(GROUP_BY as readonly string[]).includes(g)) throw new HttpError(400, `groupBy must be a comma-separated list of ${GROUP_BY.join(', ')}`);
    return summarize(deps.database, filterFromQuery(req.query), groupBy as GroupBy[]);
  });

  for (const [path, run, withStatus] of [
    ['/v1/remittances/reset', resetRemittances, false],
    ['/v1/remittances/recalculate', recalculateRemittances, false],
    ['/v1/remittances/retry', retryRemittances, true],
  ] as const) {
    app.post(path, { onRequest: authorize(['operator']) }, async (req) => {
      const p = parseOperationRequest(req.body, actorOf(req), { withStatus, limits, hourMs: deps.time.hourMs, claimedBy: claimedBy(req) });
      if (!p.ok) throw new HttpError(400, 'invalid request; nothing was changed', p.errors);
      if (!deps.catalog.products.get(p.value.productTag)) throw new HttpError(400, `unknown productTag ${JSON.stringify(p.value.productTag)}`);
      return run(opDeps, p.value);
    });
  }

  app.get<{ Querystring: Record<string, string> }>('/v1/audit', { onRequest: authorize(['operator']) }, async (req) => {
    const limit = limitOf(req.query.limit);
    const before = req.query.cursor ? Number(req.query.cursor) : Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(before)) throw new HttpError(400, 'invalid cursor');
    const r = await deps.database.pool.query(
      `SELECT id, at, actor, action, dry_run AS "dryRun", request, result FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2`,
      [before, limit + 1],
    );
    const items = r.rows.slice(0, limit);
    return { items, nextCursor: r.rows.length > limit ? String(items[items.length - 1].id) : null };
  });

  return app;
}

/** GET /metrics with REMIT_METRICS_TOKEN set: that token only (Prometheus' `authorization` scrape setting). */
function metricsToken(expected: string) {
  return async (req: FastifyRequest) => {
    const token = bearerToken(req);
    if (token === undefined || !tokenMatches(token, expected)) throw new HttpError(401, token === undefined ? 'missing bearer token' : 'invalid bearer token');
  };
}

function limitOf(raw: string | undefined): number {
  if (raw === undefined) return 100;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new HttpError(400, 'limit must be an integer from 1 to 1000');
  return n;
}

/** Each query parameter once, as text PostgreSQL can take: a repeated one (an array) or a NUL gave a 500. */
function checkQuery(q: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(q)) {
    if (typeof v !== 'string') throw new HttpError(400, `query parameter ${k} must be given once`);
    if (v.includes('\u0000')) throw new HttpError(400, `query parameter ${k} must not contain NUL`);
  }
}

function filterFromQuery(q: Record<string, string | undefined>): RemittanceFilter {
  checkQuery(q);
  const date = (f: string) => {
    const v = q[f];
    if (v === undefined) return undefined;
    const d = new Date(v);
    if (Number.isNaN(d.getTime())) throw new HttpError(400, `${f} must be an ISO-8601 instant`);
    return d;
  };
  if (q.billingProvider !== undefined && !isMarketplace(q.billingProvider)) throw new HttpError(400, `unknown billingProvider ${JSON.stringify(q.billingProvider)}`);
  const status = q.status?.split(',').filter(Boolean);
  for (const s of status ?? []) if (!(REMITTANCE_STATUSES as readonly string[]).includes(s)) throw new HttpError(400, `status must be one of ${REMITTANCE_STATUSES.join(', ')}`);
  return { orgId: q.orgId, billingAccountId: q.billingAccountId, billingProvider: q.billingProvider, productTag: q.productTag, metric: q.metric, status, from: date('from'), to: date('to') };
}

/** One remittance as the API shows it (interface.md). */
/** Accept: text/csv preferred over JSON (the first of the two listed wins; no q-value games). */
function wantsCsv(accept: string | undefined): boolean {
  if (!accept) return false;
  const types = accept.split(',').map((t) => t.split(';')[0]!.trim().toLowerCase());
  const csv = types.indexOf('text/csv');
  const json = types.findIndex((t) => t === 'application/json' || t === '*/*');
  return csv >= 0 && (json < 0 || csv < json);
}

function present(r: Awaited<ReturnType<typeof listRemittances>>['items'][number]) {
  return {
    id: r.id,
    key: { billingProvider: r.billingProvider, billingAccountId: r.billingAccountId, orgId: r.orgId, productTag: r.productTag, metric: r.metric, sla: r.sla, usage: r.usage },
    remittanceHour: new Date(r.remittanceHour).toISOString(),
    quantity: r.bill,
    claim: r.claim,
    dimension: r.dimension,
    status: r.status,
    errorCode: r.errorCode,
    reason: r.reason,
    receiptId: r.receiptId,
    billedOn: r.billedOn ? new Date(r.billedOn).toISOString() : null,
    deadline: r.deadline ? new Date(r.deadline).toISOString() : null,
    attempts: r.attempts,
    lastError: r.lastError,
    /** The marketplace record this remittance's quantity travels in (summed with other keys' of the same customer and dimension). */
    recordId: r.recordId,
    workflowId: r.workflowId,
    accumulationPeriods: r.periods,
    rebilledBy: r.rebilledBy,
    keyParked: r.keyParked,
  };
}

