// The OpenAPI document served at GET /openapi.json. Kept next to the routes it describes.

import { REMITTANCE_CSV_COLUMNS } from '../lib/remittance-csv';

const key = {
  type: 'object',
  properties: Object.fromEntries(['billingProvider', 'billingAccountId', 'orgId', 'productTag', 'metric', 'sla', 'usage'].map((k) => [k, { type: 'string' }])),
};
const error = { type: 'object', properties: { error: { type: 'string' }, errors: { type: 'array', items: { type: 'object' } } } };
const bearer = [{ bearer: [] }];
const operationBody = {
  type: 'object',
  required: ['productTag', 'start', 'end'],
  properties: {
    productTag: { type: 'string' },
    metric: { type: 'string', description: 'optional: only this metric of the product' },
    start: { type: 'string', format: 'date-time' },
    end: { type: 'string', format: 'date-time' },
    orgIds: { type: 'array', items: { type: 'string' } },
    billingAccountIds: { type: 'array', items: { type: 'string' } },
    dryRun: { type: 'boolean', default: false },
    force: { type: 'boolean', default: false, description: 'allow more than REMIT_OPERATION_MAX_HOURS remittance hours (default 168) or REMIT_OPERATION_MAX_IDS ids (default 100) in one request' },
  },
  description: 'Exactly one of orgIds and billingAccountIds. Remittance hours in [start, end). Bounded per request unless force is true (dry runs too). Audited under the token that made it; an x-remit-actor header is recorded as claimedBy, a note.',
};
const operationResult = {
  type: 'object',
  properties: {
    action: { type: 'string' },
    dryRun: { type: 'boolean' },
    changes: { type: 'array', items: { type: 'object', properties: { key, remittanceId: { type: 'string' }, remittanceHour: { type: 'string' }, status: { type: 'string' }, quantity: { type: 'integer' }, action: { type: 'string' } } } },
    started: { type: 'array', items: { type: 'string' } },
    auditId: { type: 'integer' },
  },
};
const remittanceFilters = ['orgId', 'billingAccountId', 'billingProvider', 'productTag', 'metric', 'status', 'from', 'to'].map((name) => ({ name, in: 'query', schema: { type: 'string' } }));
const page = [
  { name: 'cursor', in: 'query', schema: { type: 'string' } },
  { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
];
const responses = (ok: Record<string, unknown>, code = '200') => ({
  [code]: { description: 'OK', content: { 'application/json': { schema: ok } } },
  400: { description: 'Bad input; nothing changed', content: { 'application/json': { schema: error } } },
  401: { description: 'Missing or wrong bearer token; nothing done (checked before the body is read)', content: { 'application/json': { schema: error } } },
});

export function openApiDocument() {
  return {
    openapi: '3.1.0',
    info: { title: 'remit', version: '0.1.0', description: 'Hourly metered-usage remittance to cloud marketplaces. Ingestion endpoints take REMIT_INGEST_TOKEN, contract changes REMIT_CONTRACTS_TOKEN (else the ingest token) or the operator token, operator endpoints REMIT_OPERATOR_TOKEN, and /metrics REMIT_METRICS_TOKEN when it is set.' },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths: {
      '/v1/tallies': {
        post: {
          summary: 'Ingest tallies (all-or-nothing, idempotent: a re-sent hour replaces its value)',
          security: bearer,
          requestBody: {
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['tallies'],
                  properties: {
                    tallies: {
                      type: 'array',
                      items: {
                        type: 'object',
                        required: ['orgId', 'productTag', 'metric', 'sla', 'usage', 'billingProvider', 'billingAccountId', 'hour', 'value'],
                        properties: { ...key.properties, hour: { type: 'string', format: 'date-time', description: 'UTC instant on the hour' }, value: { type: 'number', minimum: 0 } },
                      },
                    },
                  },
                },
              },
            },
          },
          responses: { ...responses({ type: 'object', properties: { accepted: { type: 'integer' }, keys: { type: 'integer' }, remittancesStarted: { type: 'integer' } } }, '202'), 413: { description: 'Body too large' } },
        },
      },
      '/v1/contracts/{contractId}': {
        put: {
          summary: 'Create or replace a contract; usage waiting for it is billed. A change is in the audit trail (action put-contract) under the token that made it',
          security: bearer,
          parameters: [{ name: 'contractId', in: 'path', required: true, schema: { type: 'string' } }],
          requestBody: { content: { 'application/json': { schema: { type: 'object', required: ['orgId', 'billingProvider', 'billingAccountId', 'productTag', 'startDate'] } } } },
          responses: responses({ type: 'object' }),
        },
      },
      '/v1/contracts': { get: { summary: 'List contracts', security: bearer, parameters: [{ name: 'orgId', in: 'query', schema: { type: 'string' } }, { name: 'billingAccountId', in: 'query', schema: { type: 'string' } }, ...page], responses: responses({ type: 'object', properties: { items: { type: 'array' }, nextCursor: { type: ['string', 'null'] } } }) } },
      '/v1/remittances': {
        get: {
          summary: 'One item per remittance (key and hour): quantity, claim, status, error code, reason, receipt, billedOn, deadline, workflow id, periods, and keyParked ({since, reason, errorCode}) while its key is parked after repeated rejections',
          description:
            'As JSON, or as CSV for spreadsheets with format=csv or Accept: text/csv (listed before application/json): RFC 4180, CRLF line ends, a header line, one row per item of the same page with the same values and reasons (columns: ' +
            REMITTANCE_CSV_COLUMNS.map(([name]) => name).join(', ') +
            '); the next page\'s cursor is in the X-Next-Cursor header.',
          security: bearer,
          parameters: [...remittanceFilters, ...page, { name: 'format', in: 'query', schema: { type: 'string', enum: ['json', 'csv'], default: 'json' } }],
          responses: {
            ...responses({ type: 'object', properties: { items: { type: 'array' }, nextCursor: { type: ['string', 'null'] } } }),
            200: {
              description: 'OK',
              headers: { 'X-Next-Cursor': { description: 'CSV only: the cursor of the next page, absent on the last', schema: { type: 'string' } } },
              content: {
                'application/json': { schema: { type: 'object', properties: { items: { type: 'array' }, nextCursor: { type: ['string', 'null'] } } } },
                'text/csv': { schema: { type: 'string' } },
              },
            },
          },
        },
      },
      '/v1/remittances/summary': {
        get: {
          summary: 'Totals by status (and by groupBy) for a range: what did we remit and what not',
          security: bearer,
          parameters: [...remittanceFilters, { name: 'groupBy', in: 'query', schema: { type: 'string', description: 'comma-separated: billingProvider, billingAccountId, orgId, productTag, metric, status, period' } }],
          responses: responses({ type: 'object', properties: { totals: { type: 'object' }, groups: { type: 'array' } } }),
        },
      },
      '/v1/remittances/reset': { post: { summary: 'Void what was remitted in the range so it is billed again (dry run previews)', security: bearer, requestBody: { content: { 'application/json': { schema: operationBody } } }, responses: responses(operationResult) } },
      '/v1/remittances/recalculate': { post: { summary: 'Recompute from current tallies and contracts and remit the difference (dry run previews)', security: bearer, requestBody: { content: { 'application/json': { schema: operationBody } } }, responses: responses(operationResult) } },
      '/v1/remittances/retry': { post: { summary: 'Retry failed remittances now (dry run previews)', security: bearer, requestBody: { content: { 'application/json': { schema: { ...operationBody, properties: { ...operationBody.properties, status: { type: 'array', items: { enum: ['Failed', 'Expired'] } } } } } } }, responses: responses(operationResult) } },
      '/v1/audit': { get: { summary: 'Operator actions: who, when, what, result', security: bearer, parameters: page, responses: responses({ type: 'object' }) } },
      '/healthz': { get: { summary: 'Liveness', responses: { 200: { description: 'alive' } } } },
      '/readyz': { get: { summary: 'Readiness: database and Temporal, each ok or unavailable (the cause is in the service log)', responses: { 200: { description: 'ready' }, 503: { description: 'not ready' } } } },
      '/metrics': { get: { summary: 'Prometheus metrics; with REMIT_METRICS_TOKEN set, that bearer token is required', security: [{}, ...bearer], responses: { 200: { description: 'text/plain' }, 401: { description: 'REMIT_METRICS_TOKEN is set and was not given' } } } },
    },
  };
}
