// The database handle every process shares: one pg Pool, one drizzle instance over it.

import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import * as schema from './schema';

// NUMERIC comes back as a string (exact); keep it so. BIGINT (int8) as a JS number: our
// sequences stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export type Db = NodePgDatabase<typeof schema>;

export interface Database {
  pool: pg.Pool;
  db: Db;
  close(): Promise<void>;
}

export function openDatabase(url: string, opts: { max?: number; applicationName?: string } = {}): Database {
  const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10, application_name: opts.applicationName ?? 'remit' });
  // An idle client losing its connection (database restart) must not crash the process.
  pool.on('error', () => undefined);
  // Nor one lent out: pg-pool takes its own listener off a client while it is checked out, and a
  // connection dropped between two statements of a transaction (a restart, a failover) then
  // emitted an unhandled 'error' and killed the API or worker (found by `npm run chaos --
  // --cluster`). With this the next statement fails, the transaction rolls back as for any
  // error, and the pool discards the client on release.
  pool.on('connect', (client) => client.on('error', () => undefined));
  const db = drizzle(pool, { schema });
  return { pool, db, close: () => pool.end() };
}

/** Whether the database answers (GET /readyz). */
export async function pingDatabase(database: Database): Promise<void> {
  await database.pool.query('SELECT 1');
}
