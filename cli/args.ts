// Argument parsing for the `remit` CLI: node:util parseArgs, strict, with errors an operator can
// act on. A usage error exits 2 before anything is read or changed; any other failure exits 1.

import { parseArgs } from 'node:util';

/** Bad flags or values: exit 2, nothing was done. */
export class UsageError extends Error {
  readonly exitCode = 2;
}

/** Anything else that went wrong (unreachable service, refused request, violations): exit 1 unless told. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

export type OptionSpec = { type: 'string' | 'boolean'; short?: string; multiple?: boolean };
export type OptionSpecs = Record<string, OptionSpec>;
export type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

export interface Command {
  name: string;
  summary: string;
  help: string;
  options: OptionSpecs;
  /** Names of positional arguments allowed (e.g. `audit log`). */
  positionals?: string[];
  run(values: Values, positionals: string[], io: Io): Promise<number>;
}

/** Where a command writes: results to stdout, notes and errors to stderr; env and cwd to read. */
export interface Io {
  out(line?: string): void;
  err(line?: string): void;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export const HELP_OPTION: OptionSpecs = { help: { type: 'boolean', short: 'h' } };
export const JSON_OPTION: OptionSpecs = { json: { type: 'boolean' } };
export const API_OPTIONS: OptionSpecs = { api: { type: 'string' }, token: { type: 'string' }, 'token-file': { type: 'string' }, stack: { type: 'string' } };

export function parse(cmd: Command, argv: string[]): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { ...HELP_OPTION, ...cmd.options }, strict: true, allowPositionals: (cmd.positionals?.length ?? 0) > 0 });
    if (r.values.help) return { values: r.values as Values, positionals: r.positionals };
    for (const p of r.positionals) {
      if (!cmd.positionals?.includes(p)) throw new UsageError(`unexpected argument ${JSON.stringify(p)}${cmd.positionals?.length ? ` (expected one of: ${cmd.positionals.join(', ')})` : ''}`);
    }
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    throw toUsageError(err);
  }
}

function toUsageError(err: unknown): unknown {
  if (err instanceof UsageError) return err;
  const e = err as Error & { code?: string };
  if (!e.code?.startsWith('ERR_PARSE_ARGS')) return err;
  const unknown = /Unknown option '([^']+)'/.exec(e.message);
  if (unknown) return new UsageError(`unknown option ${unknown[1]}`);
  const positional = /Unexpected argument '([^']*)'/.exec(e.message);
  if (positional) return new UsageError(`unexpected argument ${JSON.stringify(positional[1])}`);
  // "Option '-q, --query <value>' argument missing", "Option '--dry-run' does not take an argument"
  const flag = /Option '(?:-\w, )?(--[\w-]+)/.exec(e.message)?.[1];
  if (flag && /argument missing/.test(e.message)) return new UsageError(`${flag} needs a value`);
  if (flag && /does not take an argument/.test(e.message)) return new UsageError(`${flag} does not take a value`);
  return new UsageError(e.message);
}

/** A string option that must be non-empty when given. */
export function str(v: Values, name: string): string | undefined {
  const x = v[name];
  if (x === undefined) return undefined;
  if (typeof x !== 'string' || x.trim() === '') throw new UsageError(`--${name} needs a non-empty value`);
  return x.trim();
}

export function required(v: Values, name: string, what: string): string {
  const x = str(v, name);
  if (x === undefined) throw new UsageError(`--${name} is required (${what})`);
  return x;
}

/** `a,b,c` as a list; empty items are refused. */
export function list(v: Values, name: string): string[] | undefined {
  const x = str(v, name);
  if (x === undefined) return undefined;
  const items = x.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw new UsageError(`--${name} must be a comma-separated list without empty items, got ${JSON.stringify(x)}`);
  return [...new Set(items)];
}

export function oneOf<T extends string>(v: Values, name: string, allowed: readonly T[]): T | undefined {
  const x = str(v, name);
  if (x === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(x)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(x)}`);
  return x as T;
}

export function listOf<T extends string>(v: Values, name: string, allowed: readonly T[]): T[] | undefined {
  const xs = list(v, name);
  for (const x of xs ?? []) if (!(allowed as readonly string[]).includes(x)) throw new UsageError(`--${name}: ${JSON.stringify(x)} is not one of ${allowed.join(', ')}`);
  return xs as T[] | undefined;
}

/** An ISO-8601 instant (a bare date means its UTC midnight). */
export function instant(v: Values, name: string): Date | undefined {
  const x = str(v, name);
  if (x === undefined) return undefined;
  const d = /^\d{4}-\d{2}-\d{2}/.test(x) ? new Date(x) : new Date(NaN);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${name} must be an ISO-8601 instant such as 2026-11-25T10:00:00Z, got ${JSON.stringify(x)}`);
  return d;
}

export function int(v: Values, name: string, min: number, max: number): number | undefined {
  const x = str(v, name);
  if (x === undefined) return undefined;
  const n = Number(x);
  if (!/^\d+$/.test(x) || !Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(x)}`);
  return n;
}

export function bool(v: Values, name: string): boolean {
  return v[name] === true;
}
