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
import { isMarketplace, keyString, type RemittanceKey } from '../domain/key';
import { validateTallyBatch } from '../domain/tally';
import { hourStart } from '../domain/time';
import type { Logger } from '../lib/log';
import { Metrics } from '../lib/metrics';
import { startRemittances } from '../lib/remittance-client';
import { parseOperationRequest, recalculateRemittances, resetRemittances, retryRemittances, type OperationDeps } from '../operations';
import { REMITTANCE_STATUSES } from '../workflows/definitions';
import { openApiDocument } from './openapi';

export interface ApiDeps {
  database: Database;
  catalog: Catalog;
  time: TimeSettings;
  temporal?: { client: Client; taskQueue: string };
  tokens: { ingest: string; operator: string };
  log: Logger;
  metrics?: Metrics;
  now?: () => number;
  bodyLimitBytes?: number;
}

type Role = 'ingest' | 'operator';

class HttpError extends Error {
  constructor(readonly statusCode: number, message: string, readonly details?: unknown) {
    super(message);
  }
}

function tokenMatches(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const now = deps.now ?? Date.now;
  const metrics = deps.metrics ?? new Metrics();
  const app = Fastify({ bodyLimit: deps.bodyLimitBytes ?? 64 * 1024 * 1024, logger: false });
  // JSON only: a text/plain body is refused with 415 rather than read as a string.
  app.removeContentTypeParser('text/plain');
  const opDeps: OperationDeps = { database: deps.database, catalog: deps.catalog, time: deps.time, temporal: deps.temporal, now };

  // Workflows already started this hour by this process: many batches for the same keys cost
  // one Temporal round trip per key and hour, not one per batch.
  let startedHour = -1;
  const started = new Set<string>();

  const authorize = (roles: Role[]) => async (req: FastifyRequest) => {
    const h = req.headers.authorization;
    const token = typeof h === 'string' && h.startsWith('Bearer ') ? h.slice(7) : undefined;
    const ok = token !== undefined && roles.some((r) => tokenMatches(token, r === 'ingest' ? deps.tokens.ingest : deps.tokens.operator));
    if (!ok) throw new HttpError(401, token === undefined ? 'missing bearer token' : 'invalid bearer token');
  };
  const actorOf = (req: FastifyRequest) => (typeof req.headers['x-remit-actor'] === 'string' ? req.headers['x-remit-actor'] : 'operator');

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; details?: unknown }, req, reply) => {
    let status = err.statusCode ?? 500;
    let message = err.message;
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') message = 'content-type must be application/json';
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') status = 413;
    if (err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      status = 400;
      message = `malformed JSON: ${err.message}`;
    }
    if (status >= 500) deps.log.error({ err, url: req.url }, 'request failed');
    void reply.status(status).send({ error: message, ...(err.details ? { errors: err.details } : {}) });
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.inc('remit_api_requests_total', { route: req.routeOptions.url ?? 'unknown', method: req.method, status: String(reply.statusCode) });
  });

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_req, reply) => {
    const checks: Record<string, string> = {};
    try {
      await deps.database.pool.query('SELECT 1');
      checks.database = 'ok';
    } catch (e) {
      checks.database = (e as Error).message;
    }
    if (deps.temporal) {
      try {
        await deps.temporal.client.connection.workflowService.getSystemInfo({});
        checks.temporal = 'ok';
      } catch (e) {
        checks.temporal = (e as Error).message;
      }
    } else checks.temporal = 'not configured';
    const ready = Object.values(checks).every((v) => v === 'ok');
    return reply.status(ready ? 200 : 503).send({ ready, checks });
  });
  app.get('/openapi.json', async () => openApiDocument());
  app.get('/metrics', async (_req, reply) => {
    await metrics.collectFromDatabase(deps.database);
    return reply.type('text/plain; version=0.0.4').send(metrics.render());
  });

  app.post('/v1/tallies', { preHandler: authorize(['ingest']) }, async (req, reply) => {
    const nowMs = now();
    const v = validateTallyBatch(req.body, { catalog: deps.catalog, hourMs: deps.time.hourMs, nowMs, maxUsageAgeDays: deps.time.maxUsageAgeDays });
    if (!v.ok) for (const [reason, n] of Object.entries(v.refused ?? {})) metrics.inc('remit_tallies_refused_total', { reason }, n);
    if (!v.ok) throw new HttpError(400, `${v.errors.length} invalid tall${v.errors.length === 1 ? 'y field' : 'y fields'}; nothing was stored`, v.errors.slice(0, 1000));
    const { keys } = await storeTallies(deps.database, v.tallies);
    metrics.inc('remit_tallies_ingested_total', {}, v.tallies.length);
    const scheduled = await startCurrentHour(keys, nowMs);
    return reply.status(202).send({ accepted: v.tallies.length, keys: keys.length, ...scheduled });
  });

  /** Start the current hour's remittance for each key; a failure here loses nothing (the sweep). */
  async function startCurrentHour(keys: RemittanceKey[], nowMs: number): Promise<{ remittancesStarted: number; scheduling?: string }> {
    if (!deps.temporal) return { remittancesStarted: 0, scheduling: 'no Temporal client: the hourly sweep will start the remittances' };
    const hour = hourStart(nowMs, deps.time.hourMs);
    if (hour > startedHour) {
      started.clear();
      startedHour = hour;
    }
    // A request of an earlier hour (it began before the hour turned) starts its keys without the
    // cache; and keys are remembered only for the hour they were started for, checked after the
    // await: a slow start of hour H must not mark its keys as started for H+1, or their tallies
    // of H+1 would never get a workflow (found by npm run chaos).
    const todo = hour === startedHour ? keys.filter((k) => !started.has(keyString(k))) : keys;
    const temporal = deps.temporal;
    try {
      await startRemittances({ client: temporal.client, taskQueue: temporal.taskQueue, time: deps.time, database: deps.database }, todo, hour);
      if (hour === startedHour) for (const k of todo) started.add(keyString(k));
      return { remittancesStarted: todo.length };
    } catch (err) {
      deps.log.warn({ err }, 'could not start remittance workflows; the hourly sweep will start them');
      return { remittancesStarted: 0, scheduling: 'deferred to the hourly sweep: Temporal unavailable' };
    }
  }

  app.put<{ Params: { contractId: string } }>('/v1/contracts/:contractId', { preHandler: authorize(['ingest', 'operator']) }, async (req, reply) => {
    const v = parseContract(req.params.contractId, req.body, { catalog: deps.catalog });
    if (!v.ok) throw new HttpError(400, 'invalid contract; nothing was stored', v.errors);
    const r = await putContract(deps.database, v.contract);
    const scheduled = r.changed ? await startCurrentHour(r.keys, now()) : { remittancesStarted: 0 };
    return reply.status(r.created ? 201 : 200).send({ contract: v.contract, created: r.created, changed: r.changed, keysAffected: r.keys.length, ...scheduled });
  });

  app.get<{ Querystring: Record<string, string> }>('/v1/contracts', { preHandler: authorize(['ingest', 'operator']) }, async (req) => {
    const q = req.query;
    return listContracts(deps.database, { orgId: q.orgId, billingAccountId: q.billingAccountId, cursor: q.cursor, limit: limitOf(q.limit) });
  });

  app.get<{ Querystring: Record<string, string> }>('/v1/remittances', { preHandler: authorize(['operator']) }, async (req) => {
    const page = await listRemittances(deps.database, filterFromQuery(req.query), { cursor: req.query.cursor, limit: limitOf(req.query.limit) }).catch((e: Error) => {
      if (e.message === 'invalid cursor') throw new HttpError(400, 'invalid cursor');
      throw e;
    });
    return { items: page.items.map(present), nextCursor: page.nextCursor };
  });

  app.get<{ Querystring: Record<string, string> }>('/v1/remittances/summary', { preHandler: authorize(['operator']) }, async (req) => {
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
    app.post(path, { preHandler: authorize(['operator']) }, async (req) => {
      const p = parseOperationRequest(req.body, actorOf(req), { withStatus });
      if (!p.ok) throw new HttpError(400, 'invalid request; nothing was changed', p.errors);
      if (!deps.catalog.products.get(p.value.productTag)) throw new HttpError(400, `unknown productTag ${JSON.stringify(p.value.productTag)}`);
      return run(opDeps, p.value);
    });
  }

  app.get<{ Querystring: Record<string, string> }>('/v1/audit', { preHandler: authorize(['operator']) }, async (req) => {
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
    workflowId: r.workflowId,
    accumulationPeriods: r.periods,
    rebilledBy: r.rebilledBy,
    keyParked: r.keyParked,
  };
}

