// Microsoft Entra token emulator: just enough of login.microsoftonline.com for @azure/identity's
// ClientSecretCredential (MSAL client-credentials flow, instance discovery disabled) to get a
// token for the Azure Marketplace Metering API. HTTPS only, because identity and MSAL refuse a
// plain-HTTP authority.
//
// Tokens are HS256 JWTs signed with a secret shared with the Azure emulator, so the Azure
// emulator can check them without calling this one, also from another process.

import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { listen, sendJson } from './http-server';

/** Application id of the Azure Marketplace Metering API: the audience of its tokens. */
export const MARKETPLACE_RESOURCE = '20e940b3-4c77-4b0b-9a53-9e16a1b010a7';
/**
 * Used when neither the option nor REMIT_ENTRA_TOKEN_SECRET is set. Only emulators use it:
 * their tokens grant nothing outside this machine.
 */
export const DEFAULT_EMULATOR_TOKEN_SECRET = 'remit-local-entra-emulator-signing-key';

export function emulatorTokenSecret(explicit?: string): string {
  return explicit || process.env.REMIT_ENTRA_TOKEN_SECRET || DEFAULT_EMULATOR_TOKEN_SECRET;
}

export interface EntraClient {
  clientId: string;
  clientSecret: string;
}

export interface EntraEmulatorOptions {
  port?: number;
  host?: string;
  certPem: string;
  keyPem: string;
  /** The tenant it serves; requests for another tenant fail like an unknown tenant does. */
  tenantId: string;
  /** Registered applications (client id and secret); any other gets invalid_client. */
  clients: readonly EntraClient[];
  /** HMAC key shared with the Azure emulator; default emulatorTokenSecret(). */
  tokenSecret?: string;
  /** Default 3599, as Entra. */
  tokenLifetimeSeconds?: number;
  now?: () => number;
}

export interface EntraCall {
  at: string;
  method: string;
  path: string;
  status: number;
  /** client_id of a token request (never the secret). */
  clientId?: string;
  grantType?: string;
  scope?: string;
}

export interface EntraEmulator {
  url: string;
  host: string;
  port: number;
  /** What MSAL and anyone else asked, in order (no secrets). */
  calls(): EntraCall[];
  /** Tokens issued since start or reset. */
  issued(): number;
  reset(): void;
  close(): Promise<void>;
}

export interface EntraTokenClaims {
  aud: string;
  iss: string;
  tid: string;
  appid: string;
  azp: string;
  sub: string;
  oid: string;
  idtyp: 'app';
  ver: '1.0';
  iat: number;
  nbf: number;
  exp: number;
  jti: string;
}

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

function sign(input: string, secret: string): string {
  return createHmac('sha256', secret).update(input).digest('base64url');
}

export function issueToken(claims: EntraTokenClaims, secret: string): string {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'remit-entra-emulator' }));
  const body = b64url(JSON.stringify(claims));
  return `${head}.${body}.${sign(`${head}.${body}`, secret)}`;
}

export type TokenCheck = { ok: true; claims: EntraTokenClaims } | { ok: false; reason: string };

/** Checks signature, audience, lifetime and (when given) tenant of an emulator-issued token. */
export function verifyToken(token: string, opts: { secret: string; audience: string; tenantId?: string; nowMs?: number }): TokenCheck {
  const parts = token.split('.');
  if (parts.length !== 3) return { ok: false, reason: 'not a JWT' };
  const [head, body, sig] = parts as [string, string, string];
  const expected = Buffer.from(sign(`${head}.${body}`, opts.secret));
  const got = Buffer.from(sig);
  if (expected.length !== got.length || !timingSafeEqual(expected, got)) return { ok: false, reason: 'signature does not verify (not issued by this Entra emulator)' };
  let claims: EntraTokenClaims;
  try {
    const header = JSON.parse(Buffer.from(head, 'base64url').toString('utf8')) as { alg?: string };
    if (header.alg !== 'HS256') return { ok: false, reason: `unexpected alg ${String(header.alg)}` };
    claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as EntraTokenClaims;
  } catch {
    return { ok: false, reason: 'malformed JWT' };
  }
  const nowSec = Math.floor((opts.nowMs ?? Date.now()) / 1000);
  if (claims.aud !== opts.audience) return { ok: false, reason: `token audience ${String(claims.aud)} is not ${opts.audience}` };
  if (typeof claims.exp !== 'number' || claims.exp <= nowSec) return { ok: false, reason: 'token expired' };
  if (typeof claims.nbf === 'number' && claims.nbf > nowSec + 300) return { ok: false, reason: 'token not yet valid' };
  if (opts.tenantId !== undefined && claims.tid !== opts.tenantId) return { ok: false, reason: `token is for tenant ${String(claims.tid)}` };
  return { ok: true, claims };
}

function secretMatches(expected: string, got: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(got);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** `api://x/.default`, `x/.default`, `x` → the resource `x` the token is for. */
function resourceOfScope(scope: string): string | undefined {
  const first = scope.split(/\s+/).find((s) => s.endsWith('/.default'));
  if (!first) return undefined;
  return first.slice(0, -'/.default'.length).replace(/^api:\/\//, '');
}

export async function startEntraEmulator(options: EntraEmulatorOptions): Promise<EntraEmulator> {
  const secret = emulatorTokenSecret(options.tokenSecret);
  const lifetime = options.tokenLifetimeSeconds ?? 3599;
  const now = options.now ?? Date.now;
  const tenant = options.tenantId;
  let calls: EntraCall[] = [];
  let issuedCount = 0;
  let baseUrl = '';

  function entraError(res: http.ServerResponse, status: number, error: string, description: string, codes: number[]): void {
    const traceId = randomUUID();
    sendJson(res, status, {
      error,
      error_description: `${description}\r\nTrace ID: ${traceId}\r\nTimestamp: ${new Date(now()).toISOString()}`,
      error_codes: codes,
      timestamp: new Date(now()).toISOString(),
      trace_id: traceId,
      correlation_id: randomUUID(),
    });
  }

  function openIdConfiguration(t: string) {
    const base = `${baseUrl}/${t}`;
    return {
      issuer: `${base}/v2.0`,
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      token_endpoint: `${base}/oauth2/v2.0/token`,
      device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
      end_session_endpoint: `${base}/oauth2/v2.0/logout`,
      jwks_uri: `${base}/discovery/v2.0/keys`,
      response_modes_supported: ['query', 'fragment', 'form_post'],
      response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
      scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['HS256'],
      token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
      grant_types_supported: ['client_credentials'],
      tenant_region_scope: null,
      cloud_instance_name: 'remit-emulator',
      cloud_graph_host_name: 'graph.invalid',
      msgraph_host: 'graph.invalid',
    };
  }

  /** v2 (`scope=<resource>/.default`) and v1 (`resource=<resource>`) client-credential requests. */
  function token(res: http.ServerResponse, form: URLSearchParams, v1: boolean, call: EntraCall): number {
    const grantType = form.get('grant_type') ?? '';
    const clientId = form.get('client_id') ?? '';
    const clientSecret = form.get('client_secret') ?? '';
    call.clientId = clientId || undefined;
    call.grantType = grantType || undefined;
    if (grantType !== 'client_credentials') {
      entraError(res, 400, 'unsupported_grant_type', `AADSTS70003: The app requested an unsupported grant type '${grantType}' (the emulator supports client_credentials only).`, [70003]);
      return 400;
    }
    const client = options.clients.find((c) => c.clientId === clientId);
    if (!client) {
      entraError(res, 400, 'unauthorized_client', `AADSTS700016: Application with identifier '${clientId}' was not found in the directory '${tenant}'.`, [700016]);
      return 400;
    }
    if (!clientSecret || !secretMatches(client.clientSecret, clientSecret)) {
      entraError(res, 401, 'invalid_client', `AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`, [7000215]);
      return 401;
    }
    const scope = v1 ? `${form.get('resource') ?? ''}/.default` : (form.get('scope') ?? '');
    call.scope = scope;
    const audience = resourceOfScope(scope);
    if (!audience) {
      entraError(res, 400, 'invalid_scope', `AADSTS1002012: The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`, [1002012]);
      return 400;
    }
    const iat = Math.floor(now() / 1000);
    const claims: EntraTokenClaims = {
      aud: audience,
      iss: `https://sts.windows.net/${tenant}/`,
      tid: tenant,
      appid: clientId,
      azp: clientId,
      sub: clientId,
      oid: clientId,
      idtyp: 'app',
      ver: '1.0',
      iat,
      nbf: iat - 300,
      exp: iat + lifetime,
      jti: randomUUID(),
    };
    issuedCount += 1;
    const accessToken = issueToken(claims, secret);
    sendJson(res, 200, v1
      ? { token_type: 'Bearer', expires_in: String(lifetime), ext_expires_in: String(lifetime), expires_on: String(claims.exp), not_before: String(claims.nbf), resource: audience, access_token: accessToken }
      : { token_type: 'Bearer', expires_in: lifetime, ext_expires_in: lifetime, access_token: accessToken }, { 'cache-control': 'no-store, no-cache', pragma: 'no-cache' });
    return 200;
  }

  const listener = await listen({ tls: { certPem: options.certPem, keyPem: options.keyPem }, port: options.port, host: options.host, maxBodyBytes: 64 * 1024 }, (req, res, body) => {
    const url = new URL(req.url ?? '/', 'https://entra.invalid');
    const path = url.pathname;
    const call: EntraCall = { at: new Date(now()).toISOString(), method: req.method ?? '', path, status: 0 };
    calls.push(call);
    const reply = (status: number, payload: unknown) => {
      call.status = status;
      sendJson(res, status, payload);
    };

    if (path === '/_emulator/calls' && req.method === 'GET') return reply(200, { calls });
    if (path === '/_emulator/reset' && req.method === 'POST') {
      calls = [];
      issuedCount = 0;
      return reply(200, { reset: true });
    }

    const m = /^\/([^/]+)(\/.*)$/.exec(path);
    const t = m?.[1];
    const rest = m?.[2] ?? '';
    if (!t || t !== tenant) {
      call.status = 400;
      return entraError(res, 400, 'invalid_tenant', `AADSTS90002: Tenant '${t ?? ''}' not found. The emulator serves tenant '${tenant}'.`, [90002]);
    }
    if (req.method === 'GET' && (rest === '/v2.0/.well-known/openid-configuration' || rest === '/.well-known/openid-configuration')) {
      return reply(200, openIdConfiguration(t));
    }
    // Tokens are HMAC-signed: there is no public key to publish; the set exists for clients that fetch it.
    if (req.method === 'GET' && (rest === '/discovery/v2.0/keys' || rest === '/discovery/keys')) return reply(200, { keys: [] });
    if (req.method === 'POST' && (rest === '/oauth2/v2.0/token' || rest === '/oauth2/token')) {
      if (body === null) return reply(413, { error: 'invalid_request', error_description: 'request too large' });
      const form = new URLSearchParams(body.toString('utf8'));
      call.status = token(res, form, rest === '/oauth2/token', call);
      return;
    }
    return reply(404, { error: 'not_found', error_description: `the Entra emulator does not serve ${req.method} ${path}` });
  });
  baseUrl = listener.url;

  return {
    url: listener.url,
    host: listener.host,
    port: listener.port,
    calls: () => [...calls],
    issued: () => issuedCount,
    reset: () => {
      calls = [];
      issuedCount = 0;
    },
    close: listener.close,
  };
}
