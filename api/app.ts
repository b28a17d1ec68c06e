// The HTTP API (interface.md): ingestion, contracts, remittance reports and operator actions.
// Bad input gets a 4xx with a clear message and changes nothing; the service keeps running.

import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { timingSafeEqual } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { pingDatabase, type Database } from '../db/client';
import { listAuditTrail } from '../db/audit-trail';
import { putContract, listContracts } from '../db/contracts';
import type { TimeSettings } from '../db/ledger';
import { GROUP_BY, listRemittances, summarize, type GroupBy, type RemittanceFilter } from '../db/reports';
import type { Catalog } from '../domain/catalog';
import { parseContract } from '../domain/contracts';
import { isMarketplace, type Marketplace } from '../domain/key';
import { hourStart } from '../domain/time';
import type { Logger } from '../lib/log';
import { Metrics } from '../lib/metrics';
import { DEFAULT_OPERATION_LIMITS, parseOperationRequest, recalculateRemittances, resetRemittances, retryRemittances, type OperationDeps, type OperationLimits } from '../operations';
import { remittancesCsvHeader, remittancesCsvRows } from '../lib/remittance-csv';
import { REMITTANCE_STATUSES, type RemittanceStatus } from '../domain/lifecycle';
import { ingestTallies } from '../usage/ingest';
import {
  AuditPage, AuditQuery, ContractBody, ContractIdParams, ContractPut, ContractsPage, ContractsQuery, ErrorBody, Health, OperationBody, OperationResult, Readiness,
  RemittancesPage, RemittancesQuery, RetryBody, Summary, SummaryQuery, TalliesAccepted, TalliesBody, csvColumns,
} from './schemas';
import { describeSchemaErrors, validatorCompiler, type SchemaError } from './validation';

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

/** Security requirements as the document states them; each route's authorize hook enforces them. */
const BEARER = [{ bearer: [] }];
const PUBLIC: Array<Record<string, string[]>> = [];

const errorResponses = {
  400: { description: 'Bad input; nothing changed', ...ErrorBody },
  401: { description: 'Missing or wrong bearer token; nothing done (checked before the body is read)', ...ErrorBody },
};
const withBodyResponses = {
  ...errorResponses,
  413: { description: 'Body too large; nothing done', ...ErrorBody },
  415: { description: 'Not application/json; nothing done', ...ErrorBody },
};

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const now = deps.now ?? Date.now;
  const metrics = deps.metrics ?? new Metrics(deps.time.hourMs);
  const app = Fastify({ bodyLimit: deps.bodyLimitBytes ?? 64 * 1024 * 1024, logger: false }).withTypeProvider<TypeBoxTypeProvider>();
  // JSON only: a text/plain body is refused with 415 rather than read as a string.
  app.removeContentTypeParser('text/plain');
  app.setValidatorCompiler(validatorCompiler);
  // Responses are sent as built (the schemas document them; a serializer would drop what they miss).
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  // Every route states its operationId and security, so the document cannot leave one out.
  const routes: RegisteredRoute[] = [];
  app.addHook('onRoute', (route) => {
    if (route.method === 'HEAD') return;
    const schema = route.schema as { operationId?: string; security?: RegisteredRoute['security'] } | undefined;
    if (!schema?.operationId || !schema.security) throw new Error(`route ${String(route.method)} ${route.url} has no operationId or security in its schema (api/app.ts)`);
    for (const method of [route.method].flat()) routes.push({ method, url: route.url, operationId: schema.operationId, security: schema.security });
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'remit',
        version: '0.1.0',
        description:
          'Hourly metered-usage remittance to cloud marketplaces. Ingestion endpoints take REMIT_INGEST_TOKEN, contract changes REMIT_CONTRACTS_TOKEN (else the ingest token) or the operator token, operator endpoints REMIT_OPERATOR_TOKEN, and /metrics REMIT_METRICS_TOKEN when it is set.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
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

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; details?: unknown; validation?: SchemaError[]; validationContext?: string }, req, reply) => {
    let status = err.statusCode ?? 500;
    let message = err.message;
    let details = err.details;
    if (err.validation) {
      // The route's schema refused the request before its handler ran: nothing changed.
      const tallies = req.routeOptions.url === '/v1/tallies' && err.validationContext === 'body';
      const errors = describeSchemaErrors(err.validation, tallies);
      status = 400;
      details = errors.slice(0, 1000);
      message = tallies
        ? `${errors.length} invalid tall${errors.length === 1 ? 'y field' : 'y fields'}; nothing was stored`
        : `invalid ${err.validationContext === 'querystring' ? 'query' : (err.validationContext ?? 'request')}: ${errors.map((e) => `${e.field} ${e.message}`.trim()).slice(0, 3).join('; ')}${errors.length > 3 ? ` (and ${errors.length - 3} more)` : ''}; nothing was changed`;
    }
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
      details = undefined;
    }
    void reply.status(status).send({ error: message, ...(details ? { errors: details } : {}) });
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.requests.inc({ route: req.routeOptions.url ?? 'unknown', method: req.method, status: String(reply.statusCode) });
  });

  app.get('/healthz', { schema: { operationId: 'getHealth', summary: 'Liveness', tags: ['service'], security: PUBLIC, response: { 200: Health } } }, async () => ({ ok: true }));
  // Unauthenticated: a failing check says 'unavailable'; its error (hosts, users, versions) goes to the log.
  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'getReadiness',
        summary: 'Readiness: database and Temporal, each ok or unavailable (the cause is in the service log)',
        tags: ['service'],
        security: PUBLIC,
        response: { 200: { description: 'Ready', ...Readiness }, 503: { description: 'Not ready', ...Readiness } },
      },
    },
    async (_req, reply) => {
      const checks: Record<string, string> = {};
      try {
        await pingDatabase(deps.database);
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
    },
  );
  app.get('/openapi.json', { schema: { operationId: 'getOpenApiDocument', summary: 'This document', tags: ['service'], security: PUBLIC, response: { 200: { description: 'The OpenAPI 3.1 document, generated from the routes', type: 'object' } } } }, async () => app.swagger());
  app.get(
    '/metrics',
    {
      schema: {
        operationId: 'getMetrics',
        summary: 'Prometheus metrics (text format); with REMIT_METRICS_TOKEN set, that bearer token is required',
        tags: ['service'],
        // Optional: open unless REMIT_METRICS_TOKEN is set.
        security: [{}, ...BEARER],
        response: { 200: { description: 'Prometheus text format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } }, 401: { description: 'REMIT_METRICS_TOKEN is set and was not given', ...ErrorBody } },
      },
      ...(deps.tokens.metrics ? { onRequest: metricsToken(deps.tokens.metrics) } : {}),
    },
    async (_req, reply) => {
      const text = await metrics.scrape(deps.database);
      return reply.type(metrics.contentType).send(text);
    },
  );

  app.post(
    '/v1/tallies',
    {
      onRequest: authorize(['ingest']),
      schema: {
        operationId: 'ingestTallies',
        summary: 'Ingest tallies (all-or-nothing, idempotent: a re-sent hour replaces its value)',
        description: 'Any invalid tally refuses the whole batch: 400 with every problem as {index, field, message}, nothing stored.',
        tags: ['ingestion'],
        security: BEARER,
        body: TalliesBody,
        response: { 202: { description: 'Stored; billed when the hour closes', ...TalliesAccepted }, ...withBodyResponses },
      },
    },
    async (req, reply) => {
      const nowMs = now();
      const r = await ingestTallies({ database: deps.database, catalog: deps.catalog, time: deps.time, now: () => nowMs }, req.body);
      if (!r.ok) for (const [reason, n] of Object.entries(r.refused)) metrics.talliesRefused.inc({ reason }, n);
      if (!r.ok) throw new HttpError(400, `${r.errors.length} invalid tall${r.errors.length === 1 ? 'y field' : 'y fields'}; nothing was stored`, r.errors.slice(0, 1000));
      metrics.talliesIngested.inc(r.tallies.length);
      // Answered once stored: the sweep that closes this hour computes the keys and starts the
      // marketplace records' workflows, so a slow or unreachable Temporal never slows ingestion.
      return reply.status(202).send({ accepted: r.tallies.length, keys: r.keys, windowClosesAt: new Date(windowCloseOf(nowMs)).toISOString() });
    },
  );

  /** When the window of the remittance hour containing `ms` closes: its usage is computed then. */
  const windowCloseOf = (ms: number) => hourStart(ms, deps.time.hourMs) + Math.round(deps.time.hourMs * (1 + deps.time.graceHours));

  app.put(
    '/v1/contracts/:contractId',
    {
      onRequest: authorize(['contracts', 'operator']),
      schema: {
        operationId: 'putContract',
        summary: 'Create or replace a contract; usage waiting for it is billed. A change is in the audit trail (action put-contract) under the token that made it',
        tags: ['contracts'],
        security: BEARER,
        params: ContractIdParams,
        body: ContractBody,
        response: { 200: { description: 'Replaced (or unchanged)', ...ContractPut }, 201: { description: 'Created', ...ContractPut }, ...withBodyResponses },
      },
    },
    async (req, reply) => {
      const v = parseContract(req.params.contractId, req.body, { catalog: deps.catalog });
      if (!v.ok) throw new HttpError(400, 'invalid contract; nothing was stored', v.errors);
      const r = await putContract(deps.database, v.contract, { actor: actorOf(req), claimedBy: claimedBy(req) });
      // Keys it can change are marked owing in the same transaction: the next hour's close bills them.
      return reply.status(r.created ? 201 : 200).send({ contract: v.contract, created: r.created, changed: r.changed, keysAffected: r.keys.length, ...(r.changed ? { windowClosesAt: new Date(windowCloseOf(now())).toISOString() } : {}) });
    },
  );

  app.get(
    '/v1/contracts',
    { onRequest: authorize(['ingest', 'contracts', 'operator']), schema: { operationId: 'listContracts', summary: 'List contracts', tags: ['contracts'], security: BEARER, querystring: ContractsQuery, response: { 200: ContractsPage, ...errorResponses } } },
    async (req) => {
      const q = req.query;
      checkQuery(q);
      return listContracts(deps.database, { orgId: q.orgId, billingAccountId: q.billingAccountId, cursor: q.cursor, limit: q.limit ?? 100 });
    },
  );

  app.get(
    '/v1/remittances',
    {
      onRequest: authorize(['operator']),
      schema: {
        operationId: 'listRemittances',
        summary: 'One item per remittance (key and hour): quantity, claim, status, error code, reason, receipt, billedOn, deadline, workflow id, periods, and keyParked ({since, reason, errorCode}) while its key is parked after repeated rejections',
        description: `As JSON, or as CSV for spreadsheets with format=csv or Accept: text/csv (listed before application/json): RFC 4180, CRLF line ends, a header line, one row per item of the same page with the same values and reasons (columns: ${csvColumns}); the next page's cursor is in the X-Next-Cursor header.`,
        tags: ['reports'],
        security: BEARER,
        querystring: RemittancesQuery,
        response: {
          200: {
            description: 'One page',
            headers: { 'X-Next-Cursor': { description: 'CSV only: the cursor of the next page, absent on the last', schema: { type: 'string' } } },
            content: { 'application/json': { schema: RemittancesPage }, 'text/csv': { schema: { type: 'string' } } },
          },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      // CSV for spreadsheets (lib/remittance-csv.ts): the same page of rows, the next cursor in a header.
      const { format, ...query } = req.query;
      const csv = format === 'csv' || (format === undefined && wantsCsv(req.headers.accept));
      const page = await listRemittances(deps.database, filterFromQuery(query), { cursor: query.cursor, limit: query.limit ?? 100 }).catch((e: Error) => {
        if (e.message === 'invalid cursor') throw new HttpError(400, 'invalid cursor');
        throw e;
      });
      const items = page.items.map(present);
      if (!csv) return { items, nextCursor: page.nextCursor };
      if (page.nextCursor) reply.header('x-next-cursor', page.nextCursor);
      return reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="remittances.csv"').send(remittancesCsvHeader() + remittancesCsvRows(items));
    },
  );

  app.get(
    '/v1/remittances/summary',
    { onRequest: authorize(['operator']), schema: { operationId: 'summarizeRemittances', summary: 'Totals by status (and by groupBy) for a range: what did we remit and what not', tags: ['reports'], security: BEARER, querystring: SummaryQuery, response: { 200: Summary, ...errorResponses } } },
    async (req) => {
      const { groupBy: raw, ...query } = req.query;
      const groupBy = (raw ?? '').split(',').filter(Boolean);
      for (const g of groupBy) if (!(GROUP_BY as readonly string[]).includes(g)) throw new HttpError(400, `groupBy must be a comma-separated list of ${GROUP_BY.join(', ')}`);
      return summarize(deps.database, filterFromQuery(query), groupBy as GroupBy[]);
    },
  );

  const operations = [
    { path: '/v1/remittances/reset', operationId: 'resetRemittances', run: resetRemittances, withStatus: false, body: OperationBody, summary: 'Void what was remitted in the range so it is billed again (dry run previews)' },
    { path: '/v1/remittances/recalculate', operationId: 'recalculateRemittances', run: recalculateRemittances, withStatus: false, body: OperationBody, summary: 'Recompute from current tallies and contracts and remit the difference (dry run previews)' },
    { path: '/v1/remittances/retry', operationId: 'retryRemittances', run: retryRemittances, withStatus: true, body: RetryBody, summary: 'Retry failed remittances now (dry run previews)' },
  ] as const;
  for (const { path, operationId, run, withStatus, body, summary } of operations) {
    app.post(
      path,
      { onRequest: authorize(['operator']), schema: { operationId, summary, tags: ['operator'], security: BEARER, body, response: { 200: OperationResult, ...withBodyResponses } } },
      async (req) => {
        const p = parseOperationRequest(req.body, actorOf(req), { withStatus, limits, hourMs: deps.time.hourMs, claimedBy: claimedBy(req) });
        if (!p.ok) throw new HttpError(400, 'invalid request; nothing was changed', p.errors);
        if (!deps.catalog.products.get(p.value.productTag)) throw new HttpError(400, `unknown productTag ${JSON.stringify(p.value.productTag)}`);
        return run(opDeps, p.value);
      },
    );
  }

  app.get(
    '/v1/audit',
    { onRequest: authorize(['operator']), schema: { operationId: 'listAuditTrail', summary: 'Operator actions and contract changes: who, when, what, result (newest first)', tags: ['operator'], security: BEARER, querystring: AuditQuery, response: { 200: AuditPage, ...errorResponses } } },
    async (req) => {
      const before = req.query.cursor ? Number(req.query.cursor) : undefined;
      if (before !== undefined && !Number.isSafeInteger(before)) throw new HttpError(400, 'invalid cursor');
      const page = await listAuditTrail(deps.database, { before, limit: req.query.limit ?? 100 });
      return { ...page, items: page.items.map((e) => ({ ...e, at: e.at.toISOString() })) };
    },
  );

  await app.ready();
  routesOf.set(app as unknown as FastifyInstance, routes);
  return app as unknown as FastifyInstance;
}

export interface RegisteredRoute {
  method: string;
  /** Fastify's form: /v1/contracts/:contractId */
  url: string;
  operationId: string;
  security: Array<Record<string, string[]>>;
}

const routesOf = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/** The routes an API built by buildApi serves (HEAD aside), as their schemas declare them. */
export function registeredRoutes(app: FastifyInstance): RegisteredRoute[] {
  return routesOf.get(app) ?? [];
}

/** GET /metrics with REMIT_METRICS_TOKEN set: that token only (Prometheus' `authorization` scrape setting). */
function metricsToken(expected: string) {
  return async (req: FastifyRequest) => {
    const token = bearerToken(req);
    if (token === undefined || !tokenMatches(token, expected)) throw new HttpError(401, token === undefined ? 'missing bearer token' : 'invalid bearer token');
  };
}

/** Text PostgreSQL can take (the schemas already refuse a repeated parameter): a NUL gave a 500. */
function checkQuery(q: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(q)) {
    if (typeof v === 'string' && v.includes('\u0000')) throw new HttpError(400, `query parameter ${k} must not contain NUL`);
  }
}

function filterFromQuery(q: Omit<SummaryQuery, 'groupBy'> & { cursor?: string; limit?: number }): RemittanceFilter {
  checkQuery(q);
  const date = (f: 'from' | 'to') => {
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
    key: { billingProvider: r.billingProvider as Marketplace, billingAccountId: r.billingAccountId, orgId: r.orgId, productTag: r.productTag, metric: r.metric, sla: r.sla, usage: r.usage },
    remittanceHour: new Date(r.remittanceHour).toISOString(),
    quantity: r.bill,
    claim: r.claim,
    dimension: r.dimension,
    status: r.status as RemittanceStatus,
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

