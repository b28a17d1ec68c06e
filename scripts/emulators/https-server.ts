// The bits the HTTPS emulators (Entra, Azure) share: a TLS listener with the local CA's server
// certificate, bounded body reading, JSON replies, and closing that does not wait for requests
// a fault left hanging.

import https from 'node:https';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HttpsListener {
  server: https.Server;
  url: string;
  host: string;
  port: number;
  /** Answers nothing more; drops hanging and idle connections so close() cannot stall. */
  close(): Promise<void>;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer | null) => void | Promise<void>;

export async function listenHttps(opts: { certPem: string; keyPem: string; port?: number; host?: string; maxBodyBytes?: number }, handler: Handler): Promise<HttpsListener> {
  const limit = opts.maxBodyBytes ?? 1024 * 1024;
  const server = https.createServer({ cert: opts.certPem, key: opts.keyPem, minVersion: 'TLSv1.2' }, (req, res) => {
    readBody(req, limit)
      .then((body) => handler(req, res, body))
      .catch(() => res.socket?.destroy());
  });
  // Longer than clients keep idle sockets, so a pooled connection is not closed under a request.
  server.keepAliveTimeout = 65_000;
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    server,
    url: `https://${urlHost}:${port}`,
    host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const HARD_BODY_LIMIT = 16 * 1024 * 1024;

/** The body, or null when it reached `limit` bytes (the rest is drained and dropped). */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size >= HARD_BODY_LIMIT) reject(new Error('body far too large'));
      else if (size < limit) chunks.push(c);
    });
    req.on('end', () => resolve(size >= limit ? null : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

export function headerValue(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function parseJson(body: Buffer | null): { ok: true; value: unknown } | { ok: false; error: string } {
  if (body === null) return { ok: false, error: 'request body too large' };
  try {
    return { ok: true, value: JSON.parse(body.toString('utf8') || 'null') as unknown };
  } catch {
    return { ok: false, error: 'request body is not valid JSON' };
  }
}
