// `npm start`'s embedded database (scripts/lib/postgres-main.ts over scripts/lib/postgres.ts): a
// real PostgreSQL whose data is kept across restarts of the stack. What the stack relies on:
// migrations apply, committed data survives a clean restart and a crash, several processes work
// at once without waiting for each other's transactions, the supervisor learns when the server
// dies, and nothing outside this machine can connect. Driven through `pg`, as the product is.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrate } from '../../db/migrate';
import { freePort, pidAlive, REPO_ROOT } from '../../scripts/lib/proc';
import { startPostgres } from '../../scripts/lib/postgres';

interface Launched {
  child: ChildProcess;
  url: string;
  output: () => string;
}

/** Starts the launcher as the stack does (its own process), and waits until it answers queries. */
async function launch(dataDir: string, port: number): Promise<Launched> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts', 'lib', 'postgres-main.ts')], {
    cwd: REPO_ROOT,
    env: { ...process.env, REMIT_POSTGRES_DATA_DIR: dataDir, REMIT_POSTGRES_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  // Its own word that its server is ready, not merely an answer on the port (which a server left
  // over from a killed launcher could give).
  const deadline = Date.now() + 90_000;
  while (!/ready in \d+ ms/.test(out)) {
    if (child.exitCode !== null) throw new Error(`the launcher exited (${child.exitCode}):\n${out}`);
    if (Date.now() > deadline) throw new Error(`the launcher was not ready in 90 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('SELECT 1');
  await c.end();
  return { child, url, output: () => out };
}

const exitOf = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve({ code: child.exitCode, signal: child.signalCode })
    : new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined); // a server that goes away is part of some tests
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Runs `sql` from a separate Node process (another service of the stack) and returns its rows. */
function queryFromAnotherProcess(url: string, sql: string): Promise<unknown[]> {
  const code = `const pg = require('pg'); const c = new pg.Client(process.env.U); c.connect().then(() => c.query(process.env.Q)).then((r) => { console.log(JSON.stringify(r.rows)); return c.end(); }).catch((e) => { console.error(e.message); process.exit(1); });`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', code], { cwd: REPO_ROOT, env: { ...process.env, U: url, Q: sql }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as unknown[]) : reject(new Error(`exit ${code}: ${err}`))));
  });
}

void describe("npm start's embedded PostgreSQL (scripts/lib/postgres-main.ts)", () => {
  let stateDir: string;
  let dataDir: string;
  let port: number;
  let db: Launched | undefined;

  before(async () => {
    // As the stack makes it: a private state directory with the cluster inside.
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-embedded-'));
    dataDir = path.join(stateDir, 'postgres');
    port = await freePort();
    db = await launch(dataDir, port);
  });
  after(async () => {
    if (db && db.child.exitCode === null) {
      db.child.kill('SIGTERM');
      await exitOf(db.child);
    }
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  void test("applies the product's migrations, from two processes at once, and again with nothing to do", async () => {
    await Promise.all([migrate(db!.url), migrate(db!.url)]);
    await migrate(db!.url);
    const tables = await withClient(db!.url, (c) => c.query<{ t: string }>("SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public'"));
    assert.ok(tables.rows.some((r) => r.t === 'marketplace_records'), 'the ledger table exists');
  });

  void test('listens on 127.0.0.1 only, with durable settings (it keeps real data)', async () => {
    const rows = await withClient(db!.url, async (c) => (await c.query("SELECT current_setting('listen_addresses') AS listen, current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sync")).rows);
    assert.deepEqual(rows[0], { listen: '127.0.0.1', fsync: 'on', sync: 'on' });
  });

  void test("another process commits while one holds an open transaction: no waiting, the open one's rows stay invisible", async () => {
    await withClient(db!.url, (c) => c.query('CREATE TABLE side_by_side (name text PRIMARY KEY)'));
    await withClient(db!.url, async (holder) => {
      await holder.query('BEGIN');
      await holder.query("INSERT INTO side_by_side VALUES ('uncommitted')");
      await holder.query("SELECT pg_advisory_xact_lock(42)");
      // The other process's own transaction and read do not wait for the holder's (a serializing
      // database would hang here until the holder commits).
      await queryFromAnotherProcess(db!.url, "INSERT INTO side_by_side VALUES ('other')");
      const seen = await queryFromAnotherProcess(db!.url, 'SELECT name FROM side_by_side ORDER BY name');
      assert.deepEqual(seen, [{ name: 'other' }]);
      // ... while what the product uses to exclude others still excludes them.
      const locked = await queryFromAnotherProcess(db!.url, 'SELECT pg_try_advisory_xact_lock(42) AS got');
      assert.deepEqual(locked, [{ got: false }]);
      await holder.query('COMMIT');
    });
    assert.deepEqual(await queryFromAnotherProcess(db!.url, 'SELECT name FROM side_by_side ORDER BY name'), [{ name: 'other' }, { name: 'uncommitted' }]);
  });

  void test('committed data survives a restart of the launcher, and an in-flight transaction does not', async () => {
    await withClient(db!.url, async (c) => {
      await c.query('CREATE TABLE kept (name text)');
      await c.query("INSERT INTO kept VALUES ('committed')");
      await c.query('BEGIN');
      await c.query("INSERT INTO kept VALUES ('in-flight')");
      db!.child.kill('SIGTERM'); // what the stack's Ctrl-C sends
      assert.deepEqual(await exitOf(db!.child), { code: 0, signal: null });
    });
    db = await launch(dataDir, port);
    const rows = await withClient(db.url, (c) => c.query<{ name: string }>('SELECT name FROM kept'));
    assert.deepEqual(rows.rows, [{ name: 'committed' }]);
  });

  void test('when the server dies the launcher exits non-zero (so the stack restarts it), and committed data survives the crash', async () => {
    await withClient(db!.url, (c) => c.query("CREATE TABLE crashed (name text); INSERT INTO crashed VALUES ('committed')"));
    const postmaster = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(postmaster, 'SIGKILL');
    const exit = await exitOf(db!.child);
    assert.notEqual(exit.code, 0, `the launcher must report the death:\n${db!.output()}`);
    db = await launch(dataDir, port);
    const rows = await withClient(db.url, (c) => c.query<{ name: string }>('SELECT name FROM crashed'));
    assert.deepEqual(rows.rows, [{ name: 'committed' }]);
  });

  void test('a second launcher on the same data is refused while the first runs; after the first is SIGKILLed, it takes over the orphaned server', async () => {
    await withClient(db!.url, (c) => c.query("CREATE TABLE orphaned (name text); INSERT INTO orphaned VALUES ('committed')"));
    const other = await freePort();
    await assert.rejects(launch(dataDir, other), /in use by PostgreSQL pid \d+, started by pid \d+/);
    const postmaster = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    db!.child.kill('SIGKILL'); // no chance to stop its server
    await exitOf(db!.child);
    assert.ok(pidAlive(postmaster), 'the server outlived its killed launcher');
    db = await launch(dataDir, port);
    assert.equal(pidAlive(postmaster), false, 'the orphan was shut down');
    const rows = await withClient(db.url, (c) => c.query<{ name: string }>('SELECT name FROM orphaned'));
    assert.deepEqual(rows.rows, [{ name: 'committed' }]);
  });
});

void test('a kept data directory made by another PostgreSQL major version is refused with what to do, and left alone', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-embedded-old-'));
  try {
    const dataDir = path.join(dir, 'postgres');
    fs.mkdirSync(dataDir);
    fs.writeFileSync(path.join(dataDir, 'PG_VERSION'), '15\n');
    await assert.rejects(startPostgres({ dataDir, log: () => undefined }), /holds a PostgreSQL 15 cluster.*Move it away/s);
    assert.deepEqual(fs.readdirSync(dataDir), ['PG_VERSION']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

void test('a server does not outlive the process that started it, even one that exits without stopping it', async () => {
  const code = `require('./scripts/lib/postgres.ts').startPostgres({ log: () => {} }).then((s) => { console.log(JSON.stringify({ pid: s.pid, dataDir: s.dataDir })); process.exit(0); });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', code], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  await exitOf(child);
  const { pid, dataDir } = JSON.parse(out) as { pid: number; dataDir: string };
  const deadline = Date.now() + 30_000;
  while (pidAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(pidAlive(pid), false, 'the postmaster did not outlive the process that started it');
  fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
});
