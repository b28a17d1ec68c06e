// The AWS emulator's reading of a BatchMeterUsage request (awsJson1_1): the SigV4 credential
// scope, the body and each record, checked field by field as AWS's model does. Pure: no state;
// a request that breaks a rule throws the AwsError AWS would answer.

export const MAX_RECORDS = 25;
const MAX_QUANTITY = 2_147_483_647;
const PRODUCT_CODE_RE = /^[-a-zA-Z0-9/=:_.@]*$/;
const ACCOUNT_ID_RE = /^[0-9]+$/;
const LICENSE_ARN_RE = /^arn:aws[a-zA-Z-]*:[A-Za-z0-9][A-Za-z0-9_/.-]{0,62}:[A-Za-z0-9_/.-]{0,63}:[A-Za-z0-9_/.-]{0,63}:[A-Za-z0-9][A-Za-z0-9:_/+=,@.-]{0,1023}$/;
const TAG_RE = /^[a-zA-Z0-9+ -=._:/@]+$/;

export class AwsError extends Error {
  constructor(readonly type: string, message: string, readonly status = 400) {
    super(message);
  }
}

interface WireRecord {
  Timestamp: number;
  CustomerIdentifier?: string;
  CustomerAWSAccountId?: string;
  LicenseArn?: string;
  Dimension: string;
  Quantity: number;
  UsageAllocations?: unknown[];
}

export interface ParsedRecord {
  wire: Record<string, unknown>;
  customer: string;
  licenseArn: string | null;
  dimension: string;
  quantity: number;
  timestampMs: number;
  hourSlot: number;
  /** Canonical allocations, so that an identical re-send compares equal. */
  allocations: string;
}

export interface ParsedRequest {
  productCode: string | null;
  records: ParsedRecord[];
}

export function validation(message: string): AwsError {
  return new AwsError('ValidationException', message.startsWith('1 validation error') ? message : `1 validation error detected: ${message}`);
}

function optionalString(v: unknown, at: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new AwsError('SerializationException', `${at} must be a string`);
  return v;
}

/**
 * Account and region from the SigV4 credential scope
 * (`AWS4-HMAC-SHA256 Credential=<access key>/<date>/<region>/aws-marketplace/aws4_request, ...`).
 * The emulator treats the access key id as the seller account: it cannot map keys to accounts
 * the way IAM does, and one key per account is all tests need. Signatures are not verified.
 */
export function parseAuthorization(header: string | undefined): { account: string; region: string } {
  if (!header) throw new AwsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
  const m = /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request\s*,/.exec(header);
  if (!m) throw new AwsError('IncompleteSignatureException', 'Authorization header is not a valid AWS Signature Version 4 header');
  const [, accessKey, , region, service] = m as unknown as [string, string, string, string, string];
  if (service !== 'aws-marketplace') {
    throw new AwsError('InvalidSignatureException', `Credential should be scoped to correct service: 'aws-marketplace', not '${service}'`, 403);
  }
  return { account: accessKey, region };
}

export function parseRequest(body: Buffer, hourMs: number): ParsedRequest {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new AwsError('SerializationException', 'request body is not valid JSON');
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new AwsError('SerializationException', 'request body must be a JSON object');
  const b = json as Record<string, unknown>;
  let productCode: string | null = null;
  if (b.ProductCode !== undefined && b.ProductCode !== null) {
    if (typeof b.ProductCode !== 'string') throw new AwsError('SerializationException', 'ProductCode must be a string');
    if (b.ProductCode.length > 255 || !PRODUCT_CODE_RE.test(b.ProductCode)) {
      throw validation(`Value '${b.ProductCode}' at 'productCode' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[-a-zA-Z0-9/=:_.@]*$ and have length less than or equal to 255`);
    }
    // The SDK model gives ProductCode a default of "": treat it as absent.
    productCode = b.ProductCode === '' ? null : b.ProductCode;
  }
  if (!Array.isArray(b.UsageRecords)) throw validation("Value null at 'usageRecords' failed to satisfy constraint: Member must not be null");
  if (b.UsageRecords.length < 1 || b.UsageRecords.length > MAX_RECORDS) {
    throw validation(`Value at 'usageRecords' failed to satisfy constraint: Member must have length between 1 and ${MAX_RECORDS} (got ${b.UsageRecords.length})`);
  }
  const records = b.UsageRecords.map((r, i) => parseRecord(r, i, hourMs));
  return { productCode, records };
}

/** The customer: exactly one of the legacy CustomerIdentifier and CustomerAWSAccountId. */
function parseCustomer(r: Partial<Record<keyof WireRecord, unknown>>, at: string): string {
  const legacy = optionalString(r.CustomerIdentifier, `${at}.customerIdentifier`);
  const account = optionalString(r.CustomerAWSAccountId, `${at}.customerAWSAccountId`);
  if (legacy && account) throw validation(`${at}: CustomerIdentifier and CustomerAWSAccountId are mutually exclusive`);
  if (!legacy && !account) throw validation(`${at}: one of CustomerIdentifier or CustomerAWSAccountId is required`);
  if (account && (account.length > 255 || !ACCOUNT_ID_RE.test(account))) {
    throw validation(`Value '${account}' at '${at}.customerAWSAccountId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[0-9]+$`);
  }
  if (legacy && legacy.length > 255) throw validation(`Value at '${at}.customerIdentifier' failed to satisfy constraint: Member must have length less than or equal to 255`);
  return (account ?? legacy) as string;
}

function parseRecord(raw: unknown, i: number, hourMs: number): ParsedRecord {
  const at = `usageRecords.${i + 1}.member`;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new AwsError('SerializationException', `${at} must be an object`);
  const r = raw as Partial<Record<keyof WireRecord, unknown>>;
  if (typeof r.Timestamp !== 'number' || !Number.isFinite(r.Timestamp)) {
    throw r.Timestamp === undefined ? validation(`Value null at '${at}.timestamp' failed to satisfy constraint: Member must not be null`) : new AwsError('SerializationException', `${at}.timestamp must be epoch seconds`);
  }
  if (typeof r.Dimension !== 'string') throw validation(`Value null at '${at}.dimension' failed to satisfy constraint: Member must not be null`);
  if (r.Dimension.length < 1 || r.Dimension.length > 255) throw validation(`Value at '${at}.dimension' failed to satisfy constraint: Member must have length between 1 and 255`);
  const quantity = r.Quantity ?? 0;
  if (typeof quantity !== 'number' || !Number.isInteger(quantity)) throw new AwsError('SerializationException', `${at}.quantity must be an integer, got ${JSON.stringify(quantity)}`);
  if (quantity < 0 || quantity > MAX_QUANTITY) {
    throw validation(`Value '${quantity}' at '${at}.quantity' failed to satisfy constraint: Member must have value between 0 and ${MAX_QUANTITY}`);
  }
  const customer = parseCustomer(r, at);
  const licenseArn = optionalString(r.LicenseArn, `${at}.licenseArn`);
  if (licenseArn && !LICENSE_ARN_RE.test(licenseArn)) throw new AwsError('InvalidLicenseException', `LicenseArn '${licenseArn}' is not a valid license ARN`);
  const allocations = parseAllocations(r.UsageAllocations, quantity, at);
  const timestampMs = Math.round(r.Timestamp * 1000);
  return {
    wire: raw as Record<string, unknown>,
    customer,
    licenseArn: licenseArn ?? null,
    dimension: r.Dimension,
    quantity,
    timestampMs,
    hourSlot: Math.floor(timestampMs / hourMs),
    allocations,
  };
}

/** One allocation's tag set, canonical (sorted `key=value` pairs joined by `&`). */
function tagSetOf(tags: unknown): string {
  if (tags === undefined) return '';
  if (!Array.isArray(tags) || tags.length < 1 || tags.length > 5) throw new AwsError('InvalidTagException', 'Tags must be a list of 1 to 5 tags');
  const pairs = tags.map((t) => {
    const { Key: k, Value: v } = (t ?? {}) as Record<string, unknown>;
    if (typeof k !== 'string' || typeof v !== 'string' || k.length < 1 || k.length > 100 || v.length < 1 || v.length > 256 || !TAG_RE.test(k) || !TAG_RE.test(v)) {
      throw new AwsError('InvalidTagException', `invalid tag ${JSON.stringify(t)}`);
    }
    return `${k}=${v}`;
  });
  return pairs.sort().join('&');
}

function parseAllocations(raw: unknown, quantity: number, at: string): string {
  if (raw === undefined || raw === null) return '';
  if (!Array.isArray(raw) || raw.length < 1 || raw.length > 2500) throw validation(`Value at '${at}.usageAllocations' failed to satisfy constraint: Member must have length between 1 and 2500`);
  let sum = 0;
  const tagSets = new Set<string>();
  const canonical: string[] = [];
  for (const a of raw) {
    if (!a || typeof a !== 'object') throw new AwsError('SerializationException', `${at}.usageAllocations members must be objects`);
    const { AllocatedUsageQuantity: q, Tags: tags } = a as Record<string, unknown>;
    if (typeof q !== 'number' || !Number.isInteger(q) || q < 0 || q > MAX_QUANTITY) throw validation(`${at}.usageAllocations: AllocatedUsageQuantity must be an integer between 0 and ${MAX_QUANTITY}`);
    sum += q;
    const tagKey = tagSetOf(tags);
    if (tagSets.has(tagKey)) throw new AwsError('InvalidUsageAllocationsException', 'two allocations have the same tag set');
    tagSets.add(tagKey);
    canonical.push(`${tagKey}:${q}`);
  }
  if (sum !== quantity) throw new AwsError('InvalidUsageAllocationsException', `Sum of allocated usage quantities (${sum}) is not equal to the usage quantity (${quantity})`);
  return canonical.sort().join('|');
}
