// Start-up dependencies (database, Temporal) may be down when a process starts: wait for them,
// saying so, instead of exiting and relying on a restart loop.

import type { Logger } from './log';

export async function untilReady<T>(what: string, fn: () => Promise<T>, log: Logger, opts: { maxDelayMs?: number; timeoutMs?: number } = {}): Promise<T> {
  const started = Date.now();
  let delay = 250;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (opts.timeoutMs !== undefined && Date.now() - started > opts.timeoutMs) throw err;
      log.warn({ err: (err as Error).message, attempt }, `${what} is not reachable yet; retrying in ${delay} ms`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(opts.maxDelayMs ?? 10_000, delay * 2);
    }
  }
}
