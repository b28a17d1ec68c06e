// Where the stack is. For every setting: a flag wins, then the environment variable the services
// themselves read, then `.remit/local-stack.json` written by the local stack (`npm start`),
// looked for in the current directory and then in the repository root.
// `--stack FILE` or REMIT_STACK_FILE names the file instead; REMIT_STACK_FILE=none ignores it.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { temporalConnectionFromEnv, type TemporalConnectionSettings } from '../config/temporal';
import { CliError, UsageError, type Io } from './args';

export const REPO_ROOT = path.resolve(__dirname, '..');

export interface LocalStack {
  file: string;
  api?: string;
  operatorToken?: string;
  temporal?: { address?: string; namespace?: string; cli?: string };
  database?: string;
  emulators: { aws?: { url?: string; admin?: string }; azure?: { url?: string; admin?: string } };
  hourSeconds?: number;
}

const s = (x: unknown): string | undefined => (typeof x === 'string' && x !== '' ? x : undefined);
const obj = (x: unknown): Record<string, unknown> => (x && typeof x === 'object' && !Array.isArray(x) ? (x as Record<string, unknown>) : {});

function parseStack(file: string, json: unknown): LocalStack {
  const j = obj(json);
  const t = obj(j.temporal);
  const e = obj(j.emulators);
  const em = (x: unknown) => {
    const o = obj(x);
    return s(o.url) || s(o.admin) ? { url: s(o.url), admin: s(o.admin) } : undefined;
  };
  return {
    file,
    api: s(j.api),
    operatorToken: s(obj(j.tokens).operator),
    temporal: { address: s(t.address), namespace: s(t.namespace), cli: s(t.cli) },
    database: s(j.database),
    emulators: { aws: em(e.aws), azure: em(e.azure) },
    hourSeconds: typeof j.hourSeconds === 'number' && j.hourSeconds > 0 ? j.hourSeconds : undefined,
  };
}

/** The local stack's file, or undefined when there is none (or it is switched off). */
export function loadStack(flag: string | undefined, io: Io): LocalStack | undefined {
  const named = flag ?? (io.env.REMIT_STACK_FILE || undefined);
  if (named === 'none') return undefined;
  if (named !== undefined) {
    const file = path.resolve(io.cwd, named);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read the stack file ${file}: ${(err as Error).message}`);
    }
    try {
      return parseStack(file, JSON.parse(text));
    } catch (err) {
      throw new UsageError(`the stack file ${file} is not valid JSON: ${(err as Error).message}`);
    }
  }
  for (const dir of [io.cwd, REPO_ROOT]) {
    const file = path.join(dir, '.remit', 'local-stack.json');
    if (!existsSync(file)) continue;
    try {
      return parseStack(file, JSON.parse(readFileSync(file, 'utf8')));
    } catch (err) {
      io.err(`remit: ignoring ${file}: ${(err as Error).message}`);
    }
  }
  return undefined;
}

const NO_STACK = 'or start the local stack (npm start), which writes .remit/local-stack.json';

/** Where a setting came from, for error messages: a stale local-stack.json is a common cause. */
function sourceOf(flag: unknown, envName: string, io: Io, stack: LocalStack | undefined, flagName: string): string {
  if (flag !== undefined) return `--${flagName}`;
  if (io.env[envName]) return envName;
  return stack ? stack.file : 'the default';
}

/**
 * A token kept in a file (a secret mount, a 0600 file): it never appears on a command line or in
 * the environment of every child process. Surrounding whitespace (the final newline) is dropped.
 */
function tokenFromFile(file: string, from: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the operator token file ${file} (${from}): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const token = text.trim();
  if (!token || /\s/.test(token)) throw new UsageError(`the operator token file ${file} (${from}) must hold the token alone`);
  return token;
}

export function apiSettings(v: { api?: string; token?: string; tokenFile?: string }, io: Io, stack: LocalStack | undefined): { url: string; token: string; source: string } {
  const raw = v.api ?? (io.env.REMIT_API_URL || undefined) ?? stack?.api;
  if (!raw) throw new UsageError(`where is the API? Pass --api URL or set REMIT_API_URL, ${NO_STACK}`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`the API URL ${JSON.stringify(raw)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`the API URL must be http or https, got ${JSON.stringify(raw)}`);
  if (v.token !== undefined && v.tokenFile !== undefined) throw new UsageError('give one of --token and --token-file');
  const token = v.token ?? (v.tokenFile !== undefined ? tokenFromFile(path.resolve(io.cwd, v.tokenFile), '--token-file') : undefined)
    ?? (io.env.REMIT_OPERATOR_TOKEN || undefined)
    ?? (io.env.REMIT_OPERATOR_TOKEN_FILE ? tokenFromFile(path.resolve(io.cwd, io.env.REMIT_OPERATOR_TOKEN_FILE), 'REMIT_OPERATOR_TOKEN_FILE') : undefined)
    ?? stack?.operatorToken;
  if (!token) throw new UsageError(`no operator token: pass --token-file FILE or set REMIT_OPERATOR_TOKEN_FILE or REMIT_OPERATOR_TOKEN, ${NO_STACK}`);
  return { url: url.href.replace(/\/+$/, ''), token, source: sourceOf(v.api, 'REMIT_API_URL', io, stack, 'api') };
}

export function databaseUrl(flag: string | undefined, io: Io, stack: LocalStack | undefined): { url: string; fromStackFile: boolean; source: string } {
  if (flag) return { url: flag, fromStackFile: false, source: '--database' };
  if (io.env.DATABASE_URL) return { url: io.env.DATABASE_URL, fromStackFile: false, source: 'DATABASE_URL' };
  if (stack?.database) return { url: stack.database, fromStackFile: true, source: stack.file };
  throw new UsageError(`where is the database? Pass --database URL or set DATABASE_URL, ${NO_STACK}`);
}

/**
 * Where Temporal is and how to reach it: address and namespace from the flag, the environment,
 * the stack file or the default; TLS and API key from the same variables the services read.
 */
export function temporalSettings(v: { address?: string; namespace?: string }, io: Io, stack: LocalStack | undefined): TemporalConnectionSettings & { cli: string; source: string } {
  let conn: TemporalConnectionSettings;
  try {
    conn = temporalConnectionFromEnv(io.env, { address: stack?.temporal?.address, namespace: stack?.temporal?.namespace });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return {
    ...conn,
    source: v.address !== undefined ? '--temporal-address' : io.env.TEMPORAL_ADDRESS ? 'TEMPORAL_ADDRESS' : stack?.temporal?.address ? stack.file : 'the default',
    address: v.address ?? conn.address,
    namespace: v.namespace ?? conn.namespace,
    cli: io.env.TEMPORAL_CLI_PATH || stack?.temporal?.cli || 'temporal',
  };
}

/** The local CA the HTTPS emulators use: --ca, REMIT_EXTRA_CA_CERT_FILE, or `.remit/certs/ca.pem` next to the stack file. */
export function caFile(flag: string | undefined, io: Io, stack: LocalStack | undefined): string | undefined {
  if (flag) return path.resolve(io.cwd, flag);
  if (io.env.REMIT_EXTRA_CA_CERT_FILE) return io.env.REMIT_EXTRA_CA_CERT_FILE;
  const candidates = [stack ? path.join(path.dirname(stack.file), 'certs', 'ca.pem') : undefined, path.join(io.cwd, '.remit', 'certs', 'ca.pem'), path.join(REPO_ROOT, '.remit', 'certs', 'ca.pem')];
  return candidates.find((f) => f !== undefined && existsSync(f));
}

/** A URL with its password hidden, for messages. */
export function redactUrl(u: string): string {
  try {
    const url = new URL(u);
    if (url.password) url.password = '***';
    return url.href;
  } catch {
    return u.replace(/:[^:@/]*@/, ':***@');
  }
}

export function requireFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}
