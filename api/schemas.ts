// The HTTP API's request and response schemas (TypeBox, i.e. JSON Schema). Each route declares
// its own (api/app.ts): the request parts are validated with them before the handler runs (bad
// input: a 4xx naming each problem, nothing changed), they type the handler, and @fastify/swagger
// builds the OpenAPI document at GET /openapi.json from them. Responses are documented, not
// filtered: they are sent as the handler built them (test/integration/openapi.test.ts checks
// real answers against these schemas).
//
// The domain validators (domain/tally.ts, domain/contracts.ts, operations/index.ts) still run
// after the schema: they know the catalog, the clock and the rules between fields, which JSON
// Schema does not.

import { Type, type Static, type TSchema } from 'typebox';
import { GROUP_BY } from '../db/reports';
import { MARKETPLACES } from '../domain/key';
import { REMITTANCE_CSV_COLUMNS } from '../lib/remittance-csv';
import { REMITTANCE_STATUSES } from '../domain/lifecycle';

const Nullable = <T extends TSchema>(t: T, description?: string) => Type.Union([t, Type.Null()], description ? { description } : {});
const Instant = (description?: string) => Type.String({ format: 'date-time', ...(description ? { description } : {}) });

export const ErrorBody = Type.Object(
  {
    error: Type.String({ description: 'What was wrong, in one sentence' }),
    errors: Type.Optional(
      Type.Array(
        Type.Object({
          index: Type.Optional(Type.Integer({ description: 'POST /v1/tallies: position of the tally in `tallies`, -1 for the batch itself' })),
          field: Type.String(),
          message: Type.String(),
        }),
        { description: 'Every problem found, field by field' },
      ),
    ),
  },
  { $id: 'Error' },
);

export const Marketplace = Type.Enum(MARKETPLACES, { description: 'The marketplace that bills the customer' });
export const Status = Type.Enum(REMITTANCE_STATUSES);

const keyFields = {
  billingProvider: Marketplace,
  billingAccountId: Type.String(),
  orgId: Type.String(),
  productTag: Type.String(),
  metric: Type.String(),
  sla: Type.String(),
  usage: Type.String(),
};
export const RemittanceKey = Type.Object(keyFields, { $id: 'RemittanceKey' });

// ---------------------------------------------------------------------------------------------
// Ingestion

export const Tally = Type.Object(
  {
    ...keyFields,
    hour: Instant('UTC instant on the hour (REMIT_HOUR_SECONDS)'),
    value: Type.Number({ minimum: 0, description: 'Usage in metric units, a finite number >= 0' }),
  },
  { $id: 'Tally' },
);
export const TalliesBody = Type.Object({ tallies: Type.Array(Tally) });
export type TalliesBody = Static<typeof TalliesBody>;

export const TalliesAccepted = Type.Object({
  accepted: Type.Integer({ description: 'Tallies stored (one per key and hour)' }),
  keys: Type.Integer({ description: 'Distinct remittance keys among them' }),
  windowClosesAt: Instant('When the window of the current remittance hour closes: its usage is computed and sent then'),
});

// ---------------------------------------------------------------------------------------------
// Contracts

export const ContractBody = Type.Object(
  {
    contractId: Type.Optional(Type.String({ description: 'If given, the same as in the path' })),
    orgId: Type.String(),
    billingProvider: Marketplace,
    billingAccountId: Type.String(),
    productTag: Type.String(),
    startDate: Type.String({ description: 'ISO-8601 instant or date; active from it on (inclusive)' }),
    endDate: Type.Optional(Nullable(Type.String(), 'ISO-8601 instant or date, exclusive; null or absent for open-ended')),
    licenseId: Type.Optional(Nullable(Type.String())),
    aws: Type.Optional(Nullable(Type.Object({ productCode: Type.String(), customerAwsAccountId: Type.String(), licenseArn: Type.Optional(Nullable(Type.String())) }), 'Required for billingProvider aws, absent otherwise')),
    azure: Type.Optional(Nullable(Type.Object({ resourceId: Type.String(), planId: Type.String() }), 'Required for billingProvider azure, absent otherwise')),
    metrics: Type.Optional(
      Nullable(Type.Array(Type.Object({ dimension: Type.String({ description: "A marketplace dimension of the product's catalog" }), value: Type.Number({ minimum: 0, description: 'Billing units included by the contract' }) }))),
    ),
  },
  { $id: 'ContractBody' },
);
export type ContractBody = Static<typeof ContractBody>;

export const Contract = Type.Object(
  {
    contractId: Type.String(),
    orgId: Type.String(),
    billingProvider: Marketplace,
    billingAccountId: Type.String(),
    productTag: Type.String(),
    startDate: Type.String(),
    endDate: Nullable(Type.String()),
    licenseId: Nullable(Type.String()),
    aws: Type.Optional(Nullable(Type.Object({ productCode: Type.String(), customerAwsAccountId: Type.String(), licenseArn: Type.Optional(Nullable(Type.String())) }))),
    azure: Type.Optional(Nullable(Type.Object({ resourceId: Type.String(), planId: Type.String() }))),
    metrics: Type.Array(Type.Object({ dimension: Type.String(), value: Type.Union([Type.Number(), Type.String()], { description: 'Billing units; as stored, an exact decimal string' }) })),
    updatedAt: Type.Optional(Instant('In lists: when it was last stored')),
  },
  { $id: 'Contract' },
);

export const ContractPut = Type.Object({
  contract: Contract,
  created: Type.Boolean(),
  changed: Type.Boolean(),
  keysAffected: Type.Integer({ description: 'Keys the change can bill differently: marked owing, billed at the next hour close' }),
  windowClosesAt: Type.Optional(Instant('When a change is billed (only when something changed)')),
});

export const ContractIdParams = Type.Object({ contractId: Type.String() });

// ---------------------------------------------------------------------------------------------
// Lists and reports

const Cursor = Type.String({ description: 'nextCursor of the previous page' });
const Limit = Type.Integer({ minimum: 1, maximum: 1000, default: 100 });
const page = { cursor: Type.Optional(Cursor), limit: Type.Optional(Limit) };
const NextCursor = Nullable(Type.String(), 'null on the last page');

export const ContractsQuery = Type.Object({ orgId: Type.Optional(Type.String()), billingAccountId: Type.Optional(Type.String()), ...page });
export type ContractsQuery = Static<typeof ContractsQuery>;
export const ContractsPage = Type.Object({ items: Type.Array(Contract), nextCursor: NextCursor });

const filters = {
  orgId: Type.Optional(Type.String()),
  billingAccountId: Type.Optional(Type.String()),
  billingProvider: Type.Optional(Type.String({ enum: [...MARKETPLACES] })),
  productTag: Type.Optional(Type.String()),
  metric: Type.Optional(Type.String()),
  status: Type.Optional(Type.String({ description: `Comma-separated statuses: ${REMITTANCE_STATUSES.join(', ')}` })),
  from: Type.Optional(Instant('Remittance hours from this instant on (inclusive)')),
  to: Type.Optional(Instant('Remittance hours before this instant')),
};
export const RemittancesQuery = Type.Object({ ...filters, ...page, format: Type.Optional(Type.String({ enum: ['json', 'csv'], default: 'json', description: 'csv: the same page as CSV (also chosen by Accept: text/csv listed before application/json)' })) });
export type RemittancesQuery = Static<typeof RemittancesQuery>;
export const SummaryQuery = Type.Object({ ...filters, groupBy: Type.Optional(Type.String({ description: `Comma-separated: ${GROUP_BY.join(', ')}` })) });
export type SummaryQuery = Static<typeof SummaryQuery>;

export const Remittance = Type.Object(
  {
    id: Type.String(),
    key: RemittanceKey,
    remittanceHour: Instant(),
    quantity: Type.Integer({ description: 'Billing units' }),
    claim: Type.String({ description: 'Metric units, exact decimal' }),
    dimension: Nullable(Type.String()),
    status: Status,
    errorCode: Nullable(Type.String()),
    reason: Nullable(Type.String({ description: 'Why, in words' })),
    receiptId: Nullable(Type.String({ description: "The marketplace's receipt of the record" })),
    billedOn: Nullable(Instant()),
    deadline: Nullable(Instant('Last moment the marketplace accepts the record')),
    attempts: Type.Integer(),
    lastError: Nullable(Type.String()),
    recordId: Nullable(Type.String({ description: "The marketplace record this remittance's quantity travels in (summed with other keys' of the same customer and dimension)" })),
    workflowId: Nullable(Type.String()),
    accumulationPeriods: Type.Array(Type.Object({ period: Type.String({ description: 'YYYY-MM' }), bill: Type.Integer() }, { additionalProperties: true, description: 'The billing of each month this hour settles: bill, claim, month-to-date, coverage, gratis' })),
    rebilledBy: Nullable(Type.Object({ remittanceId: Type.String(), remittanceHour: Type.String(), status: Type.String() }), 'The later remittance that bills this amount again'),
    keyParked: Nullable(Type.Object({ since: Type.String(), reason: Type.String(), errorCode: Nullable(Type.String()) }), 'Set while the key is parked after repeated rejections'),
  },
  { $id: 'Remittance' },
);
export const RemittancesPage = Type.Object({ items: Type.Array(Remittance), nextCursor: NextCursor });

const Totals = Type.Object({ remittances: Type.Integer(), quantity: Type.Integer(), claim: Type.String() });
export const Summary = Type.Object({
  totals: Type.Record(Type.String(), Totals, { description: 'By status' }),
  groups: Type.Array(Type.Object({ status: Status, remittances: Type.Integer(), quantity: Type.Integer(), claim: Type.String() }, { additionalProperties: true, description: 'One row per group (the groupBy fields) and status' })),
});

// ---------------------------------------------------------------------------------------------
// Operator actions

const operationFields = {
  productTag: Type.String({ minLength: 1 }),
  metric: Type.Optional(Type.String({ minLength: 1, description: 'Only this metric of the product' })),
  start: Instant('Remittance hours from this instant on (inclusive)'),
  end: Instant('Remittance hours before this instant'),
  orgIds: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  billingAccountIds: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  dryRun: Type.Optional(Type.Boolean({ default: false, description: 'Return what would change, change nothing' })),
  force: Type.Optional(Type.Boolean({ default: false, description: 'Allow more than REMIT_OPERATION_MAX_HOURS remittance hours (default 168) or REMIT_OPERATION_MAX_IDS ids (default 100) in one request' })),
};
const operationDescription =
  'Exactly one of orgIds and billingAccountIds. Remittance hours in [start, end). Bounded per request unless force is true (dry runs too). Audited under the token that made it; an x-remit-actor header is recorded as claimedBy, a note.';
export const OperationBody = Type.Object(operationFields, { description: operationDescription });
export type OperationBody = Static<typeof OperationBody>;
const Retryable = Type.Enum(['Failed', 'Expired']);
export const RetryBody = Type.Object({ ...operationFields, status: Type.Optional(Type.Union([Retryable, Type.Array(Retryable)], { description: 'Failed, Expired, or a list of them (default: both)' })) }, { description: operationDescription });

export const OperationResult = Type.Object({
  action: Type.Enum(['reset', 'recalculate', 'retry']),
  dryRun: Type.Boolean(),
  changes: Type.Array(
    Type.Object(
      {
        key: RemittanceKey,
        remittanceId: Type.Optional(Type.String()),
        remittanceHour: Type.Optional(Type.String()),
        status: Type.Optional(Type.String()),
        quantity: Type.Integer({ description: 'Billing units affected (voided, retried) or that would be billed now (recalculate)' }),
        claim: Type.Optional(Type.String()),
        action: Type.String(),
      },
      { description: 'One change per remittance (or key, for a recalculation that bills the difference)' },
    ),
  ),
  started: Type.Array(Type.String(), { description: 'Workflows of failed records signalled to retry in their own hour; empty on a dry run' }),
  owing: Type.Integer({ description: 'Keys marked owing: the sweep that closes the current hour bills them. 0 on a dry run' }),
  auditId: Type.Integer(),
});

export const AuditQuery = Type.Object(page);
export type AuditQuery = Static<typeof AuditQuery>;
export const AuditPage = Type.Object({
  items: Type.Array(Type.Object({ id: Type.Integer(), at: Instant(), actor: Type.String({ description: 'The credential that acted: operator-token, ingest-token, contracts-token' }), action: Type.String(), dryRun: Type.Boolean(), request: Type.Unknown(), result: Type.Unknown() })),
  nextCursor: NextCursor,
});

// ---------------------------------------------------------------------------------------------
// Service endpoints

export const Health = Type.Object({ ok: Type.Boolean() });
export const Readiness = Type.Object({ ready: Type.Boolean(), checks: Type.Record(Type.String(), Type.String({ description: 'ok, unavailable or not configured' })) });

export const csvColumns = REMITTANCE_CSV_COLUMNS.map(([name]) => name).join(', ');
