// A small client of the remit HTTP API with the operator token. Failures become CliErrors that
// say what to check; a 400 (the API refused the input, nothing changed) exits 2 like a bad flag.

import { CliError } from './args';

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
    private readonly o: { actor?: string; source?: string; timeoutMs?: number } = {},
  ) {}

  get<T>(path: string, query: Record<string, string | undefined> = {}): Promise<T> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, v);
    const qs = q.toString();
    return this.call<T>('GET', qs ? `${path}?${qs}` : path);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('POST', path, body);
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.o.actor) headers['x-remit-actor'] = this.o.actor;
    const timeoutMs = this.o.timeoutMs ?? 60_000;
    const where = `${method} ${this.baseUrl}${path.split('?')[0]}`;
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const why = e.name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : (e.cause?.code ?? e.cause?.message ?? e.message);
      throw new CliError(`cannot reach the remit API (${where}): ${why}. Is the stack running? (API URL from ${this.o.source ?? '--api, REMIT_API_URL or .remit/local-stack.json'})`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (res.ok) {
      if (json === undefined) throw new CliError(`${where} answered ${res.status} without JSON`);
      return json as T;
    }
    const b = (json ?? {}) as { error?: unknown; errors?: unknown };
    const message = typeof b.error === 'string' ? b.error : text.slice(0, 500) || res.statusText;
    if (res.status === 401) throw new CliError(`the API refused the operator token (${message}): check --token or REMIT_OPERATOR_TOKEN`);
    const details = Array.isArray(b.errors)
      ? b.errors.map((x) => {
          const o = x as { field?: unknown; index?: unknown; message?: unknown };
          return `\n  - ${o.field ? `${String(o.field)}: ` : ''}${String(o.message ?? JSON.stringify(x))}`;
        }).join('')
      : '';
    throw new CliError(`${where}: ${res.status} ${message}${details}`, res.status === 400 ? 2 : 1);
  }
}
