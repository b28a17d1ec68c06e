// db/schema.ts and the committed migrations agree: drizzle-kit, diffing the schema against the
// last migration's snapshot, has nothing to generate. It fails when the schema changes without a
// migration, or when a migration is written by hand without its snapshot (0006 and 0007 once
// were: `npm run db:generate` then emitted both again as a new migration).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const ROOT = path.resolve(__dirname, '..', '..');
const MIGRATIONS = path.join(ROOT, 'db', 'migrations');

test('drizzle-kit generate on the committed schema finds nothing to migrate', async () => {
  // On a copy, so a failing run leaves the tree as it was.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-migrations-'));
  try {
    const out = path.join(tmp, 'migrations');
    fs.cpSync(MIGRATIONS, out, { recursive: true });
    const before = fs.readdirSync(out).sort();
    const kit = path.join(ROOT, 'node_modules', '.bin', 'drizzle-kit');
    // drizzle-kit takes --out relative to its working directory.
    const { stdout, stderr } = await promisify(execFile)(kit, ['generate', '--dialect', 'postgresql', '--schema', './db/schema.ts', '--out', path.relative(ROOT, out)], { cwd: ROOT });
    assert.deepEqual(fs.readdirSync(out).sort(), before, `drizzle-kit wrote a migration:\n${stdout}${stderr}`);
    assert.match(stdout, /No schema changes, nothing to migrate/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
