// The local stack's state files hold tokens: writePrivateFile leaves them readable by their owner
// only, including a file an older version wrote world-readable (writeFileSync's `mode` applies
// only when it creates the file).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, it } from 'node:test';
import { writePrivateFile } from '../../scripts/lib/private-file';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-private-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

it('a new file is 0600 and holds the text', () => {
  const f = path.join(dir, 'new.json');
  writePrivateFile(f, '{"tokens":{"operator":"x"}}');
  assert.equal(fs.statSync(f).mode & 0o777, 0o600);
  assert.equal(fs.readFileSync(f, 'utf8'), '{"tokens":{"operator":"x"}}');
});

it('a world-readable file left by an older version becomes 0600', () => {
  const f = path.join(dir, 'old.json');
  fs.writeFileSync(f, 'old', { mode: 0o644 });
  fs.chmodSync(f, 0o644);
  writePrivateFile(f, 'new');
  assert.equal(fs.statSync(f).mode & 0o777, 0o600);
  assert.equal(fs.readFileSync(f, 'utf8'), 'new');
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp')), [], 'no temporary file left behind');
});
