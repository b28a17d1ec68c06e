// Determinism guard: recorded histories of real remittances (succeeded; failed, retried by
// signal and succeeded; failed and voided by a reset signal; throttled then succeeded) must
// replay against the current workflow code. A change that would break running workflows fails
// here; such a change needs `patched()` (docs/design.md, "Changing workflow code").
// Re-record with `node --import tsx scripts/record-histories.ts` after an intended change.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from '../../scripts/lib/stack-harness';

const dir = path.join(__dirname, '..', 'replay', 'histories');
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.bin')).sort();

describe('recorded remittance histories replay on the current workflow code', () => {
  it('has recorded histories to replay', () => {
    assert.ok(files.length >= 4, `expected recorded histories in ${dir}`);
  });
  for (const file of files) {
    it(file, async () => {
      const history = temporal.api.history.v1.History.decode(fs.readFileSync(path.join(dir, file)));
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, `replay-${file}`);
    });
  }
});
