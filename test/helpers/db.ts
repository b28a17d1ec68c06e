// A fresh, uniquely named database per test file on the PostgreSQL server `npm test` started.

import { randomBytes } from 'node:crypto';
import pg from 'pg';

export async function createTestDatabase(name?: string): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = process.env.TEST_DATABASE_URL;
  if (!admin) throw new Error('TEST_DATABASE_URL is not set: run the tests with `npm test`, which starts PostgreSQL');
  const db = (name ?? `remit_test_${randomBytes(6).toString('hex')}`).toLowerCase();
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE "${db}"`);
  } finally {
    await c.end();
  }
  const url = new URL(admin);
  url.pathname = `/${db}`;
  return {
    url: url.toString(),
    async drop() {
      const d = new pg.Client({ connectionString: admin });
      await d.connect();
      try {
        await d.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
      } finally {
        await d.end();
      }
    },
  };
}
