// The local stack's default database when DATABASE_URL is unset: PGlite (PostgreSQL compiled to
// WebAssembly, in this process) persisted under a data directory, served on a loopback TCP port
// with the PostgreSQL wire protocol so that `pg`, drizzle and psql talk to it unchanged.
//
// Why not @electric-sql/pglite-socket's PGLiteSocketServer as is: PGlite is ONE backend session,
// and that server multiplexes connections onto it message by message. It keeps other connections
// out only while PGlite reports an explicit transaction block, which is not enough:
//   - node-postgres sends a parameterised query as Parse/Bind/Describe/Execute/Sync, several
//     messages that may arrive in separate TCP reads. Between them there is no transaction block,
//     so another connection's Parse can replace the unnamed statement and our Bind runs the
//     other's SQL with our parameters. Reproduced with pglite-socket 0.2.17: one connection
//     binding a 300 kB text parameter while another ran `SELECT $1::int` got
//     `invalid input syntax for type integer: "xxx..."`.
//   - session-level advisory locks (db/migrate.ts uses pg_advisory_lock) belong to the one
//     session, so every connection "holds" them at once: they exclude nothing.
//   - a query that throws inside its queue leaves it marked busy for good.
//
// What this server does instead: one exclusive lock on the backend, held by a connection from
// its first message until the backend is idle again for it, i.e. until a ReadyForQuery with
// status 'I' (so across BEGIN ... COMMIT/ROLLBACK, across a whole extended-protocol batch up to
// Sync, and while it still holds session-level advisory locks). Transactions therefore run one
// after another, never interleaved: the other connection simply waits. That is stricter than
// PostgreSQL's isolation (serial execution), which is correct for every pattern the product uses
// (uncommitted rows invisible, rollbacks independent, FOR UPDATE and advisory locks exclusive);
// the cost is throughput, which is fine for a local stack. Real PostgreSQL via DATABASE_URL is
// the production answer.
//
// Consequences the callers must know:
//   - a connection that keeps a transaction open while it waits for ANOTHER connection's query
//     deadlocks where PostgreSQL would not; a waiter gives up after `lockWaitTimeoutMs` with
//     SQLSTATE 55P03 rather than hanging, and a holder idle in a transaction for longer than
//     `idleInTransactionTimeoutMs` is disconnected (its transaction rolled back), as PostgreSQL's
//     idle_in_transaction_session_timeout would.
//   - session state (SET, named prepared statements, temp tables, LISTEN) is shared by all
//     connections, because there is one session. The product uses none of it.
//   - one data directory, one process: a lock file next to it refuses a second opener, because
//     two PGlite instances on the same files corrupt them.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';

export type EmbeddedLog = (message: string) => void;

export interface EmbeddedDatabaseOptions {
  /** Where the database files live (created on first start). Omit for an in-memory database. */
  dataDir?: string;
  /** TCP port on 127.0.0.1; default: a free one. */
  port?: number;
  /** Connections served at once; default 100. */
  maxConnections?: number;
  /** How long a connection waits for another's transaction before it gets SQLSTATE 55P03; default 60 s. */
  lockWaitTimeoutMs?: number;
  /** A connection idle inside a transaction this long is disconnected and rolled back; default 60 s; 0 = never. */
  idleInTransactionTimeoutMs?: number;
  log?: EmbeddedLog;
}

export interface EmbeddedDatabase {
  /** postgres://postgres:postgres@127.0.0.1:PORT/postgres (PGlite does not check passwords). */
  url: string;
  port: number;
  dataDir: string | undefined;
  /** Open connections, connections waiting for the backend, and whether one holds it. */
  stats(): { connections: number; waiting: number; busy: boolean };
  /** Closes every connection, then PGlite (flushing its files), then releases the lock file. */
  stop(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const MAX_MESSAGE = 1 << 30;

function readyForQuery(status: string): Buffer {
  return Buffer.from([0x5a, 0, 0, 0, 5, status.charCodeAt(0)]);
}

function errorResponse(severity: 'ERROR' | 'FATAL', code: string, message: string): Buffer {
  const fields = Buffer.concat([
    ...[`S${severity}`, `V${severity}`, `C${code}`, `M${message}`].map((f) => Buffer.from(`${f}\0`, 'utf8')),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head.write('E', 0, 'latin1');
  head.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

function simpleQuery(sql: string): Uint8Array {
  const body = Buffer.from(`${sql}\0`, 'utf8');
  const head = Buffer.alloc(5);
  head.write('Q', 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return new Uint8Array(Buffer.concat([head, body]));
}

const SYNC = new Uint8Array([0x53, 0, 0, 0, 4]);

/** Functions that take a lock living past the transaction; their `_xact_` siblings do not. */
const SESSION_LOCK_CALL = /pg_(try_)?advisory_lock(_shared)?\s*\(/i;

/**
 * Follows the backend's output stream message by message (chunks split messages anywhere) and
 * remembers the status of the last ReadyForQuery: 'I' idle, 'T' in a transaction, 'E' in a
 * failed transaction.
 */
class ReadyScanner {
  private header = Buffer.alloc(5);
  private headerLen = 0;
  private bodyLeft = 0;
  private inReady = false;
  status: string | null = null;

  feed(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, chunk.length - i);
        if (this.inReady) this.status = String.fromCharCode(chunk[i + n - 1] ?? 0x49);
        this.bodyLeft -= n;
        i += n;
        continue;
      }
      this.header[this.headerLen++] = chunk[i++] ?? 0;
      if (this.headerLen === 5) {
        this.inReady = this.header[0] === 0x5a;
        this.bodyLeft = this.header.readInt32BE(1) - 4;
        this.headerLen = 0;
      }
    }
  }
}

interface Waiter {
  session: Session;
  resolve(granted: boolean): void;
  timer: NodeJS.Timeout;
}

/** The one backend, lent to one connection at a time, first come first served. */
class BackendLock {
  owner: Session | null = null;
  private waiters: Waiter[] = [];

  get waiting(): number {
    return this.waiters.length;
  }

  acquire(session: Session, timeoutMs: number): Promise<boolean> {
    if (this.owner === session) return Promise.resolve(true);
    if (!this.owner) {
      this.owner = session;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        session,
        resolve,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve(false);
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  release(session: Session): void {
    if (this.owner !== session) return;
    const next = this.waiters.shift();
    if (next) {
      clearTimeout(next.timer);
      this.owner = next.session;
      next.resolve(true);
    } else this.owner = null;
  }

  cancel(session: Session): void {
    for (const w of this.waiters.filter((x) => x.session === session)) {
      clearTimeout(w.timer);
      w.resolve(false);
    }
    this.waiters = this.waiters.filter((w) => w.session !== session);
  }
}

interface ServerContext {
  db: PGlite;
  lock: BackendLock;
  lockWaitTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
  log: EmbeddedLog;
}

let nextSessionId = 1;

/** One client connection. Its messages are handled strictly in order, one at a time. */
class Session {
  readonly id = nextSessionId++;
  private buf: Buffer = Buffer.alloc(0);
  private pending: Buffer[] = [];
  private started = false;
  private pumping = false;
  private closed = false;
  /** Messages sent since the last ReadyForQuery (an unfinished extended-protocol batch). */
  private midBatch = false;
  /** Transaction status after the last ReadyForQuery. */
  private txStatus = 'I';
  /** It ran something that can take a session-level advisory lock. */
  private mayHoldSessionLocks = false;
  /** A lock wait timed out in the middle of an extended-protocol batch: skip to its Sync. */
  private discardUntilSync = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private finalized: Promise<void> | undefined;
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    private readonly socket: net.Socket,
    private readonly ctx: ServerContext,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.onClose());
    socket.on('close', () => this.onClose());
  }

  private get holding(): boolean {
    return this.ctx.lock.owner === this;
  }

  private write(data: Uint8Array): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(data);
  }

  /** Ends the connection; used for protocol errors and by stop(). */
  terminate(fatal?: { code: string; message: string }): void {
    if (fatal) this.write(errorResponse('FATAL', fatal.code, fatal.message));
    // end() lets the FATAL message reach the client; destroy() follows in case it never closes.
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2_000).unref();
    this.onClose();
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    clearTimeout(this.idleTimer);
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      // Before start-up, messages have no type byte: just a length and a request code.
      const headerLen = this.started ? 5 : 4;
      if (this.buf.length < headerLen) break;
      const len = this.started ? this.buf.readInt32BE(1) + 1 : this.buf.readInt32BE(0);
      if (len < headerLen || len > MAX_MESSAGE) {
        this.terminate({ code: '08P01', message: `invalid message length ${len}` });
        return;
      }
      if (this.buf.length < len) break;
      const message = this.buf.subarray(0, len);
      this.buf = this.buf.subarray(len);
      if (!this.started) {
        const code = message.readInt32BE(4);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          this.write(Buffer.from('N')); // no TLS on a loopback-only server
          continue;
        }
        if (code === CANCEL_REQUEST) {
          this.terminate(); // nothing can be cancelled inside PGlite
          return;
        }
        if (code >> 16 !== 3) {
          this.terminate({ code: '08P01', message: `unsupported frontend protocol ${code >> 16}.${code & 0xffff}` });
          return;
        }
        this.started = true;
      }
      // Copy: the socket's buffer is reused, and the message may wait for the lock.
      this.pending.push(Buffer.from(message));
    }
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.closed && this.pending.length) {
        const message = this.pending.shift() as Buffer;
        await this.handle(message);
      }
    } catch (err) {
      this.ctx.log(`embedded database: connection ${this.id} failed: ${(err as Error).message}`);
      this.terminate({ code: 'XX000', message: `embedded database: ${(err as Error).message}` });
    } finally {
      this.pumping = false;
      if (this.closed) void this.finalize();
      else if (this.holding) this.armIdleTimer();
    }
  }

  private async handle(message: Buffer): Promise<void> {
    const type = message[0] === 0 ? 'startup' : String.fromCharCode(message[0] ?? 0);
    if (type === 'X') {
      this.terminate();
      return;
    }
    if (this.discardUntilSync) {
      if (type === 'S') {
        this.discardUntilSync = false;
        this.write(readyForQuery('I'));
      }
      return;
    }
    if (!this.holding) {
      const granted = await this.ctx.lock.acquire(this, this.ctx.lockWaitTimeoutMs);
      if (this.closed) {
        if (granted) this.ctx.lock.release(this);
        return;
      }
      if (!granted) {
        this.ctx.log(`embedded database: connection ${this.id} waited ${this.ctx.lockWaitTimeoutMs} ms for the backend and gave up`);
        this.write(
          errorResponse(
            'ERROR',
            '55P03',
            `embedded database busy: another connection kept a transaction open for more than ${this.ctx.lockWaitTimeoutMs} ms ` +
              '(transactions run one at a time on the embedded database)',
          ),
        );
        if (type === 'Q' || type === 'S') this.write(readyForQuery('I'));
        else if (type !== 'startup') this.discardUntilSync = true;
        else this.terminate();
        return;
      }
    }
    if ((type === 'Q' || type === 'P') && SESSION_LOCK_CALL.test(message.toString('utf8', 5))) this.mayHoldSessionLocks = true;

    const scanner = new ReadyScanner();
    await this.ctx.db.runExclusive(() =>
      this.ctx.db.execProtocolRawStream(new Uint8Array(message.buffer, message.byteOffset, message.length), {
        onRawData: (data) => {
          this.write(Buffer.from(data)); // copy: PGlite reuses its output buffer
          scanner.feed(data);
        },
      }),
    );
    if (scanner.status === null) {
      this.midBatch = true;
      return;
    }
    this.midBatch = false;
    this.txStatus = scanner.status;
    if (this.txStatus === 'I') await this.releaseIfIdle();
  }

  /** Lends the backend to the next connection unless this one still holds session-level locks. */
  private async releaseIfIdle(): Promise<void> {
    if (this.mayHoldSessionLocks) {
      // Nobody else has run since we took the backend, so every advisory lock is ours.
      const held = await this.ctx.db.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'");
      if ((held.rows[0]?.n ?? 0) > 0) {
        this.armIdleTimer();
        return;
      }
      this.mayHoldSessionLocks = false;
    }
    this.ctx.lock.release(this);
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    const ms = this.ctx.idleInTransactionTimeoutMs;
    if (!ms || this.closed) return;
    this.idleTimer = setTimeout(() => {
      if (this.closed || !this.holding || this.pumping || this.pending.length) return;
      this.ctx.log(`embedded database: connection ${this.id} sat idle holding the database for ${ms} ms; disconnecting it and rolling back`);
      this.terminate({ code: '25P03', message: `terminating connection: idle in transaction for more than ${ms} ms on the embedded database` });
    }, ms);
    this.idleTimer.unref();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.pending = [];
    this.ctx.lock.cancel(this);
    if (!this.pumping) void this.finalize();
  }

  /** What PostgreSQL does when a backend's client goes away: roll back, drop its session locks. */
  private finalize(): Promise<void> {
    this.finalized ??= (async () => {
      try {
        if (this.holding) {
          const { db } = this.ctx;
          await db.runExclusive(async () => {
            if (this.midBatch) await db.execProtocolRaw(SYNC);
            if (db.isInTransaction() || this.txStatus !== 'I') await db.execProtocolRaw(simpleQuery('ROLLBACK'));
            if (this.mayHoldSessionLocks) await db.execProtocolRaw(simpleQuery('SELECT pg_advisory_unlock_all()'));
          });
        }
      } catch (err) {
        this.ctx.log(`embedded database: cleaning up after connection ${this.id} failed: ${(err as Error).message}`);
      } finally {
        this.ctx.lock.release(this);
        this.resolveDone();
      }
    })();
    return this.finalized;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** `<dataDir>.lock` holding our pid; a dead owner's lock is taken over. */
function takeDataDirLock(dataDir: string): () => void {
  const lockFile = `${dataDir.replace(/[/\\]+$/, '')}.lock`;
  fs.mkdirSync(path.dirname(lockFile), { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(lockFile, `${process.pid}\n`, { flag: 'wx' });
      return () => {
        try {
          if (fs.readFileSync(lockFile, 'utf8').trim() === String(process.pid)) fs.unlinkSync(lockFile);
        } catch {
          /* already gone */
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(fs.readFileSync(lockFile, 'utf8').trim());
      if (owner && owner !== process.pid && pidAlive(owner)) {
        throw new Error(`The embedded database in ${dataDir} is in use by process ${owner} (lock file ${lockFile}). Stop that process first.`);
      }
      fs.rmSync(lockFile, { force: true });
    }
  }
  throw new Error(`Could not take the lock file ${lockFile}`);
}

/** Opens (or creates) the PGlite database and serves it on 127.0.0.1. */
export async function startEmbeddedDatabase(opts: EmbeddedDatabaseOptions = {}): Promise<EmbeddedDatabase> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const dataDir = opts.dataDir ? path.resolve(opts.dataDir) : undefined;
  const unlock = dataDir ? takeDataDirLock(dataDir) : () => undefined;
  let db: PGlite;
  try {
    if (dataDir) fs.mkdirSync(dataDir, { recursive: true });
    db = await PGlite.create(dataDir ? { dataDir } : {});
  } catch (err) {
    unlock();
    throw err;
  }
  const ctx: ServerContext = {
    db,
    lock: new BackendLock(),
    lockWaitTimeoutMs: opts.lockWaitTimeoutMs ?? 60_000,
    idleInTransactionTimeoutMs: opts.idleInTransactionTimeoutMs ?? 60_000,
    log,
  };
  const maxConnections = opts.maxConnections ?? 100;
  const sessions = new Set<Session>();
  const server = net.createServer((socket) => {
    const session = new Session(socket, ctx);
    if (sessions.size >= maxConnections) {
      session.terminate({ code: '53300', message: `sorry, too many clients already (the embedded database serves ${maxConnections})` });
      return;
    }
    sessions.add(session);
    void session.done.then(() => sessions.delete(session));
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
    });
  } catch (err) {
    await db.close();
    unlock();
    throw err;
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.terminate();
      await Promise.all([...sessions].map((s) => s.done));
      await closed;
      await db.close();
      unlock();
    })());

  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    stats: () => ({ connections: sessions.size, waiting: ctx.lock.waiting, busy: ctx.lock.owner !== null }),
    stop,
  };
}
