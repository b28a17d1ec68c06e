// The remittance key: the unit the billing rules compute (billing.md). Keys that bill the same
// marketplace customer and dimension share one marketplace record per hour (domain/record.ts).

export const MARKETPLACES = ['aws', 'azure'] as const;
export type Marketplace = (typeof MARKETPLACES)[number];

export function isMarketplace(v: unknown): v is Marketplace {
  return typeof v === 'string' && (MARKETPLACES as readonly string[]).includes(v);
}

export interface RemittanceKey {
  billingProvider: Marketplace;
  billingAccountId: string;
  orgId: string;
  productTag: string;
  /** Canonical metric id from the catalog (e.g. `Cores`). */
  metric: string;
  sla: string;
  usage: string;
}

export const KEY_FIELDS = ['billingProvider', 'billingAccountId', 'orgId', 'productTag', 'metric', 'sla', 'usage'] as const;

/** Stable string form of a key, used for advisory locks, maps and the database. */
export function keyString(k: RemittanceKey): string {
  return KEY_FIELDS.map((f) => encodeURIComponent(k[f])).join('|');
}

export function parseKeyString(s: string): RemittanceKey {
  const parts = s.split('|').map(decodeURIComponent);
  if (parts.length !== KEY_FIELDS.length) throw new Error(`not a remittance key: ${s}`);
  const [billingProvider, billingAccountId, orgId, productTag, metric, sla, usage] = parts as [string, string, string, string, string, string, string];
  if (!isMarketplace(billingProvider)) throw new Error(`unknown marketplace in key: ${billingProvider}`);
  return { billingProvider, billingAccountId, orgId, productTag, metric, sla, usage };
}
