// The product catalog: which (productTag, metric) can be billed, with which billing factor, under
// which marketplace dimension. Configuration, not code (config/catalog.json, overridable with
// REMIT_CATALOG_PATH; config/catalog.ts reads the file), validated strictly here: a typo in a
// catalog bills the wrong dimension or nothing at all, so a bad file must stop the process with a
// message that names the field. Pure: no I/O.

import { Decimal } from './decimal';
import { MARKETPLACES, type Marketplace } from './key';

/** Error code of a remittance whose metric has no dimension on its marketplace (billing.md). */
export const UNSUPPORTED_METRIC = 'unsupported_metric';

/** One billable metric of one product. Plain data: safe to pass through Temporal payloads. */
export interface CatalogMetric {
  productTag: string;
  /** Canonical metric id, as spelled in the catalog (e.g. `Instance-hours`). */
  metric: string;
  /** Billing units per metric unit, a canonical decimal string > 0 (e.g. "0.25"). */
  billingFactor: string;
  /** Marketplace dimension, null when the metric cannot be remitted on that marketplace. */
  dimensions: Record<Marketplace, string | null>;
  /** Billing needs an active contract; its committed amounts cover usage first. */
  contractEnabled: boolean;
  /** Usage in the month a contract starts is free (recorded as gratis, never sent). */
  gratis: boolean;
  /**
   * AWS product code to use when no contract supplies one (non-contract products only);
   * null when the catalog does not name one.
   */
  awsProductCode: string | null;
}

export interface CatalogProduct {
  productTag: string;
  contractEnabled: boolean;
  awsProductCode: string | null;
  metrics: CatalogMetric[];
}

export interface Catalog {
  /** Where it was loaded from (a path, or a description for in-memory catalogs). */
  source: string;
  products: ReadonlyMap<string, CatalogProduct>;
  /** productTag -> normalized metric id -> entry. */
  readonly index: ReadonlyMap<string, ReadonlyMap<string, CatalogMetric>>;
}

export class CatalogError extends Error {
  override name = 'CatalogError';
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid product catalog ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Metric ids match case-insensitively, with `_` equal to `-` (billing.md). */
export function normalizeMetricId(metric: string): string {
  return metric.toLowerCase().replace(/_/g, '-');
}

/** The catalog entry of a product's metric, or undefined when either is unknown. */
export function lookupMetric(catalog: Catalog, productTag: string, metric: string): CatalogMetric | undefined {
  return catalog.index.get(productTag)?.get(normalizeMetricId(metric));
}

export function lookupProduct(catalog: Catalog, productTag: string): CatalogProduct | undefined {
  return catalog.products.get(productTag);
}

/**
 * The marketplace dimension of a metric; null means the metric cannot be remitted on that
 * marketplace and its remittance fails with UNSUPPORTED_METRIC.
 */
export function dimensionFor(entry: CatalogMetric, marketplace: Marketplace): string | null {
  return entry.dimensions[marketplace] ?? null;
}

const TOP_KEYS = new Set(['$comment', 'products']);
const PRODUCT_KEYS = new Set(['$comment', 'productTag', 'contractEnabled', 'awsProductCode', 'metrics']);
const METRIC_KEYS = new Set(['$comment', 'metric', 'billingFactor', 'dimensions', 'gratis']);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonEmptyString(v: unknown): v is string {
  return typeof v === 'string' && v.trim().length > 0 && v.trim() === v;
}

/** Validate catalog JSON (already parsed). Throws CatalogError naming every problem found. */
export function parseCatalog(json: unknown, source = '(in memory)'): Catalog {
  const problems: string[] = [];
  const products = new Map<string, CatalogProduct>();
  const index = new Map<string, Map<string, CatalogMetric>>();

  const unknownKeys = (at: string, obj: Record<string, unknown>, allowed: Set<string>) => {
    for (const k of Object.keys(obj)) if (!allowed.has(k)) problems.push(`${at}${k}: unknown field (allowed: ${[...allowed].join(', ')})`);
  };

  if (!isObject(json)) throw new CatalogError(source, ['the top level must be an object {"products": [...]}']);
  unknownKeys('', json, TOP_KEYS);
  if (!Array.isArray(json.products) || json.products.length === 0) {
    throw new CatalogError(source, [...problems, 'products: must be a non-empty array']);
  }

  json.products.forEach((p: unknown, pi: number) => {
    const at = `products[${pi}]`;
    if (!isObject(p)) {
      problems.push(`${at}: must be an object`);
      return;
    }
    unknownKeys(`${at}.`, p, PRODUCT_KEYS);
    const productTag = p.productTag;
    if (!isNonEmptyString(productTag)) {
      problems.push(`${at}.productTag: must be a non-empty string without surrounding spaces`);
      return;
    }
    const pat = `${at} (${productTag})`;
    if (products.has(productTag)) problems.push(`${pat}.productTag: duplicate product`);
    if (typeof p.contractEnabled !== 'boolean') problems.push(`${pat}.contractEnabled: must be true or false`);
    const contractEnabled = p.contractEnabled === true;
    let awsProductCode: string | null = null;
    if (p.awsProductCode !== undefined && p.awsProductCode !== null) {
      if (isNonEmptyString(p.awsProductCode)) awsProductCode = p.awsProductCode;
      else problems.push(`${pat}.awsProductCode: must be a non-empty string or null`);
    }
    if (!Array.isArray(p.metrics) || p.metrics.length === 0) {
      problems.push(`${pat}.metrics: must be a non-empty array`);
      return;
    }
    const product: CatalogProduct = { productTag, contractEnabled, awsProductCode, metrics: [] };
    const byId = new Map<string, CatalogMetric>();
    // One record per customer, dimension and hour: two metrics of one product sharing a dimension
    // would both send a record for the same hour and the marketplace would reject the second.
    const dimensionOwner = new Map<string, string>();

    p.metrics.forEach((m: unknown, mi: number) => {
      const mat = `${pat}.metrics[${mi}]`;
      if (!isObject(m)) {
        problems.push(`${mat}: must be an object`);
        return;
      }
      unknownKeys(`${mat}.`, m, METRIC_KEYS);
      if (!isNonEmptyString(m.metric)) {
        problems.push(`${mat}.metric: must be a non-empty string without surrounding spaces`);
        return;
      }
      const metric = m.metric;
      const id = normalizeMetricId(metric);
      const at2 = `${mat} (${metric})`;
      if (byId.has(id)) problems.push(`${at2}.metric: duplicate of ${byId.get(id)?.metric} (ids match case-insensitively, _ equals -)`);

      let billingFactor = '1';
      const bf = typeof m.billingFactor === 'string' ? Decimal.tryParse(m.billingFactor) : null;
      if (bf === null || !bf.isPositive()) {
        problems.push(`${at2}.billingFactor: must be a decimal string > 0 such as "0.25", got ${JSON.stringify(m.billingFactor)}`);
      } else {
        billingFactor = bf.toString();
      }

      const dimensions = {} as Record<Marketplace, string | null>;
      if (!isObject(m.dimensions)) {
        problems.push(`${at2}.dimensions: must be an object with a key per marketplace (${MARKETPLACES.join(', ')})`);
      } else {
        for (const k of Object.keys(m.dimensions)) {
          if (!(MARKETPLACES as readonly string[]).includes(k)) problems.push(`${at2}.dimensions.${k}: unknown marketplace (known: ${MARKETPLACES.join(', ')})`);
        }
        for (const mp of MARKETPLACES) {
          const dim = m.dimensions[mp];
          if (dim === null) {
            dimensions[mp] = null;
          } else if (isNonEmptyString(dim)) {
            dimensions[mp] = dim;
            const owner = dimensionOwner.get(`${mp}\u0000${dim}`);
            if (owner !== undefined) problems.push(`${at2}.dimensions.${mp}: ${dim} is already the dimension of ${owner}; one record per customer, dimension and hour`);
            dimensionOwner.set(`${mp}\u0000${dim}`, metric);
          } else {
            problems.push(`${at2}.dimensions.${mp}: must be a dimension name, or null when the metric cannot be remitted on ${mp}`);
          }
        }
      }

      if (typeof m.gratis !== 'boolean') problems.push(`${at2}.gratis: must be true or false`);
      const gratis = m.gratis === true;
      // Gratis is defined by contract start dates; a product without contracts has none to look at.
      if (gratis && p.contractEnabled === false) problems.push(`${at2}.gratis: only a contract-enabled product can have gratis usage`);

      const entry: CatalogMetric = { productTag, metric, billingFactor, dimensions, contractEnabled, gratis, awsProductCode };
      product.metrics.push(entry);
      if (!byId.has(id)) byId.set(id, entry);
    });

    if (!products.has(productTag)) {
      products.set(productTag, product);
      index.set(productTag, byId);
    }
  });

  if (problems.length > 0) throw new CatalogError(source, problems);
  return { source, products, index };
}
