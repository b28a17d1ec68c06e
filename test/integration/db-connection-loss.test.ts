// A database connection that drops between two statements of a transaction (a PostgreSQL restart
// or failover) must fail that transaction like any other error and leave the process running:
// the API and the workers share db/client.ts's pool, and before its fix such a drop emitted an
// unhandled 'error' that killed the process (found by `npm run chaos -- --cluster`, which
// restarts PostgreSQL). An unhandled error fails this file through the test runner.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { openDatabase, type Database } from '../../db/client';
import { withTransaction } from '../../db/ledger';
import { createTestDatabase, testDatabaseServerUrl, type TestDatabase } from '../../scripts/lib/test-database';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let tdb: TestDatabase;
let database: Database;

before(async () => {
  tdb = await createTestDatabase('connection_loss', { migrate: false });
  database = openDatabase(tdb.url, { max: 2, applicationName: 'remit-connection-loss' });
});

after(async () => {
  await database.close();
  await tdb.drop();
});

async function terminateBackend(pid: number): Promise<void> {
  const admin = new pg.Client({ connectionString: testDatabaseServerUrl() });
  await admin.connect();
  try {
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
  } finally {
    await admin.end();
  }
}

test('a connection dropped while a transaction holds it fails that transaction, not the process, and the pool serves the next one', async () => {
  await assert.rejects(
    withTransaction(database, async (c) => {
      const { pid } = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!;
      await terminateBackend(pid);
      // The server's FATAL arrives while the client is lent out and between statements.
      await sleep(500);
      await c.query('SELECT 1');
    }),
  );
  const r = await database.pool.query<{ one: number }>('SELECT 1 AS one');
  assert.equal(r.rows[0]!.one, 1);
});
