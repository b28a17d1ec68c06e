// The bits the emulators (Entra, Azure, AWS) share: a listener (TLS with the local CA's server
// certificate, or plain HTTP as AWS's endpoint override allows), bounded body reading, JSON
// replies, and closing that does not wait for requests a fault left hanging.

import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export interface Listener {
  server: http.Server;
  url: string;
  host: string;
  port: number;
  /** Answers nothing more; drops hanging and idle connections so close() cannot stall. */
  close(): Promise<void>;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer | null) => void | Promise<void>;

export interface ListenOptions {
  /** Server certificate and key: HTTPS; without, plain HTTP. */
  tls?: { certPem: string; keyPem: string };
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** A body of this many bytes or more reaches the handler as null; default 1 MiB. */
  maxBodyBytes?: number;
}

export async function listen(opts: ListenOptions, handler: Handler): Promise<Listener> {
  const limit = opts.maxBodyBytes ?? 1024 * 1024;
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    readBody(req, limit)
      .then((body) => handler(req, res, body))
      .catch(() => res.socket?.destroy());
  };
  const server = opts.tls ? https.createServer({ cert: opts.tls.certPem, key: opts.tls.keyPem, minVersion: 'TLSv1.2' }, onRequest) : http.createServer(onRequest);
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
    url: `${opts.tls ? 'https' : 'http'}://${urlHost}:${port}`,
    host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// Past the limit the request is refused, but the body is still read (so the client sees the
// answer rather than EPIPE) up to this much; then the connection is given up.
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

/** A JSON reply; `headers` may replace the content type (AWS answers application/x-amz-json-1.1). */
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
