// The workflow bundle built ahead of time (scripts/bundle-workflows.ts, run by the Dockerfile):
// the recorded histories replay on it, and a worker started with REMIT_WORKFLOW_BUNDLE_PATH
// loads it instead of bundling workflows/ at start-up.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { REPO_ROOT, run } from '../../scripts/lib/proc';
import { PREBUILT_BUNDLE_ENV } from '../../scripts/lib/workflow-bundle';
import { createTestDatabase, type TestDatabase } from '../../scripts/lib/test-database';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-bundle-'));
const histories = path.join(REPO_ROOT, 'test', 'replay', 'histories');
// npm test's set-up has built the bundle with the functions the script calls
// (scripts/lib/workflow-bundle.ts); webpack again here cost 11 s of CPU. Run alone, the file
// builds it with the script, as the Dockerfile does.
const bundle = process.env[PREBUILT_BUNDLE_ENV] ?? path.join(dir, 'workflow-bundle.js');

before(async () => {
  if (process.env[PREBUILT_BUNDLE_ENV]) return;
  const r = await run(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts', 'bundle-workflows.ts'), bundle], { cwd: REPO_ROOT, timeoutMs: 5 * 60_000 });
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  assert.ok(fs.existsSync(`${bundle}.map`), 'with its source map');
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('the prebuilt workflow bundle', () => {
  it('replays every recorded history', async () => {
    const files = fs.readdirSync(histories).filter((f) => f.endsWith('.bin'));
    assert.ok(files.length > 0);
    for (const f of files) {
      const history = temporal.api.history.v1.History.decode(fs.readFileSync(path.join(histories, f)));
      await Worker.runReplayHistory({ workflowBundle: { codePath: bundle } }, history, `bundle-${f}`);
    }
  });

  describe('a worker process with REMIT_WORKFLOW_BUNDLE_PATH', () => {
    let db: TestDatabase;
    before(async () => {
      db = await createTestDatabase('bundle');
    });
    after(async () => {
      await db?.drop();
    });

    const startWorker = (bundlePath: string) => {
      const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: db.url, REMIT_TASK_QUEUE: `bundle-${randomUUID()}`, REMIT_WORKFLOW_BUNDLE_PATH: bundlePath, LOG_LEVEL: 'debug', REMIT_PROMETHEUS_URL: '' };
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'workers', 'main.ts')], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      return { child, exited, output: () => output };
    };

    it('loads that bundle rather than bundling the workflows at start-up', async () => {
      const w = startWorker(bundle);
      try {
        const deadline = Date.now() + 120_000;
        while (!w.output().includes('worker started') && w.child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        assert.match(w.output(), /worker started/, w.output());
        assert.doesNotMatch(w.output(), /Workflow bundle created/, 'the worker did not bundle on its own');
      } finally {
        w.child.kill('SIGTERM');
        await w.exited;
      }
    });

    it('fails at start, naming the path, when the bundle is not there', async () => {
      const missing = path.join(dir, 'no-such-bundle.js');
      const w = startWorker(missing);
      const timer = setTimeout(() => w.child.kill('SIGKILL'), 120_000);
      const code = await w.exited;
      clearTimeout(timer);
      assert.equal(code, 1, w.output());
      assert.ok(w.output().includes(missing), w.output());
    });
  });
});
