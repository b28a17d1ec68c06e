// The real Temporal server (not the CLI's dev server): built from the Go module proxy into the
// git-ignored .tools/ when missing, its schema applied to PostgreSQL with the official SQL tool,
// run with the committed ops/temporal/config.yaml, remit's namespace and search attributes
// registered. Used by `npm run cluster`, the cluster proof and the TLS test.

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { SearchAttributeType } from '@temporalio/common';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal as proto } from '@temporalio/proto';
import { generate } from 'selfsigned';
import type { TemporalConnectionSettings } from '../../config/temporal';
import { connectClientConnection, describeTemporal } from '../../lib/temporal-connection';
import { SA } from '../../workflows/definitions';
import { DAY_MS } from '../../domain/time';
import { freePort, isExecutable, type Log, OutputTail, REPO_ROOT, run, stderrLog, stopChild, which } from './proc';

export const TEMPORAL_SERVER_MODULE = 'go.temporal.io/server';
export const TEMPORAL_SERVER_VERSION = 'v1.32.2';
/** v1.32 needs Go >= 1.26.10; the go command fetches this toolchain from the Go module proxy. */
export const TEMPORAL_SERVER_GO_TOOLCHAIN = 'go1.27.3';
/** The committed server configuration (a template over environment variables). */
export const TEMPORAL_CONFIG_FILE = path.join(REPO_ROOT, 'ops', 'temporal', 'config.yaml');
export const TEMPORAL_DYNAMIC_CONFIG_FILE = path.join(REPO_ROOT, 'ops', 'temporal', 'dynamicconfig.yaml');

export interface TemporalServerBinaries {
  server: string;
  sqlTool: string;
  source: string;
}

function rel(p: string): string {
  const r = path.relative(process.cwd(), p);
  return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : p;
}

/**
 * The server and its SQL tool: $TEMPORAL_SERVER_PATH and $TEMPORAL_SQL_TOOL_PATH when set (both),
 * else .tools/temporal-server/<version>/, built there with `go install` when missing (about 5
 * minutes and 2 GB of memory, once per machine). The build goes to a scratch folder renamed into
 * place, so a second process never runs half-written binaries.
 */
export async function ensureTemporalServer(log: Log = stderrLog, opts: { env?: NodeJS.ProcessEnv; toolsDir?: string } = {}): Promise<TemporalServerBinaries> {
  const env = opts.env ?? process.env;
  if (env.TEMPORAL_SERVER_PATH || env.TEMPORAL_SQL_TOOL_PATH) {
    const server = path.resolve(env.TEMPORAL_SERVER_PATH ?? '');
    const sqlTool = path.resolve(env.TEMPORAL_SQL_TOOL_PATH ?? '');
    for (const [name, p] of [['TEMPORAL_SERVER_PATH', server], ['TEMPORAL_SQL_TOOL_PATH', sqlTool]] as const) {
      if (!env[name] || !isExecutable(p)) throw new Error(`set both TEMPORAL_SERVER_PATH and TEMPORAL_SQL_TOOL_PATH to executables (${name} ${env[name] ? `is ${env[name]}, not an executable` : 'is not set'})`);
    }
    log(`Temporal server: ${server} and ${sqlTool} ($TEMPORAL_SERVER_PATH / $TEMPORAL_SQL_TOOL_PATH)`);
    return { server, sqlTool, source: 'environment' };
  }
  const dir = path.join(opts.toolsDir ?? path.join(REPO_ROOT, '.tools'), 'temporal-server', TEMPORAL_SERVER_VERSION);
  const server = path.join(dir, 'server');
  const sqlTool = path.join(dir, 'sql');
  if (isExecutable(server) && isExecutable(sqlTool)) {
    log(`Temporal server: ${rel(server)} (${TEMPORAL_SERVER_MODULE}@${TEMPORAL_SERVER_VERSION}, built earlier)`);
    return { server, sqlTool, source: 'built earlier' };
  }
  const go = which('go', env.PATH);
  if (!go) throw new Error(`the Temporal server is not in ${rel(dir)} and there is no \`go\` on PATH to build it: install Go (>= 1.21; it fetches ${TEMPORAL_SERVER_GO_TOOLCHAIN} itself) or set TEMPORAL_SERVER_PATH and TEMPORAL_SQL_TOOL_PATH`);
  const scratch = `${dir}.tmp-${process.pid}-${Date.now()}`;
  fs.mkdirSync(scratch, { recursive: true });
  const started = Date.now();
  log(`Temporal server: building ${TEMPORAL_SERVER_MODULE}/cmd/server and cmd/tools/sql @${TEMPORAL_SERVER_VERSION} with ${TEMPORAL_SERVER_GO_TOOLCHAIN} into ${rel(dir)} (once per machine: about 5 minutes, 2 GB of memory) ...`);
  try {
    const pkgs = ['cmd/server', 'cmd/tools/sql'].map((p) => `${TEMPORAL_SERVER_MODULE}/${p}@${TEMPORAL_SERVER_VERSION}`);
    const r = await run(go, ['install', ...pkgs], { env: { ...env, GOBIN: scratch, GOTOOLCHAIN: TEMPORAL_SERVER_GO_TOOLCHAIN }, timeoutMs: 60 * 60_000 });
    if (r.code !== 0) throw new Error(`go install failed (${r.signal ?? `exit ${r.code}`}):\n${`${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-20).join('\n')}`);
    try {
      fs.renameSync(scratch, dir);
    } catch (err) {
      if (!(isExecutable(server) && isExecutable(sqlTool))) throw err;
      log('  (another process finished the build first; using that one)');
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  log(`Temporal server: built in ${Math.round((Date.now() - started) / 1000)} s`);
  return { server, sqlTool, source: `built from the Go module proxy ${TEMPORAL_SERVER_MODULE}@${TEMPORAL_SERVER_VERSION}` };
}

export interface TemporalDatabase {
  host: string;
  port: number;
  user: string;
  /** Passed to the SQL tool and the server through the environment, never on a command line. */
  password?: string;
  /** Default temporal / temporal_visibility. */
  database?: string;
  visibilityDatabase?: string;
}

/**
 * Creates (if needed) the two databases and brings their schemas to this server version with
 * the official SQL tool: the same three steps an operator runs, and safe to run again (an
 * upgrade of the server is this, then a restart).
 */
export async function applyTemporalSchema(sqlTool: string, db: TemporalDatabase, log: Log = stderrLog): Promise<void> {
  const started = Date.now();
  const env = { ...process.env, SQL_PASSWORD: db.password ?? '' };
  for (const [name, schema] of [
    [db.database ?? 'temporal', 'postgresql/v12/temporal'],
    [db.visibilityDatabase ?? 'temporal_visibility', 'postgresql/v12/visibility'],
  ] as const) {
    const base = ['--plugin', 'postgres12', '--ep', db.host, '--port', String(db.port), '--user', db.user, '--db', name];
    const step = async (args: string[], tolerate?: RegExp) => {
      const r = await run(sqlTool, [...base, ...args], { env, timeoutMs: 5 * 60_000 });
      const out = `${r.stdout}\n${r.stderr}`;
      if (r.code !== 0 && !(tolerate && tolerate.test(out))) throw new Error(`temporal sql tool ${args[0]} on ${name} failed (exit ${r.code}):\n${out.trim().split('\n').slice(-15).join('\n')}`);
    };
    await step(['create-database'], /already exists/i);
    await step(['setup-schema', '-v', '0.0'], /already exists/i);
    await step(['update-schema', '--schema-name', schema]);
  }
  log(`Temporal schema: ${db.database ?? 'temporal'} and ${db.visibilityDatabase ?? 'temporal_visibility'} on ${db.host}:${db.port} up to date (${Date.now() - started} ms)`);
}

export interface TemporalServerTls {
  /** The frontend's certificate and key. */
  certFile: string;
  keyFile: string;
  /** The CA that signed it (the system worker trusts it). */
  caFile: string;
  /** The name in the certificate. */
  serverName: string;
  /** mTLS: the CA client certificates must chain to, and the system worker's own client pair. */
  clientCaFile?: string;
  systemWorkerCertFile?: string;
  systemWorkerKeyFile?: string;
}

export interface TemporalServerSpec {
  binaries: TemporalServerBinaries;
  db: TemporalDatabase;
  /** Frontend gRPC port; other service ports are picked free. */
  port: number;
  numHistoryShards?: number;
  tls?: TemporalServerTls;
  /** host:port for the server's Prometheus metrics. */
  metricsAddress?: string;
}

/**
 * Free ports for membership (ringpop): the server stores them in a PostgreSQL smallint, so they
 * must be below 32768, where the OS never hands out ephemeral ports.
 */
async function membershipPorts(n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const p = 20_000 + Math.floor(Math.random() * 12_000);
    if (out.includes(p)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer().once('error', () => resolve(false)).listen(p, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) out.push(p);
  }
  return out;
}

/** Command, arguments and environment of one server process (every service in one process). */
export async function temporalServerCommand(spec: TemporalServerSpec): Promise<{ command: string; args: string[]; env: NodeJS.ProcessEnv }> {
  const [http, hg, mg, wg] = (await Promise.all(Array.from({ length: 4 }, () => freePort()))).map(String);
  const [fm, hm, mm, wm] = (await membershipPorts(4)).map(String);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    LOG_LEVEL: 'warn',
    NUM_HISTORY_SHARDS: String(spec.numHistoryShards ?? 4),
    POSTGRES_SEEDS: spec.db.host,
    DB_PORT: String(spec.db.port),
    POSTGRES_USER: spec.db.user,
    POSTGRES_PWD: spec.db.password ?? '',
    DBNAME: spec.db.database ?? 'temporal',
    VISIBILITY_DBNAME: spec.db.visibilityDatabase ?? 'temporal_visibility',
    BIND_ON_IP: '127.0.0.1',
    FRONTEND_GRPC_PORT: String(spec.port),
    FRONTEND_HTTP_PORT: http,
    FRONTEND_MEMBERSHIP_PORT: fm,
    HISTORY_GRPC_PORT: hg,
    HISTORY_MEMBERSHIP_PORT: hm,
    MATCHING_GRPC_PORT: mg,
    MATCHING_MEMBERSHIP_PORT: mm,
    WORKER_GRPC_PORT: wg,
    WORKER_MEMBERSHIP_PORT: wm,
    DYNAMIC_CONFIG_FILE_PATH: TEMPORAL_DYNAMIC_CONFIG_FILE,
    ...(spec.metricsAddress ? { PROMETHEUS_ENDPOINT: spec.metricsAddress } : {}),
    ...(spec.tls
      ? {
          TEMPORAL_TLS_FRONTEND_CERT: spec.tls.certFile,
          TEMPORAL_TLS_FRONTEND_KEY: spec.tls.keyFile,
          TEMPORAL_TLS_SERVER_CA_CERT: spec.tls.caFile,
          TEMPORAL_TLS_FRONTEND_SERVER_NAME: spec.tls.serverName,
          ...(spec.tls.clientCaFile
            ? {
                TEMPORAL_TLS_REQUIRE_CLIENT_AUTH: 'true',
                TEMPORAL_TLS_CLIENT1_CA_CERT: spec.tls.clientCaFile,
                TEMPORAL_TLS_SYSTEM_WORKER_CERT: spec.tls.systemWorkerCertFile,
                TEMPORAL_TLS_SYSTEM_WORKER_KEY: spec.tls.systemWorkerKeyFile,
              }
            : {}),
        }
      : {}),
  };
  return { command: spec.binaries.server, args: ['--config-file', TEMPORAL_CONFIG_FILE, '--allow-no-auth', 'start'], env };
}

/** Map from the SDK's search attribute types to the server's. */
function indexedValueType(t: string): proto.api.enums.v1.IndexedValueType {
  const v = (proto.api.enums.v1.IndexedValueType as unknown as Record<string, number>)[`INDEXED_VALUE_TYPE_${t}`];
  if (v === undefined) throw new Error(`no Temporal indexed value type for search attribute type ${t}`);
  return v;
}

/** remit's search attributes, with their types, from workflows/definitions.ts. */
export function remitSearchAttributes(): Record<string, proto.api.enums.v1.IndexedValueType> {
  return Object.fromEntries(Object.values(SA).map((k) => [k.name, indexedValueType(k.type as SearchAttributeType)]));
}

/**
 * Once the frontend answers: the namespace (a real server has none until registered) and
 * remit's search attributes, idempotently. Resolves when both are visible.
 */
export async function prepareNamespace(settings: TemporalConnectionSettings, opts: { retentionDays?: number; log?: Log; timeoutMs?: number } = {}): Promise<void> {
  const log = opts.log ?? stderrLog;
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  const connection = await connectClientConnection(settings, { connectTimeout: '5s' });
  try {
    const ns = settings.namespace;
    for (;;) {
      try {
        await connection.workflowService.describeNamespace({ namespace: ns });
        break;
      } catch (err) {
        if ((err as { code?: number }).code !== 5 /* NOT_FOUND */) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
      }
      await connection.workflowService
        .registerNamespace({ namespace: ns, workflowExecutionRetentionPeriod: msToTs(`${opts.retentionDays ?? 7} days`) })
        .catch((err: { code?: number }) => {
          if (err.code !== 6 /* ALREADY_EXISTS */) throw err;
        });
    }
    const wanted = remitSearchAttributes();
    for (;;) {
      // A namespace registered a moment ago reaches the servers' namespace caches within seconds.
      let have: Record<string, number>;
      try {
        have = (await connection.operatorService.listSearchAttributes({ namespace: ns })).customAttributes ?? {};
      } catch (err) {
        if ((err as { code?: number }).code !== 5 /* NOT_FOUND */ || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      const missing = Object.fromEntries(Object.entries(wanted).filter(([name]) => !(name in have)));
      const wrong = Object.entries(wanted).filter(([name, type]) => name in have && have[name] !== type);
      if (wrong.length) throw new Error(`search attributes registered with another type in ${ns}: ${wrong.map(([n]) => n).join(', ')} (a type cannot change: see docs/deploy.md)`);
      if (Object.keys(missing).length === 0) break;
      if (Date.now() > deadline) throw new Error(`search attributes not visible in ${ns} after registering: ${Object.keys(missing).join(', ')}`);
      await connection.operatorService.addSearchAttributes({ namespace: ns, searchAttributes: missing }).catch((err: { code?: number }) => {
        if (err.code !== 6 /* ALREADY_EXISTS */ && err.code !== 5 /* NOT_FOUND: not in the cache yet */) throw err;
      });
      await new Promise((r) => setTimeout(r, 500));
    }
    log(`Temporal namespace ${ns}: registered, with ${Object.keys(wanted).length} search attributes`);
  } finally {
    await connection.close();
  }
}

/** true when the frontend answers getSystemInfo over these settings. */
export async function frontendAnswers(settings: TemporalConnectionSettings): Promise<void> {
  const c = await connectClientConnection(settings, { connectTimeout: '2s' });
  try {
    await c.workflowService.getSystemInfo({});
  } finally {
    await c.close();
  }
}

export interface TemporalCerts {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** The name in the server certificate (besides 127.0.0.1). */
  serverName: string;
}

/** A fresh local CA, a frontend certificate for `serverName` and 127.0.0.1, and one client certificate, in `dir`. */
export async function makeTemporalCerts(dir: string, serverName = 'temporal.remit.test'): Promise<TemporalCerts> {
  const now = Date.now();
  const validity = { notBeforeDate: new Date(now - DAY_MS), notAfterDate: new Date(now + 30 * DAY_MS) };
  const ca = await generate([{ name: 'commonName', value: 'remit Temporal local CA' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    ...validity,
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  const leaf = (cn: string, ext: Record<string, unknown>[]) =>
    generate([{ name: 'commonName', value: cn }], {
      keyType: 'ec',
      algorithm: 'sha256',
      ca: { key: ca.private, cert: ca.cert },
      ...validity,
      extensions: [{ name: 'basicConstraints', cA: false, critical: true }, { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true }, ...ext] as never,
    });
  const server = await leaf(serverName, [
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 2, value: serverName }, { type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
  ]);
  const client = await leaf('remit', [{ name: 'extKeyUsage', clientAuth: true }]);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const w = (name: string, text: string, mode: number) => {
    fs.writeFileSync(path.join(dir, name), text, { mode });
    return path.join(dir, name);
  };
  return {
    dir,
    caFile: w('ca.pem', ca.cert, 0o644),
    serverCertFile: w('server.pem', server.cert, 0o644),
    serverKeyFile: w('server-key.pem', server.private, 0o600),
    clientCertFile: w('client.pem', client.cert, 0o644),
    clientKeyFile: w('client-key.pem', client.private, 0o600),
    serverName,
  };
}

export interface RunningTemporalServer {
  /** How clients reach it (address, namespace, TLS as configured). */
  settings: TemporalConnectionSettings;
  pid: number;
  outputTail(): string;
  /** SIGTERM, SIGKILL after 15 s. Idempotent. */
  stop(): Promise<void>;
  /** Stop and start again on the same port and database (state survives). */
  restart(): Promise<void>;
}

/**
 * One server process for a test or script: started, waited for (frontend answers over
 * `settings`), namespace and search attributes registered. The schema must be applied first.
 */
export async function startTemporalServer(spec: TemporalServerSpec & { settings: TemporalConnectionSettings; log?: Log; readyTimeoutMs?: number }): Promise<RunningTemporalServer> {
  const log = spec.log ?? stderrLog;
  const cmd = await temporalServerCommand(spec);
  const tail = new OutputTail();
  let child: ChildProcess;
  const launch = async () => {
    const started = Date.now();
    child = spawn(cmd.command, cmd.args, { env: cmd.env, cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (c: Buffer) => tail.push(c));
    child.stderr?.on('data', (c: Buffer) => tail.push(c));
    let exit: string | undefined;
    child.once('exit', (code, signal) => (exit = signal ?? `exit ${code}`));
    const deadline = started + (spec.readyTimeoutMs ?? 120_000);
    let last = '';
    for (;;) {
      if (exit) throw new Error(`Temporal server exited during start-up (${exit}).\nCommand: ${cmd.command} ${cmd.args.join(' ')}\nIts last output:\n${tail.toString()}`);
      if (Date.now() > deadline) {
        await stopChild(child, 5_000);
        throw new Error(`Temporal server at ${describeTemporal(spec.settings)} not ready after ${Date.now() - started} ms (${last}).\nIts last output:\n${tail.toString()}`);
      }
      try {
        await frontendAnswers(spec.settings);
        break;
      } catch (err) {
        last = (err as Error).message.split('\n')[0] ?? '';
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    log(`Temporal server: ${describeTemporal(spec.settings)}, pid ${child.pid}, ready in ${Date.now() - started} ms`);
  };
  await launch();
  await prepareNamespace(spec.settings, { log });
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= stopChild(child, 15_000));
  return {
    settings: spec.settings,
    get pid() {
      return child.pid ?? -1;
    },
    outputTail: () => tail.toString(),
    stop,
    async restart() {
      await stopChild(child, 15_000);
      await launch();
    },
  };
}
