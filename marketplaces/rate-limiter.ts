// The marketplace rate limit across every worker process: AWS allows 10 BatchMeterUsage calls a
// second per seller account and region, however many workers send. The in-process limiter of
// marketplaces/batcher.ts holds for one process; this one keeps its window in PostgreSQL.
//
// acquire(key): in one short transaction holding a transaction-level advisory lock on the key,
// count the calls of the key whose window has not passed; if fewer than the limit, insert ours
// and return a release; otherwise wait until the oldest one's window passes and try again.
// release() moves our call's time to when it finished, because the marketplace counts a call
// when it arrives, and a slow call that left early could arrive late (see batcher.ts).
// Times are the database's clock, so workers with skewed clocks still agree.

import type { RateLimiter } from './batcher';
import type { Database } from '../db/client';

export interface PgRateLimiterOptions {
  callsPerSecond: number;
  /** Window per call; default 1000 ms. */
  windowMs?: number;
  /** Spacing on top of the window, absorbing transit jitter; default 50 ms. */
  marginMs?: number;
}

export function createPgRateLimiter(database: Database, o: PgRateLimiterOptions): RateLimiter {
  const span = ((o.windowMs ?? 1000) + (o.marginMs ?? 50)) / 1000;
  return {
    async acquire(key: string) {
      for (;;) {
        const c = await database.pool.connect();
        let waitMs: number;
        try {
          await c.query('BEGIN');
          await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`remit-rate:${key}`]);
          const r = await c.query<{ n: number; wait: number | null }>(
            `SELECT COUNT(*)::int AS n,
                    EXTRACT(EPOCH FROM (MIN(at) + make_interval(secs => $2)) - clock_timestamp()) * 1000 AS wait
             FROM marketplace_calls WHERE rate_key = $1 AND at > clock_timestamp() - make_interval(secs => $2)`,
            [key, span],
          );
          const row = r.rows[0]!;
          if (row.n < o.callsPerSecond) {
            const ins = await c.query<{ id: number }>('INSERT INTO marketplace_calls (rate_key) VALUES ($1) RETURNING id', [key]);
            // Keep the table small: calls older than a minute no longer matter to anyone.
            await c.query(`DELETE FROM marketplace_calls WHERE rate_key = $1 AND at < clock_timestamp() - interval '1 minute'`, [key]);
            await c.query('COMMIT');
            const id = ins.rows[0]!.id;
            return async () => {
              await database.pool.query('UPDATE marketplace_calls SET at = clock_timestamp() WHERE id = $1', [id]).catch(() => undefined);
            };
          }
          await c.query('COMMIT');
          waitMs = Math.max(5, Number(row.wait ?? 10));
        } catch (err) {
          await c.query('ROLLBACK').catch(() => undefined);
          throw err;
        } finally {
          c.release();
        }
        await new Promise((r) => setTimeout(r, waitMs));
      }
    },
  };
}
