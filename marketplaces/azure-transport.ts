// Azure Marketplace Metering transport: HTTPS through a bounded undici pool (with the extra CA
// when one is configured) and bearer tokens from Microsoft Entra through @azure/identity. It
// carries one exchange at a time and says nothing about what an answer means, except that a
// failure to get a token or to get an answer becomes its outcome (azure-classify.ts).

import { randomUUID } from 'node:crypto';
import tls from 'node:tls';
import { ClientSecretCredential } from '@azure/identity';
import { Agent, request } from 'undici';
import type { Logger } from '../lib/log';
import { classifyTokenError, classifyTransportError } from './azure-classify';
import type { SendOutcome } from './types';

export const AZURE_METERING_SCOPE = '20e940b3-4c77-4b0b-9a53-9e16a1b010a7/.default';
const DEFAULT_ENDPOINT = 'https://marketplaceapi.microsoft.com';
const DEFAULT_AUTHORITY_HOST = 'https://login.microsoftonline.com';

export interface AzureTransportOptions {
  /** Metering API base (`https://host` or `https://host/api`); default Azure's. */
  endpoint?: string;
  /** Entra authority host; default login.microsoftonline.com. */
  authorityHost?: string;
  tenantId: string;
  clientId: string;
  clientSecret: string;
  /** A CA to trust in addition to the public ones (the local emulators' CA), for both hosts. */
  caPem?: string;
  /** Waiting for an answer once the request is sent; default 10 s. Past it the outcome is ambiguous. */
  requestTimeoutMs?: number;
  /** Connecting alone; default 3 s. Failing here means nothing was sent. */
  connectTimeoutMs?: number;
  /** Pooled keep-alive connections to the metering host; default 8. Further calls queue. */
  maxConnections?: number;
  log?: Logger;
  now?: () => number;
}

/** Azure's answer, whatever its status. */
export interface Answer {
  kind: 'answer';
  status: number;
  json: unknown;
  retryAfterMs: number | undefined;
  requestId: string;
}

/** Azure's answer, or the outcome of not getting one. */
export type Exchange = Answer | { kind: 'failed'; outcome: SendOutcome };

export interface AzureTransport {
  /** One HTTP exchange with a bearer token; on 401/403 once more with a fresh credential. */
  exchange(method: 'GET' | 'POST', path: string, body: unknown, what: string): Promise<Exchange>;
  /** Release pooled sockets. */
  close(): Promise<void>;
}

/** Retry-After as delay-seconds or an HTTP date. */
export function parseRetryAfter(v: string | string[] | undefined, nowMs: number): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  if (/^\d+(\.\d+)?$/.test(s.trim())) return Math.round(Number(s) * 1000);
  const at = Date.parse(s);
  return Number.isFinite(at) ? Math.max(0, at - nowMs) : undefined;
}

/** A body that is not JSON is kept as the message of the answer. */
function parseBody(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return { message: text.slice(0, 300) };
  }
}

export function createAzureTransport(options: AzureTransportOptions): AzureTransport {
  const now = options.now ?? Date.now;
  const log = options.log;
  const base = (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, '').replace(/\/api$/, '');
  const timeoutMs = options.requestTimeoutMs ?? 10_000;
  // Adding, not replacing: the public roots stay trusted next to the local CA.
  const ca = options.caPem ? [...tls.rootCertificates, options.caPem] : undefined;

  // A bounded pool: each new connection costs a TLS handshake, which under a burst of calls
  // costs more than waiting for a pooled one.
  const agent = new Agent({
    connections: options.maxConnections ?? 8,
    connect: { ...(ca ? { ca } : {}), timeout: options.connectTimeoutMs ?? 3_000 },
    connectTimeout: options.connectTimeoutMs ?? 3_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });

  const makeCredential = () =>
    new ClientSecretCredential(options.tenantId, options.clientId, options.clientSecret, {
      authorityHost: options.authorityHost ?? DEFAULT_AUTHORITY_HOST,
      // Otherwise MSAL asks login.microsoftonline.com to vouch for the authority first.
      disableInstanceDiscovery: true,
      ...(ca ? { tlsOptions: { ca } } : {}),
      // A token failure becomes an outcome that Temporal retries; long in-call retries would
      // only hold the activity.
      retryOptions: { maxRetries: 1, retryDelayInMs: 200, maxRetryDelayInMs: 1_000 },
    });
  let credential = makeCredential();

  /** One request with this token; an error here is a transport failure. */
  async function send(method: 'GET' | 'POST', path: string, body: unknown, token: string, correlationId: string): Promise<Answer> {
    const requestId = randomUUID();
    const res = await request(`${base}${path}`, {
      method,
      dispatcher: agent,
      headers: {
        authorization: `Bearer ${token}`,
        'x-ms-requestid': requestId,
        'x-ms-correlationid': correlationId,
        accept: 'application/json',
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const json = parseBody(await res.body.text());
    return { kind: 'answer', status: res.statusCode, json, retryAfterMs: parseRetryAfter(res.headers['retry-after'], now()), requestId };
  }

  async function exchange(method: 'GET' | 'POST', path: string, body: unknown, what: string): Promise<Exchange> {
    const correlationId = randomUUID();
    let answer: Answer | undefined;
    for (let attempt = 1; attempt <= 2; attempt++) {
      const used = credential;
      let token: string;
      try {
        token = (await used.getToken(AZURE_METERING_SCOPE)).token;
      } catch (err) {
        return { kind: 'failed', outcome: classifyTokenError(err) };
      }
      try {
        answer = await send(method, path, body, token, correlationId);
      } catch (err) {
        return { kind: 'failed', outcome: classifyTransportError(err, what) };
      }
      if (answer.status !== 401 && answer.status !== 403) return answer;
      // The token may have been revoked or rotated; a new credential has an empty token cache.
      log?.warn({ status: answer.status, requestId: answer.requestId, correlationId, attempt }, 'Azure Marketplace refused the token; retrying once with a fresh one');
      if (credential === used) credential = makeCredential();
    }
    return answer as Answer;
  }

  return { exchange, close: () => agent.close() };
}
