// A real, throwaway PostgreSQL server for the tests: found on the machine or installed with
// apt-get, initialised in a temporary directory, reachable only on 127.0.0.1, removed on stop.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort, isExecutable, type Log, run, runChecked, stderrLog, waitForPidExit, which } from './proc';

export interface PostgresBinaries {
  /** Folder holding initdb, pg_ctl and postgres. */
  binDir: string;
  initdb: string;
  pgCtl: string;
  postgres: string;
  /** e.g. "postgres (PostgreSQL) 15.10". */
  version: string;
  source: string;
}

const NEEDED = ['initdb', 'pg_ctl', 'postgres'] as const;

function binDirCandidates(): { dir: string; source: string }[] {
  const out: { dir: string; source: string }[] = [];
  // Debian/Ubuntu keep the server binaries off PATH, one folder per major version: newest first.
  const root = '/usr/lib/postgresql';
  if (fs.existsSync(root)) {
    const versions = fs
      .readdirSync(root)
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) out.push({ dir: path.join(root, v, 'bin'), source: `${root}/${v}` });
  }
  const onPath = which('pg_ctl');
  if (onPath) {
    // Follow symlinks (/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl): `postgres`
    // itself is usually only next to the real file.
    out.push({ dir: path.dirname(fs.realpathSync(onPath)), source: 'PATH' });
    out.push({ dir: path.dirname(onPath), source: 'PATH' });
  }
  return out;
}

async function findBinaries(): Promise<PostgresBinaries | null> {
  for (const { dir, source } of binDirCandidates()) {
    if (!NEEDED.every((b) => isExecutable(path.join(dir, b)))) continue;
    const postgres = path.join(dir, 'postgres');
    const r = await run(postgres, ['--version'], { timeoutMs: 30_000 });
    if (r.code !== 0) continue;
    return { binDir: dir, initdb: path.join(dir, 'initdb'), pgCtl: path.join(dir, 'pg_ctl'), postgres, version: r.stdout.trim(), source };
  }
  return null;
}

const isRoot = () => process.getuid?.() === 0;

/**
 * initdb, pg_ctl and postgres from /usr/lib/postgresql/<newest>/bin or PATH. When they are
 * missing and we are root (CI, fresh machines), installs the distribution's PostgreSQL.
 */
export async function ensurePostgresBinaries(log: Log = stderrLog): Promise<PostgresBinaries> {
  const found = await findBinaries();
  if (found) {
    log(`PostgreSQL: ${found.binDir} (${found.version}, found in ${found.source})`);
    return found;
  }
  if (!isRoot()) {
    throw new Error(
      'PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found under /usr/lib/postgresql/*/bin or on PATH, ' +
        'and installing them needs root. Install PostgreSQL (e.g. `sudo apt-get install -y postgresql`) and run again.',
    );
  }
  const apt = which('apt-get');
  if (!apt) throw new Error('PostgreSQL server binaries were not found and there is no apt-get to install them: install PostgreSQL and run again.');
  log('PostgreSQL: server binaries not found; installing PostgreSQL with apt-get (apt-get update && apt-get install -y postgresql) ...');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const started = Date.now();
  // Another apt-get (unattended upgrades, a parallel set-up) may hold the dpkg lock: wait for it.
  const lock = ['-o', 'DPkg::Lock::Timeout=300'];
  await runChecked(apt, [...lock, 'update'], { env, timeoutMs: 10 * 60_000 });
  await runChecked(apt, [...lock, 'install', '-y', '--no-install-recommends', 'postgresql'], { env, timeoutMs: 20 * 60_000 });
  const installed = await findBinaries();
  if (!installed) throw new Error('apt-get install postgresql succeeded, but initdb/pg_ctl/postgres are still not under /usr/lib/postgresql/*/bin.');
  log(`PostgreSQL: installed ${installed.version} in ${Math.round((Date.now() - started) / 1000)} s (${installed.binDir})`);
  return { ...installed, source: 'installed with apt-get' };
}

/** PostgreSQL refuses to run as root: as root, everything runs as the `postgres` OS user. */
const RUN_AS = 'postgres';

async function ensureRunAsUser(log: Log): Promise<void> {
  if ((await run('id', ['-u', RUN_AS])).code === 0) return;
  log(`PostgreSQL: creating the system user "${RUN_AS}" to run the server (it refuses to run as root) ...`);
  await runChecked('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', RUN_AS]);
}

/** Runs a PostgreSQL program as the server's owner. */
function runPg(cmd: string, args: string[], opts: { cwd: string; timeoutMs?: number }) {
  if (!isRoot()) return runChecked(cmd, args, opts);
  if (which('runuser')) return runChecked('runuser', ['-u', RUN_AS, '--', cmd, ...args], opts);
  const quoted = [cmd, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return runChecked('su', [RUN_AS, '-s', '/bin/sh', '-c', quoted], opts);
}

export interface StartPostgresOptions {
  /**
   * Keep the cluster here (initialised on first use, reused after). Default: a new temporary
   * directory, tuned for speed over durability and removed by stop().
   */
  dataDir?: string;
  port?: number;
  log?: Log;
  binaries?: PostgresBinaries;
}

export interface PostgresServer {
  /** Superuser URL, e.g. postgres://postgres@127.0.0.1:PORT/postgres (trust auth, loopback only). */
  url: string;
  port: number;
  /** The postmaster's pid. */
  pid: number;
  dataDir: string;
  /** `pg_ctl stop -m fast` for this data directory; removes it if it was temporary. Idempotent. */
  stop(): Promise<void>;
}

function conf(settings: Record<string, string | number>): string {
  return Object.entries(settings)
    .map(([k, v]) => `${k} = ${typeof v === 'number' ? v : `'${v.replace(/'/g, "''")}'`}`)
    .join('\n');
}

/** Starts a PostgreSQL server on 127.0.0.1 and resolves once it accepts queries over TCP. */
export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresServer> {
  const log = opts.log ?? stderrLog;
  const bins = opts.binaries ?? (await ensurePostgresBinaries(log));
  const temporary = !opts.dataDir;
  // The cluster lives in a subfolder: initdb wants an empty (or absent) directory it may chmod
  // 0700, and the socket and server log sit next to it rather than inside the cluster.
  const base = opts.dataDir ? path.resolve(opts.dataDir) : fs.mkdtempSync(path.join(os.tmpdir(), 'remit-pg-'));
  const dataDir = temporary ? path.join(base, 'data') : base;
  const sockDir = temporary ? base : fs.mkdtempSync(path.join(os.tmpdir(), 'remit-pgsock-'));
  const logFile = path.join(sockDir, 'server.log');
  const cwd = os.tmpdir();
  const started = Date.now();

  const cleanup = () => {
    if (temporary) fs.rmSync(base, { recursive: true, force: true });
    else fs.rmSync(sockDir, { recursive: true, force: true });
  };

  try {
    if (isRoot()) {
      await ensureRunAsUser(log);
      fs.mkdirSync(dataDir, { recursive: true });
      await runChecked('chown', ['-R', `${RUN_AS}:${RUN_AS}`, temporary ? base : dataDir, sockDir]);
    }
    const fresh = !fs.existsSync(path.join(dataDir, 'PG_VERSION'));
    if (fresh) {
      await runPg(
        bins.initdb,
        ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', ...(temporary ? ['--no-sync'] : [])],
        { cwd, timeoutMs: 120_000 },
      );
      // Only loopback TCP and our own socket: nothing else on the machine or network can connect.
      fs.writeFileSync(path.join(dataDir, 'pg_hba.conf'), 'local all all trust\nhost all all 127.0.0.1/32 trust\n');
      const settings: Record<string, string | number> = {
        listen_addresses: '127.0.0.1',
        max_connections: 300,
        logging_collector: 'off',
        log_min_messages: 'warning',
        // Tests create and drop a database per test: nothing here needs to survive a crash.
        ...(temporary ? { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' } : {}),
      };
      fs.appendFileSync(path.join(dataDir, 'postgresql.conf'), `\n# remit (scripts/lib/postgres.ts)\n${conf(settings)}\n`);
    }

    let lastErr: Error | undefined;
    for (let attempt = 1; attempt <= (opts.port ? 1 : 3); attempt++) {
      const port = opts.port ?? (await freePort());
      // Port and socket directory are given per start: a kept data directory may be started on
      // a different free port next time.
      const serverOpts = `-c port=${port} -c unix_socket_directories='${sockDir}'`;
      try {
        await runPg(bins.pgCtl, ['-D', dataDir, '-l', logFile, '-o', serverOpts, '-w', '-t', '60', 'start'], { cwd, timeoutMs: 90_000 });
      } catch (err) {
        const serverLog = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-20).join('\n') : '';
        lastErr = new Error(`PostgreSQL did not start on 127.0.0.1:${port}: ${(err as Error).message}\nServer log:\n${serverLog}`);
        if (/could not bind|address already in use/i.test(serverLog)) continue;
        throw lastErr;
      }
      const pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
      let stopping: Promise<void> | undefined;
      const stop = () =>
        (stopping ??= (async () => {
          try {
            await runPg(bins.pgCtl, ['-D', dataDir, 'stop', '-m', 'fast', '-w', '-t', '30'], { cwd, timeoutMs: 60_000 });
          } catch {
            // pg_ctl could not stop it (or it was already gone): make sure our postmaster is.
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              /* already gone */
            }
          }
          await waitForPidExit(pid, 10_000);
          cleanup();
        })());
      try {
        await waitForQueries(url);
      } catch (err) {
        await stop();
        throw err;
      }
      log(`PostgreSQL: ${url} (pid ${pid}, ${temporary ? 'temporary' : 'kept'} data in ${dataDir}, ready in ${Date.now() - started} ms)`);
      return { url, port, pid, dataDir, stop };
    }
    throw lastErr ?? new Error('PostgreSQL did not start');
  } catch (err) {
    cleanup();
    throw err;
  }
}

async function waitForQueries(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`PostgreSQL at ${url} does not answer: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}
