// Helpers for tests that drive the Entra and Azure emulators over real HTTPS, with the real
// @azure/identity token flow and real undici requests, trusting the local CA explicitly.

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import { ClientSecretCredential } from '@azure/identity';
import { ensureLocalCerts, type LocalCerts } from '../emulators/certs';
import { startEntraEmulator, type EntraEmulator } from '../emulators/entra';
import { startAzureEmulator, type AzureEmulator, type AzureEmulatorCall, type AzureEmulatorOptions, type AzureEmulatorRecord } from '../emulators/azure';
import { createAzureMarketplace, type AzureMarketplaceClient, type AzureMarketplaceOptions } from '../../marketplaces/azure';
import { AZURE_METERING_SCOPE } from '../../marketplaces/azure-transport';
import type { UsageRecord } from '../../marketplaces/types';

export const TENANT = 'remit-tenant';
export const APP = { clientId: 'remit-client', clientSecret: 'remit-client-secret' };
export const OTHER_APP = { clientId: 'other-client', clientSecret: 'other-client-secret' };
export const PLAN = 'plan-gold';

export interface AzureStack {
  certs: LocalCerts;
  entra: EntraEmulator;
  azure: AzureEmulator;
  /** A client of APP against both emulators; extra options override. */
  client(extra?: Partial<AzureMarketplaceOptions>): AzureMarketplaceClient;
  /** An undici agent that trusts the local CA, for hand-made requests. */
  agent: Agent;
  close(): Promise<void>;
}

export async function startAzureStack(azureOptions: Partial<AzureEmulatorOptions> & Pick<AzureEmulatorOptions, 'hourMs' | 'acceptanceHours'>): Promise<AzureStack> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'remit-certs-'));
  const certs = await ensureLocalCerts(dir);
  const entra = await startEntraEmulator({ certPem: certs.certPem, keyPem: certs.keyPem, tenantId: TENANT, clients: [APP, OTHER_APP] });
  const azure = await startAzureEmulator({ certPem: certs.certPem, keyPem: certs.keyPem, tenantId: TENANT, ...azureOptions });
  const agent = new Agent({ connect: { ca: certs.caPem } });
  const clients: AzureMarketplaceClient[] = [];
  return {
    certs,
    entra,
    azure,
    agent,
    client(extra = {}) {
      const c = createAzureMarketplace({
        endpoint: azure.url,
        authorityHost: entra.url,
        tenantId: TENANT,
        ...APP,
        caPem: certs.caPem,
        hourMs: azureOptions.hourMs,
        acceptanceHours: azureOptions.acceptanceHours,
        requestTimeoutMs: 1_000,
        ...extra,
      });
      clients.push(c);
      return c;
    },
    async close() {
      await Promise.all(clients.map((c) => c.close()));
      await agent.close();
      await azure.close();
      await entra.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

let seq = 0;

/** A fresh SaaS subscription id, unique within the test process. */
export function newResource(): string {
  seq += 1;
  return `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`;
}

export function azureRecord(fields: { resource: string; dimension?: string; quantity?: number; timestampMs: number; planId?: string }): UsageRecord {
  const dimension = fields.dimension ?? 'control_plane';
  return {
    recordId: `rec-${fields.resource}-${dimension}-${fields.timestampMs}`,
    customer: { marketplace: 'azure', resourceId: fields.resource, planId: fields.planId ?? PLAN },
    dimension,
    quantity: fields.quantity ?? 1,
    timestampMs: fields.timestampMs,
  };
}

export interface Reply<T = Record<string, unknown>> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
}

/** A hand-made HTTPS request, to check the wire protocol without our client in between. */
export async function raw<T = Record<string, unknown>>(stack: AzureStack, method: string, pathAndQuery: string, opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Reply<T>> {
  const res = await request(`${stack.azure.url}${pathAndQuery}`, {
    method: method as 'GET',
    dispatcher: stack.agent,
    headers: {
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...opts.headers,
    },
    ...(opts.body !== undefined ? { body: typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body) } : {}),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: (text ? JSON.parse(text) : {}) as T };
}

/** A token from the Entra emulator through the real @azure/identity flow. */
export async function token(stack: AzureStack, app = APP, scope = AZURE_METERING_SCOPE): Promise<string> {
  const cred = new ClientSecretCredential(TENANT, app.clientId, app.clientSecret, {
    authorityHost: stack.entra.url,
    disableInstanceDiscovery: true,
    tlsOptions: { ca: [...tls.rootCertificates, stack.certs.caPem] },
  });
  return (await cred.getToken(scope)).token;
}

export async function admin<T = unknown>(stack: AzureStack, method: string, p: string, body?: unknown): Promise<Reply<T>> {
  const res = await request(`${stack.azure.url}${p}`, {
    method: method as 'GET',
    dispatcher: stack.agent,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as T };
}

export async function emulatorRecords(stack: AzureStack): Promise<AzureEmulatorRecord[]> {
  return (await admin<{ records: AzureEmulatorRecord[] }>(stack, 'GET', '/_emulator/records')).body.records;
}

export async function emulatorCalls(stack: AzureStack): Promise<AzureEmulatorCall[]> {
  return (await admin<{ calls: AzureEmulatorCall[] }>(stack, 'GET', '/_emulator/calls')).body.calls;
}
