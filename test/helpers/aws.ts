// Helpers for tests that drive the AWS emulator with the real SDK client over real HTTP.

import http from 'node:http';
import { MarketplaceMeteringClient } from '@aws-sdk/client-marketplace-metering';
import type { AwsEmulator, AwsEmulatorCall, AwsEmulatorRecord } from '../../scripts/emulators/aws';
import type { UsageRecord } from '../../marketplaces/types';

export const PRODUCT = 'remit-product';
export const REGION = 'us-east-1';
export const SELLER = { accessKeyId: 'AKIDSELLER1', secretAccessKey: 'not-a-secret' };

let seq = 0;

/** A fresh 12-digit customer account id, unique within the test process. */
export function newCustomer(): string {
  seq += 1;
  return String(100_000_000_000 + seq * 7919);
}

export function awsRecord(fields: { customer: string; dimension?: string; quantity?: number; timestampMs: number; productCode?: string; licenseArn?: string }): UsageRecord {
  return {
    recordId: `rec-${fields.customer}-${fields.dimension ?? 'control_plane'}-${fields.timestampMs}`,
    customer: { marketplace: 'aws', productCode: fields.productCode ?? PRODUCT, customerAwsAccountId: fields.customer, licenseArn: fields.licenseArn ?? null },
    dimension: fields.dimension ?? 'control_plane',
    quantity: fields.quantity ?? 1,
    timestampMs: fields.timestampMs,
  };
}

/** The raw SDK client, for requests our own client would refuse to build. */
export function rawSdk(url: string, opts: { region?: string; accessKeyId?: string } = {}): MarketplaceMeteringClient {
  return new MarketplaceMeteringClient({
    region: opts.region ?? REGION,
    endpoint: url,
    credentials: { ...SELLER, ...(opts.accessKeyId ? { accessKeyId: opts.accessKeyId } : {}) },
    maxAttempts: 1,
  });
}

export async function admin<T = unknown>(emu: AwsEmulator, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${emu.url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

export async function emulatorRecords(emu: AwsEmulator): Promise<AwsEmulatorRecord[]> {
  return (await admin<{ records: AwsEmulatorRecord[] }>(emu, 'GET', '/_emulator/records')).body.records;
}

export async function emulatorCalls(emu: AwsEmulator): Promise<AwsEmulatorCall[]> {
  return (await admin<{ calls: AwsEmulatorCall[] }>(emu, 'GET', '/_emulator/calls')).body.calls;
}

export interface RawReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** A hand-made wire request, to check the protocol without the SDK in between. */
export function rawPost(url: string, headers: Record<string, string>, body: string | Buffer): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/`, { method: 'POST', headers: { 'content-type': 'application/x-amz-json-1.1', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

export function sigV4Header(accessKeyId = SELLER.accessKeyId, region = REGION, service = 'aws-marketplace'): string {
  return `AWS4-HMAC-SHA256 Credential=${accessKeyId}/20261125/${region}/${service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`;
}
