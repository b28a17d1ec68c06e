// The infrastructure `npm test` provides: a Temporal dev server with the product's search
// attributes, a PostgreSQL server with a database per test, and the helpers that start them.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { SearchAttributeType } from '@temporalio/common';
import pg from 'pg';
import { pidAlive } from '../../scripts/lib/proc';
import { startPostgres } from '../../scripts/lib/postgres';
import { ensureTemporalCli, startTemporalDevServer } from '../../scripts/lib/temporal-cli';
import { SA } from '../../workflows/definitions';
import { createTestDatabase, testDatabaseServerUrl } from '../../scripts/lib/test-database';
import { connectTestClient, testTemporal, type TestTemporalClient } from '../helpers/temporal';

const execFileP = promisify(execFile);
const quiet = () => undefined;

const expectedTypes = Object.fromEntries(
  Object.values(SA).map((k) => [k.name, { [SearchAttributeType.DATETIME]: 'INDEXED_VALUE_TYPE_DATETIME', [SearchAttributeType.KEYWORD_LIST]: 'INDEXED_VALUE_TYPE_KEYWORD_LIST' }[k.type as string] ?? 'INDEXED_VALUE_TYPE_KEYWORD']),
);

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

void describe('Temporal dev server', () => {
  let temporal: TestTemporalClient;
  before(async () => {
    temporal = await connectTestClient();
  });
  after(async () => {
    await temporal?.close();
  });

  void test('has the custom search attributes registered with their types (temporal operator search-attribute list)', async () => {
    const { address, namespace, cliPath } = testTemporal();
    assert.match(address, /^127\.0\.0\.1:\d+$/);
    const { stdout } = await execFileP(cliPath, ['operator', 'search-attribute', 'list', '--address', address, '--namespace', namespace, '--output', 'json']);
    const custom = (JSON.parse(stdout) as { customAttributes: Record<string, string> }).customAttributes;
    for (const [name, type] of Object.entries(expectedTypes)) assert.equal(custom[name], type, `search attribute ${name}`);
  });

  void test('the same through the operator service, and a visibility query on them finds a workflow', async () => {
    const { client, connection, namespace } = temporal;
    const listed = await connection.operatorService.listSearchAttributes({ namespace });
    for (const name of Object.keys(expectedTypes)) assert.ok(name in (listed.customAttributes ?? {}), name);

    // No worker needed: the workflow is only started, found by its search attributes, terminated.
    const workflowId = `infra-test-${Date.now()}-${Math.random().toString(16).slice(2)}`;
    const handle = await client.workflow.start('infraProbe', {
      taskQueue: `infra-test-nobody-polls-${workflowId}`,
      workflowId,
      typedSearchAttributes: [
        { key: SA.Marketplace, value: 'aws' },
        { key: SA.RemittanceStatus, value: 'Failed' },
        { key: SA.OrgId, value: [workflowId, "another-org"] },
        { key: SA.RemittanceHour, value: new Date('2026-01-01T05:00:00Z') },
      ],
    });
    try {
      // Datetime equality does not match on the dev server's SQLite visibility store; a range does.
      const query = `RemittanceStatus="Failed" AND Marketplace="aws" AND OrgId="${workflowId}" AND RemittanceHour >= "2026-01-01T05:00:00Z" AND RemittanceHour < "2026-01-01T06:00:00Z"`;
      let found: string[] = [];
      for (let i = 0; i < 50 && found.length === 0; i++) {
        found = [];
        for await (const wf of client.workflow.list({ query })) found.push(wf.workflowId);
        if (!found.length) await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(found, [workflowId]);
    } finally {
      await handle.terminate('infra test done');
    }
  });
});

void describe('PostgreSQL server', () => {
  void test('answers on 127.0.0.1, and createTestDatabase gives a fresh migrated database that drop() removes', async () => {
    const adminUrl = testDatabaseServerUrl();
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ v: number }>("SELECT current_setting('server_version_num')::int AS v");
      assert.ok((rows[0]?.v ?? 0) >= 130000, 'PostgreSQL 13 or newer (DROP DATABASE ... WITH (FORCE))');

      const db = await createTestDatabase('infra check');
      assert.match(db.name, /^t_infra_check_[0-9a-f]{10}$/);
      const c = new pg.Client({ connectionString: db.url });
      c.on('error', () => undefined); // drop() below disconnects it on purpose
      await c.connect();
      const current = await c.query<{ d: string }>('SELECT current_database() AS d');
      assert.equal(current.rows[0]?.d, db.name);
      const tables = await c.query<{ n: number }>("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'");
      assert.ok((tables.rows[0]?.n ?? 0) > 0, 'migrations were applied');
      // drop() must work while someone is still connected (a test that forgot to close its pool).
      await db.drop();
      await c.end().catch(() => undefined);
      await db.drop();
      const left = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [db.name]);
      assert.equal(left.rowCount, 0);
    } finally {
      await admin.end();
    }
  });

  void test('createTestDatabase explains itself when TEST_DATABASE_URL is unset', async () => {
    const saved = process.env.TEST_DATABASE_URL;
    delete process.env.TEST_DATABASE_URL;
    try {
      await assert.rejects(createTestDatabase(), /TEST_DATABASE_URL is not set: run the tests with `npm test`/);
    } finally {
      process.env.TEST_DATABASE_URL = saved;
    }
  });
});

void describe('set-up helpers', () => {
  let scratch: string;
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-infra-'));
  });
  after(() => {
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  void test('ensureTemporalCli takes $TEMPORAL_CLI_PATH when set, over PATH, and refuses a broken one', async () => {
    const fakeDir = path.join(scratch, 'bin');
    fs.mkdirSync(fakeDir);
    const fake = path.join(fakeDir, 'temporal');
    fs.writeFileSync(fake, '#!/bin/sh\necho "temporal version 0.0.0-fake"\n', { mode: 0o755 });
    const toolsDir = path.join(scratch, 'tools'); // empty: nothing may be installed here
    const real = testTemporal().cliPath;

    const fromEnv = await ensureTemporalCli(quiet, { env: { PATH: fakeDir, TEMPORAL_CLI_PATH: real }, toolsDir });
    assert.equal(fromEnv.path, path.resolve(real));
    assert.match(fromEnv.source, /TEMPORAL_CLI_PATH/);
    assert.match(fromEnv.version, /^temporal version \d/);

    const fromPath = await ensureTemporalCli(quiet, { env: { PATH: fakeDir }, toolsDir });
    assert.equal(fromPath.path, fake);
    assert.match(fromPath.source, /PATH/);

    await assert.rejects(
      ensureTemporalCli(quiet, { env: { PATH: fakeDir, TEMPORAL_CLI_PATH: path.join(scratch, 'missing') }, toolsDir }),
      /TEMPORAL_CLI_PATH is set to .*missing, but it does not work/,
    );
    assert.equal(fs.existsSync(toolsDir), false, 'nothing was installed');
  });

  void test('startPostgres starts a loopback-only server and stop() removes it and its data', async () => {
    const server = await startPostgres({ log: quiet });
    const c = new pg.Client({ connectionString: server.url });
    await c.connect();
    const { rows } = await c.query<{ listen: string; fsync: string }>("SELECT current_setting('listen_addresses') AS listen, current_setting('fsync') AS fsync");
    await c.end();
    assert.deepEqual(rows[0], { listen: '127.0.0.1', fsync: 'off' });
    await server.stop();
    assert.equal(pidAlive(server.pid), false, 'postmaster gone');
    assert.equal(await portAnswers(server.port), false, 'port closed');
    assert.equal(fs.existsSync(server.dataDir), false, 'temporary data removed');
    await server.stop(); // idempotent
  });

  void test('startTemporalDevServer: stop() ends that server, and a server that dies at start-up says why', async () => {
    const cliPath = testTemporal().cliPath;
    const server = await startTemporalDevServer({ headless: true, cliPath, log: quiet });
    const port = Number(server.address.split(':')[1]);
    assert.equal(await portAnswers(port), true);
    await server.stop();
    assert.equal(pidAlive(server.pid), false);
    assert.equal(await portAnswers(port), false);

    await assert.rejects(
      startTemporalDevServer({ headless: true, cliPath, log: quiet, extraArgs: ['--no-such-flag'] }),
      (err: Error) => /exited during start-up/.test(err.message) && /unknown flag: --no-such-flag/.test(err.message),
    );
  });
});
