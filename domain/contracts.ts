// Contracts: marketplace entitlements of an org for a product. They decide three things for
// billing (billing.md): how much usage is already paid for (coverage), whether a month is free
// (gratis), and which license and marketplace identifiers a record carries. Pure; workflow-safe.

import { Decimal } from './decimal';
import { parseInstant, isoString } from './instant';
import { isMarketplace, MARKETPLACES, type Marketplace } from './key';
import { monthOf, monthStartMs } from './time';
import type { Catalog } from './catalog';

/** A committed amount, in billing units of a marketplace dimension. */
export interface ContractMetric {
  dimension: string;
  /** A JSON number from the API, or a decimal string from PostgreSQL NUMERIC; read exactly. */
  value: number | string;
}

export interface AwsContractIds {
  productCode: string;
  customerAwsAccountId: string;
  licenseArn?: string | null;
}

export interface AzureContractIds {
  resourceId: string;
  planId: string;
}

export interface Contract {
  contractId: string;
  orgId: string;
  billingProvider: Marketplace;
  billingAccountId: string;
  productTag: string;
  /** ISO-8601 instant. Active from this instant on (inclusive). */
  startDate: string;
  /** ISO-8601 instant, exclusive; null for open-ended. */
  endDate: string | null;
  licenseId: string | null;
  aws?: AwsContractIds | null;
  azure?: AzureContractIds | null;
  metrics: ContractMetric[];
}

function instantMs(c: Contract, field: 'startDate' | 'endDate', value: string): number {
  const ms = Date.parse(value);
  // Stored contracts were validated on the way in; an unreadable date here is corrupt data, and
  // guessing would move coverage between months.
  if (Number.isNaN(ms)) throw new Error(`contract ${c.contractId}: ${field} is not a date: ${JSON.stringify(value)}`);
  return ms;
}

export function startMs(c: Contract): number {
  return instantMs(c, 'startDate', c.startDate);
}

/** A contract is active at t when start <= t and (end is null or t < end). */
export function isActiveAt(c: Contract, tMs: number): boolean {
  return startMs(c) <= tMs && (c.endDate === null || c.endDate === undefined || tMs < instantMs(c, 'endDate', c.endDate));
}

export function activeContracts(contracts: readonly Contract[], tMs: number): Contract[] {
  return contracts.filter((c) => isActiveAt(c, tMs));
}

/**
 * Committed billing units on `dimension` of the contracts active at t. Dimensions match exactly
 * (they are marketplace identifiers); repeated entries in one contract add up, as in the
 * original system.
 */
export function coverageFor(contracts: readonly Contract[], tMs: number, dimension: string): Decimal {
  let total = Decimal.ZERO;
  for (const c of contracts) {
    if (!isActiveAt(c, tMs)) continue;
    for (const m of c.metrics) {
      if (m.dimension === dimension) total = total.add(Decimal.from(m.value));
    }
  }
  return total;
}

function nonBlank(v: string | null | undefined): string | null {
  return typeof v === 'string' && v.trim() !== '' ? v : null;
}

/** The license a contract carries: its licenseId, else its AWS license ARN. */
export function licenseOf(c: Contract): string | null {
  return nonBlank(c.licenseId) ?? nonBlank(c.aws?.licenseArn);
}

/** Newest start first; equal starts by the smaller license, then the smaller contract id. */
function byNewestStart(a: Contract, b: Contract): number {
  const d = startMs(b) - startMs(a);
  if (d !== 0) return d;
  const la = licenseOf(a) ?? '';
  const lb = licenseOf(b) ?? '';
  if (la !== lb) return la < lb ? -1 : 1;
  return a.contractId < b.contractId ? -1 : a.contractId > b.contractId ? 1 : 0;
}

/**
 * The contract whose license a remittance uses (billing.md): among the contracts active at t that
 * carry a license, the newest start; on equal starts the lexicographically smaller license id
 * (then contract id, so the choice never depends on input order). Null when none carries one.
 * Contracts without a license still count for coverage.
 */
export function selectLicenseContract(contracts: readonly Contract[], tMs: number): Contract | null {
  const licensed = activeContracts(contracts, tMs).filter((c) => licenseOf(c) !== null);
  licensed.sort(byNewestStart);
  return licensed[0] ?? null;
}

/**
 * The contract that supplies the marketplace identifiers of a record: the license contract when
 * there is one (its license belongs with its customer), else the active contract with the newest
 * start (ties: smaller contract id). Null when no contract is active at t.
 */
export function selectTargetContract(contracts: readonly Contract[], tMs: number): Contract | null {
  const licensed = selectLicenseContract(contracts, tMs);
  if (licensed) return licensed;
  const active = activeContracts(contracts, tMs);
  active.sort(byNewestStart);
  return active[0] ?? null;
}

/**
 * Gratis month (billing.md): every contract active at t starts strictly after 00:00 UTC on the
 * 1st of t's month. Requires at least one active contract: with none there is nothing that
 * started this month, and "every" of nothing must not make a month free.
 */
export function isGratis(contracts: readonly Contract[], tMs: number): boolean {
  const monthStart = monthStartMs(monthOf(tMs));
  const active = activeContracts(contracts, tMs);
  return active.length > 0 && active.every((c) => startMs(c) > monthStart);
}

// ---------------------------------------------------------------------------------------------
// Validation of the PUT /v1/contracts/{contractId} body.

export interface ContractFieldError {
  field: string;
  message: string;
}

export interface ContractValidationOptions {
  /**
   * When given, the product must be in the catalog and every committed dimension must be one the
   * product bills on the contract's marketplace: a misspelt dimension would otherwise cover
   * nothing, silently, and the customer would pay for what the contract already paid.
   */
  catalog?: Catalog;
}

const MAX_ID_LENGTH = 255;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'number') return String(v);
  return typeof v;
}

function idError(v: unknown): string | null {
  if (typeof v !== 'string') return `must be a non-empty string, got ${describe(v)}`;
  if (v.trim() === '') return 'must be a non-empty string';
  if (v.trim() !== v) return 'must not start or end with spaces';
  if (v.length > MAX_ID_LENGTH) return `must be at most ${MAX_ID_LENGTH} characters`;
  if (/[\u0000-\u001f\u007f]/.test(v)) return 'must not contain control characters';
  return null;
}

export function validateContractId(contractId: unknown): ContractFieldError[] {
  const e = idError(contractId);
  return e ? [{ field: 'contractId', message: e }] : [];
}

/** Every problem of a PUT /v1/contracts body, each with its field; empty when valid. */
export function validateContract(body: unknown, opts: ContractValidationOptions = {}): ContractFieldError[] {
  const r = parse(body, opts);
  return 'errors' in r ? r.errors : [];
}

/**
 * Validate a PUT /v1/contracts/{contractId} body and normalize it into a Contract: dates as
 * canonical UTC ISO strings, absent optionals as null, only the marketplace object that fits the
 * provider kept.
 */
export function parseContract(contractId: unknown, body: unknown, opts: ContractValidationOptions = {}): { ok: true; contract: Contract } | { ok: false; errors: ContractFieldError[] } {
  const errors = validateContractId(contractId);
  const r = parse(body, opts);
  if ('errors' in r) errors.push(...r.errors);
  if (isObject(body) && body.contractId !== undefined && body.contractId !== contractId) {
    errors.push({ field: 'contractId', message: `differs from the contract id in the path (${describe(contractId)})` });
  }
  if (errors.length > 0 || !('contract' in r)) return { ok: false, errors };
  return { ok: true, contract: { ...r.contract, contractId: contractId as string } };
}

function parse(body: unknown, opts: ContractValidationOptions): { contract: Omit<Contract, 'contractId'> } | { errors: ContractFieldError[] } {
  const errors: ContractFieldError[] = [];
  const err = (field: string, message: string) => errors.push({ field, message });
  if (!isObject(body)) return { errors: [{ field: '', message: `the body must be a JSON object, got ${describe(body)}` }] };

  for (const f of ['orgId', 'billingAccountId', 'productTag'] as const) {
    const e = idError(body[f]);
    if (e) err(f, e);
  }

  const provider = body.billingProvider;
  if (!isMarketplace(provider)) err('billingProvider', `must be one of ${MARKETPLACES.join(', ')}, got ${describe(provider)}`);

  const start = parseInstant(body.startDate, { allowDateOnly: true });
  if ('error' in start) err('startDate', start.error);
  let endMs: number | null = null;
  if (body.endDate !== undefined && body.endDate !== null) {
    const end = parseInstant(body.endDate, { allowDateOnly: true });
    if ('error' in end) err('endDate', end.error);
    else {
      endMs = end.ms;
      if ('ms' in start && end.ms <= start.ms) err('endDate', 'must be after startDate (the end is exclusive)');
    }
  }

  let licenseId: string | null = null;
  if (body.licenseId !== undefined && body.licenseId !== null) {
    const e = idError(body.licenseId);
    if (e) err('licenseId', `${e} (or null)`);
    else licenseId = body.licenseId as string;
  }

  let aws: AwsContractIds | undefined;
  let azure: AzureContractIds | undefined;
  const present = (v: unknown) => v !== undefined && v !== null;
  for (const mp of MARKETPLACES) {
    if (present(body[mp]) && isMarketplace(provider) && provider !== mp) {
      err(mp, `must be absent for billingProvider ${provider}: only the ${provider} object applies`);
    }
  }
  if (provider === 'aws') {
    if (!isObject(body.aws)) err('aws', `required for billingProvider aws: {productCode, customerAwsAccountId, licenseArn?}, got ${describe(body.aws)}`);
    else {
      const a = body.aws;
      const pe = idError(a.productCode);
      const ce = idError(a.customerAwsAccountId);
      if (pe) err('aws.productCode', pe);
      if (ce) err('aws.customerAwsAccountId', ce);
      let licenseArn: string | null = null;
      if (present(a.licenseArn)) {
        const le = idError(a.licenseArn);
        if (le) err('aws.licenseArn', `${le} (or null)`);
        else licenseArn = a.licenseArn as string;
      }
      if (!pe && !ce) aws = { productCode: a.productCode as string, customerAwsAccountId: a.customerAwsAccountId as string, licenseArn };
    }
  } else if (provider === 'azure') {
    if (!isObject(body.azure)) err('azure', `required for billingProvider azure: {resourceId, planId}, got ${describe(body.azure)}`);
    else {
      const re = idError(body.azure.resourceId);
      const pe = idError(body.azure.planId);
      if (re) err('azure.resourceId', re);
      if (pe) err('azure.planId', pe);
      if (!re && !pe) azure = { resourceId: body.azure.resourceId as string, planId: body.azure.planId as string };
    }
  }

  const metrics: ContractMetric[] = [];
  let knownDimensions: Set<string> | null = null;
  if (opts.catalog && typeof body.productTag === 'string' && isMarketplace(provider)) {
    const product = opts.catalog.products.get(body.productTag);
    if (!product) err('productTag', `unknown product ${describe(body.productTag)} (known: ${[...opts.catalog.products.keys()].join(', ')})`);
    else knownDimensions = new Set(product.metrics.map((m) => m.dimensions[provider]).filter((d): d is string => d !== null));
  }
  if (body.metrics !== undefined && body.metrics !== null) {
    if (!Array.isArray(body.metrics)) err('metrics', `must be an array of {dimension, value}, got ${describe(body.metrics)}`);
    else {
      body.metrics.forEach((m: unknown, i: number) => {
        const at = `metrics[${i}]`;
        if (!isObject(m)) return err(at, `must be an object {dimension, value}, got ${describe(m)}`);
        const de = idError(m.dimension);
        if (de) err(`${at}.dimension`, de);
        else if (knownDimensions && !knownDimensions.has(m.dimension as string)) {
          err(`${at}.dimension`, `${describe(m.dimension)} is not a ${String(provider)} dimension of ${String(body.productTag)} (known: ${[...knownDimensions].join(', ') || 'none'})`);
        }
        const v = m.value;
        if (typeof v !== 'number') err(`${at}.value`, `must be a number of billing units, got ${describe(v)}`);
        else if (!Number.isFinite(v)) err(`${at}.value`, 'must be finite');
        else if (v < 0) err(`${at}.value`, `must be >= 0, got ${v}`);
        if (!de && typeof v === 'number' && Number.isFinite(v) && v >= 0) metrics.push({ dimension: m.dimension as string, value: v === 0 ? 0 : v });
      });
    }
  }

  if (errors.length > 0 || !('ms' in start) || !isMarketplace(provider)) return { errors };
  return {
    contract: {
      orgId: body.orgId as string,
      billingProvider: provider,
      billingAccountId: body.billingAccountId as string,
      productTag: body.productTag as string,
      startDate: isoString(start.ms),
      endDate: endMs === null ? null : isoString(endMs),
      licenseId,
      ...(aws ? { aws } : {}),
      ...(azure ? { azure } : {}),
      metrics,
    },
  };
}
