// The OpenAPI document served at GET /openapi.json. Kept next to the routes it describes.

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
  },
  description: 'Exactly one of orgIds and billingAccountIds. Remittance hours in [start, end).',
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
  401: { description: 'Missing or wrong bearer token; nothing done', content: { 'application/json': { schema: error } } },
});

export function openApiDocument() {
  return {
    openapi: '3.1.0',
    info: { title: 'remit', version: '0.1.0', description: 'Hourly metered-usage remittance to cloud marketplaces. Ingestion endpoints take REMIT_INGEST_TOKEN, operator endpoints REMIT_OPERATOR_TOKEN.' },
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
          summary: 'Create or replace a contract; usage waiting for it is billed',
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
          security: bearer,
          parameters: [...remittanceFilters, ...page],
          responses: responses({ type: 'object', properties: { items: { type: 'array' }, nextCursor: { type: ['string', 'null'] } } }),
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
      '/readyz': { get: { summary: 'Readiness: database and Temporal', responses: { 200: { description: 'ready' }, 503: { description: 'not ready' } } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { 200: { description: 'text/plain' } } } },
    },
  };
}
