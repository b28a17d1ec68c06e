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

/**
 * Names a database on the test server that `npm test` migrated once at set-up: a migrated test
 * database is then a copy of it (CREATE DATABASE ... TEMPLATE), about 160 ms where running the
 * migrations on each new database took about 400 ms, for some hundred databases a run.
 */
export const MIGRATED_TEMPLATE_ENV = 'REMIT_TEST_TEMPLATE_DATABASE';

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

async function admin<T>(fn: (c: pg.Client) => Promise<T>, serverUrl = testDatabaseServerUrl()): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates a uniquely named database (`t_<name>_<random>`) and applies the product's migrations
 * to it (db/migrate.ts), unless `{ migrate: false }`; under `npm test`, by copying the database it
 * migrated once (MIGRATED_TEMPLATE_ENV).
 */
export async function createTestDatabase(name = 'test', opts: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '').slice(0, 40) || 'test';
  const dbName = `t_${slug}_${randomBytes(5).toString('hex')}`;
  const template = opts.migrate !== false ? process.env[MIGRATED_TEMPLATE_ENV] : undefined;
  await admin((c) => c.query(`CREATE DATABASE "${dbName}"${template ? ` TEMPLATE "${template}"` : ''}`));
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
  if (opts.migrate !== false && !template) {
    try {
      await migrate(db.url);
    } catch (err) {
      await db.drop().catch(() => undefined);
      throw err;
    }
  }
  return db;
}

/**
 * The database every migrated test database copies (MIGRATED_TEMPLATE_ENV), made by `npm test`
 * once per run on its server: the migrations applied as the product applies them. Nothing may stay
 * connected to it, or PostgreSQL refuses to copy it.
 */
export async function createMigratedTemplate(serverUrl: string): Promise<{ name: string; drop(): Promise<void> }> {
  const name = `t_template_${randomBytes(5).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE "${name}"`), serverUrl);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const drop = () => admin(async (c) => void (await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)), serverUrl);
  try {
    await migrate(url.toString());
  } catch (err) {
    await drop().catch(() => undefined);
    throw err;
  }
  return { name, drop };
}
