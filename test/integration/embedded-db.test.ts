// The local stack's embedded database (db/embedded.ts) must behave like PostgreSQL for every
// pattern the product relies on, although PGlite is a single backend session shared by all
// connections. These tests drive it only through `pg`, exactly as the product does.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../../db/embedded';
import { migrate } from '../../db/migrate';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves to 'pending' if `p` has not settled after `ms`. */
async function stateAfter<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
  return Promise.race([p, sleep(ms).then(() => 'pending' as const)]);
}

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined); // a server-side disconnect is part of some tests
  await c.connect();
  return c;
}

const names = async (c: pg.Client | pg.Pool, table: string) =>
  (await c.query<{ name: string }>(`SELECT name FROM ${table} ORDER BY name`)).rows.map((r) => r.name);

void describe('embedded database (PGlite over the wire protocol)', () => {
  let db: EmbeddedDatabase;
  let pool: pg.Pool;

  before(async () => {
    db = await startEmbeddedDatabase({ log: () => undefined });
    pool = new pg.Pool({ connectionString: db.url, max: 10 });
  });
  after(async () => {
    await pool?.end();
    await db?.stop();
  });

  void test('serves a pg Pool with many connections open at once, on 127.0.0.1', async () => {
    assert.match(db.url, /^postgres:\/\/[^@]+@127\.0\.0\.1:\d+\/postgres$/);
    const clients = await Promise.all(Array.from({ length: 10 }, () => pool.connect()));
    try {
      assert.equal(db.stats().connections, 10);
      const rows = await Promise.all(clients.map((c, i) => c.query<{ i: number }>('SELECT $1::int AS i', [i])));
      assert.deepEqual(
        rows.map((r) => r.rows[0]?.i),
        clients.map((_, i) => i),
      );
    } finally {
      for (const c of clients) c.release();
    }
  });

  void test("one connection's uncommitted rows are invisible to another, and its rollback leaves the other's work alone", async () => {
    await pool.query('CREATE TABLE iso (name text)');
    const a = await connect(db.url);
    const b = await connect(db.url);
    try {
      await b.query("INSERT INTO iso VALUES ('b-before')");
      await a.query('BEGIN');
      await a.query("INSERT INTO iso VALUES ('a-uncommitted')");
      // B reads and writes while A's transaction is open. It never sees A's row: it waits
      // until A's transaction is over (transactions run one at a time here).
      const bRead = b.query<{ name: string }>('SELECT name FROM iso ORDER BY name');
      const bWrite = pool.query("INSERT INTO iso VALUES ('b-during')");
      assert.equal(await stateAfter(bRead, 300), 'pending', "B must not run inside A's open transaction");
      await a.query("INSERT INTO iso VALUES ('a-uncommitted-2')");
      await a.query('ROLLBACK');
      assert.deepEqual(
        (await bRead).rows.map((r) => r.name),
        ['b-before'],
      );
      await bWrite;
      assert.deepEqual(await names(a, 'iso'), ['b-before', 'b-during']);

      // The other way round: A commits, B sees exactly what was committed.
      await a.query('BEGIN');
      await a.query("INSERT INTO iso VALUES ('a-committed')");
      const bAfter = names(b, 'iso');
      await a.query('COMMIT');
      assert.deepEqual(await bAfter, ['a-committed', 'b-before', 'b-during']);
    } finally {
      await a.end();
      await b.end();
    }
  });

  void test('a failed transaction keeps the database until ROLLBACK, then others go on', async () => {
    const a = await connect(db.url);
    try {
      await a.query('BEGIN');
      await assert.rejects(a.query('SELECT 1/0'), /division by zero/);
      const other = pool.query<{ one: number }>('SELECT 1 AS one');
      assert.equal(await stateAfter(other, 200), 'pending');
      await a.query('ROLLBACK');
      assert.equal((await other).rows[0]?.one, 1);
    } finally {
      await a.end();
    }
  });

  void test('SELECT ... FOR UPDATE read-modify-write from many connections loses no update', async () => {
    await pool.query('CREATE TABLE counter (id int PRIMARY KEY, v int NOT NULL)');
    await pool.query('INSERT INTO counter VALUES (1, 0)');
    const workers = 8;
    const rounds = 10;
    await Promise.all(
      Array.from({ length: workers }, async () => {
        for (let i = 0; i < rounds; i++) {
          const c = await pool.connect();
          try {
            await c.query('BEGIN');
            const { rows } = await c.query<{ v: number }>('SELECT v FROM counter WHERE id = 1 FOR UPDATE');
            await sleep(1); // invite another connection in between read and write
            await c.query('UPDATE counter SET v = $1 WHERE id = 1', [(rows[0]?.v ?? 0) + 1]);
            await c.query('COMMIT');
          } finally {
            c.release();
          }
        }
      }),
    );
    const { rows } = await pool.query<{ v: number }>('SELECT v FROM counter WHERE id = 1');
    assert.equal(rows[0]?.v, workers * rounds);
  });

  void test('pg_advisory_xact_lock critical sections never overlap', async () => {
    const events: string[] = [];
    await Promise.all(
      Array.from({ length: 6 }, async (_, n) => {
        const c = await pool.connect();
        try {
          await c.query('BEGIN');
          await c.query('SELECT pg_advisory_xact_lock(7)');
          events.push(`in ${n}`);
          await sleep(5);
          events.push(`out ${n}`);
          await c.query('COMMIT');
        } finally {
          c.release();
        }
      }),
    );
    for (let i = 0; i < events.length; i += 2) {
      assert.equal(events[i]?.replace('in', 'out'), events[i + 1], `overlap in ${events.join(', ')}`);
    }
  });

  void test('a session-level advisory lock (pg_advisory_lock) excludes other connections until unlocked', async () => {
    const a = await connect(db.url);
    const b = await connect(db.url);
    try {
      assert.equal((await a.query('SELECT pg_try_advisory_lock(42) AS ok')).rows[0]?.ok, true);
      // Outside any transaction, A still holds the lock: B must not get it.
      const bTry = b.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(42) AS ok');
      assert.equal(await stateAfter(bTry, 300), 'pending');
      assert.equal((await a.query('SELECT 2 AS two')).rows[0]?.two, 2, 'the holder keeps working');
      await a.query('SELECT pg_advisory_unlock(42)');
      assert.equal((await bTry).rows[0]?.ok, true);
      await b.query('SELECT pg_advisory_unlock(42)');
      // A connection that dies holding a session lock releases it, as in PostgreSQL.
      await a.query('SELECT pg_advisory_lock(43)');
      await a.end();
      assert.equal((await b.query('SELECT pg_try_advisory_lock(43) AS ok')).rows[0]?.ok, true);
      await b.query('SELECT pg_advisory_unlock_all()');
    } finally {
      await a.end().catch(() => undefined);
      await b.end();
    }
  });

  void test("extended-protocol batches of two connections never interleave (pglite-socket's bug)", async () => {
    // A's Parse/Bind/Execute with a 300 kB parameter spans several TCP reads; B's small queries
    // arrive in between. Served message by message, B's Parse replaced A's unnamed statement.
    const a = await connect(db.url);
    const b = await connect(db.url);
    const big = 'x'.repeat(300_000);
    try {
      for (let round = 0; round < 50; round++) {
        const aq = a.query<{ n: number; who: string }>("SELECT length($1::text) AS n, 'A' AS who", [big]);
        const bq = (async () => {
          const out: pg.QueryResult<{ v: number; who: string }>[] = [];
          for (const i of [0, 1, 2, 3, 4]) out.push(await b.query<{ v: number; who: string }>("SELECT $1::int AS v, 'B' AS who", [i]));
          return out;
        })();
        const [ar, br] = await Promise.all([aq, bq]);
        assert.deepEqual(ar.rows[0], { n: 300_000, who: 'A' });
        assert.deepEqual(
          br.map((r) => r.rows[0]),
          [0, 1, 2, 3, 4].map((v) => ({ v, who: 'B' })),
        );
      }
    } finally {
      await a.end();
      await b.end();
    }
  });

  void test('a client that disconnects mid-transaction is rolled back and frees the database', async () => {
    await pool.query('CREATE TABLE gone (name text)');
    const a = await connect(db.url);
    await a.query('BEGIN');
    await a.query("INSERT INTO gone VALUES ('never')");
    const waiting = pool.query<{ n: number }>('SELECT count(*)::int AS n FROM gone');
    assert.equal(await stateAfter(waiting, 200), 'pending');
    (a as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    assert.equal((await waiting).rows[0]?.n, 0);
    assert.equal((await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM gone')).rows[0]?.n, 0);
  });

  void test("runs the product's migrations, also from two processes' worth of connections at once", async () => {
    await Promise.all([migrate(db.url), migrate(db.url)]);
    const tables = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'");
    assert.ok((tables.rows[0]?.n ?? 0) > 0, 'migrations created tables');
    await migrate(db.url); // and again: nothing to do
  });
});

void test('a connection waiting on an open transaction gets SQLSTATE 55P03 after lockWaitTimeoutMs, and stays usable', async () => {
  const db = await startEmbeddedDatabase({ lockWaitTimeoutMs: 300, idleInTransactionTimeoutMs: 0, log: () => undefined });
  const a = await connect(db.url);
  const b = await connect(db.url);
  try {
    await a.query('BEGIN');
    await assert.rejects(b.query('SELECT 1'), (err: pg.DatabaseError) => err.code === '55P03');
    await assert.rejects(b.query('SELECT $1::int', [1]), (err: pg.DatabaseError) => err.code === '55P03');
    await a.query('COMMIT');
    assert.equal((await b.query<{ v: number }>('SELECT $1::int AS v', [5])).rows[0]?.v, 5);
  } finally {
    await a.end();
    await b.end();
    await db.stop();
  }
});

void test('a connection idle in a transaction past idleInTransactionTimeoutMs is disconnected and rolled back', async () => {
  const db = await startEmbeddedDatabase({ idleInTransactionTimeoutMs: 300, log: () => undefined });
  const a = await connect(db.url);
  const b = await connect(db.url);
  try {
    await b.query('CREATE TABLE idle (name text)');
    await a.query('BEGIN');
    await a.query("INSERT INTO idle VALUES ('abandoned')");
    assert.equal((await b.query<{ n: number }>('SELECT count(*)::int AS n FROM idle')).rows[0]?.n, 0);
    await assert.rejects(a.query('SELECT 1'));
  } finally {
    await a.end().catch(() => undefined);
    await b.end();
    await db.stop();
  }
});

void test('refuses connections past maxConnections with SQLSTATE 53300', async () => {
  const db = await startEmbeddedDatabase({ maxConnections: 2, log: () => undefined });
  const clients = [await connect(db.url), await connect(db.url)];
  try {
    await assert.rejects(connect(db.url), /too many clients/);
  } finally {
    for (const c of clients) await c.end();
    await db.stop();
  }
});

void test('data survives a killed process, and a data directory in use is refused', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-embedded-'));
  const pgdata = path.join(dataDir, 'pgdata');
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '-e',
      `require('./db/embedded.ts').startEmbeddedDatabase({ dataDir: ${JSON.stringify(pgdata)} }).then((d) => console.log('URL ' + d.url))`,
    ],
    { cwd: path.resolve(__dirname, '..', '..'), stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /URL (\S+)/.exec(out);
        if (m?.[1]) resolve(m[1]);
      });
      child.once('exit', (code) => reject(new Error(`embedded database process exited early (${code})`)));
    });
    const c = await connect(url);
    await c.query('CREATE TABLE kept (name text)');
    await c.query("INSERT INTO kept VALUES ('committed')");
    await c.query('BEGIN');
    await c.query("INSERT INTO kept VALUES ('in-flight')");
    await assert.rejects(startEmbeddedDatabase({ dataDir: pgdata, log: () => undefined }), /in use by process/);

    const killed = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await killed;
    await c.end().catch(() => undefined);

    const db = await startEmbeddedDatabase({ dataDir: pgdata, log: () => undefined });
    try {
      const c2 = await connect(db.url);
      assert.deepEqual(await names(c2, 'kept'), ['committed']);
      await c2.end();
    } finally {
      await db.stop();
    }
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
