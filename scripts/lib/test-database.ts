// A fresh, migrated PostgreSQL database per test (or per test file) on the server that
// `npm test` started. Databases are cheap; sharing one between tests makes them order-dependent.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../../db/migrate';

export interface TestDatabase {
  /** Connection URL of the new database. */
  url: string;
  name: string;
  /** Drops it, disconnecting whoever is still connected. Idempotent. */
  drop(): Promise<void>;
}

/** The admin URL of the test server; tests are meant to run under `npm test`, which sets it. */
export function testDatabaseServerUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) {
    throw new Error(
      'TEST_DATABASE_URL is not set: run the tests with `npm test` (or `npm test -- <file filter>`), ' +
        'which starts a throwaway PostgreSQL and Temporal server and sets it.',
    );
  }
  return url;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: testDatabaseServerUrl() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates a uniquely named database (`t_<name>_<random>`) and applies the product's migrations
 * to it (db/migrate.ts), unless `{ migrate: false }`.
 */
export async function createTestDatabase(name = 'test', opts: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '').slice(0, 40) || 'test';
  const dbName = `t_${slug}_${randomBytes(5).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE "${dbName}"`));
  const url = new URL(testDatabaseServerUrl());
  url.pathname = `/${dbName}`;
  let dropped: Promise<void> | undefined;
  const db: TestDatabase = {
    url: url.toString(),
    name: dbName,
    drop: () =>
      (dropped ??= admin(async (c) => {
        await c.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
      })),
  };
  if (opts.migrate !== false) {
    try {
      await migrate(db.url);
    } catch (err) {
      await db.drop().catch(() => undefined);
      throw err;
    }
  }
  return db;
}
