// How the routes' schemas (api/schemas.ts) are checked, and how a refusal reads.
//
// Two Ajv instances: bodies are JSON and are checked as sent (no type coercion, no defaults
// filled in, nothing removed: the string "5" is not the number 5, and what the handler sees is
// what the client sent); query strings and path parameters are text, so `limit=10` becomes the
// integer 10. Every problem is listed (allErrors), each as {field, message} with the value that
// was given; in POST /v1/tallies as {index, field, message}, the shape interface.md promises.
// Formats (date-time) document; the domain validators parse instants themselves.

import Ajv, { type ErrorObject } from 'ajv';
import type { FastifySchema, FastifySchemaCompiler } from 'fastify';

const common = { allErrors: true, verbose: true, strict: false, validateFormats: false } as const;
const bodies = new Ajv({ ...common, coerceTypes: false, useDefaults: false, removeAdditional: false });
const text = new Ajv({ ...common, coerceTypes: true, useDefaults: false, removeAdditional: false });

export const validatorCompiler: FastifySchemaCompiler<FastifySchema> = ({ schema, httpPart }) => (httpPart === 'body' ? bodies : text).compile(schema as object);

export type SchemaError = ErrorObject;

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}`;
  return typeof v === 'object' ? 'an object' : String(v);
}

const either = (values: unknown[]) => (values.length <= 2 ? values.join(' or ') : `one of ${values.join(', ')}`);

/** `/metrics/0/value` -> `metrics[0].value` */
function fieldOf(path: string[]): string {
  return path.reduce((out, p) => (/^\d+$/.test(p) ? `${out}[${p}]` : out ? `${out}.${p}` : p), '');
}

/** One schema refusal as the API reports it; `tallies`: positions in POST /v1/tallies' `tallies` list. */
export function describeSchemaError(e: SchemaError, tallies = false): { index?: number; field: string; message: string } {
  const path = e.instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  let message: string;
  if (e.keyword === 'required') {
    path.push(String(e.params.missingProperty));
    message = 'is required';
  } else if (e.keyword === 'enum') message = `must be ${either(e.params.allowedValues as unknown[])}, got ${describe(e.data)}`;
  else if (e.keyword === 'const') message = `must be ${String(e.params.allowedValue)}, got ${describe(e.data)}`;
  else if (e.keyword === 'anyOf' && Array.isArray(e.schema) && e.schema.every((s: { const?: unknown }) => s && 'const' in s)) {
    message = `must be ${either(e.schema.map((s: { const: unknown }) => s.const))}, got ${describe(e.data)}`;
  } else message = `${e.message ?? 'is invalid'}, got ${describe(e.data)}`;
  if (tallies && path[0] === 'tallies' && path[1] !== undefined && /^\d+$/.test(path[1])) return { index: Number(path[1]), field: fieldOf(path.slice(2)), message };
  return tallies ? { index: -1, field: fieldOf(path), message } : { field: fieldOf(path), message };
}

/**
 * Every refusal of one request. A value that matches none of the alternatives of a union (a
 * string or null, one status or a list of them) is one problem, not one per alternative.
 */
export function describeSchemaErrors(errors: SchemaError[], tallies = false): Array<{ index?: number; field: string; message: string }> {
  const unions = errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf');
  const inUnion = (e: SchemaError) => unions.find((u) => u !== e && e.schemaPath.startsWith(`${u.schemaPath}/`));
  const out: Array<{ index?: number; field: string; message: string }> = [];
  for (const e of errors) {
    if (inUnion(e)) continue;
    const d = describeSchemaError(e, tallies);
    if (e.keyword === 'anyOf' || e.keyword === 'oneOf') {
      // A value of the right kind for one alternative (an object where an object or null is
      // allowed) is refused for what is wrong inside it: name that, e.g. the missing field.
      const inside = errors.filter((b) => inUnion(b) === e && (b.instancePath !== e.instancePath || b.keyword === 'required' || b.keyword === 'additionalProperties'));
      if (inside.length > 0) {
        out.push(...inside.map((b) => describeSchemaError(b, tallies)));
        continue;
      }
      const branches = [...new Set(errors.filter((b) => inUnion(b) === e).map((b) => describeSchemaError(b).message.replace(/, got .*$/s, '')))];
      d.message = `${branches.join(' or ') || 'matches none of the allowed forms'}, got ${describe(e.data)}`;
    }
    out.push(d);
  }
  return out;
}
