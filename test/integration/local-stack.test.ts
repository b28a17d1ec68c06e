// The first quick-start command as a user runs it: `npm start` (here `node scripts/bootstrap.mjs
// stack`, what npm runs) serves the API and the Temporal Web UI, the README's example produces a
// succeeded remittance, a part that dies is restarted, and Ctrl-C stops every process it started.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { freePort } from '../../scripts/lib/proc';
import { PREBUILT_BUNDLE_ENV } from '../../scripts/lib/workflow-bundle';
import { eventually } from '../../scripts/lib/stack-harness';

const root = path.resolve(__dirname, '..', '..');
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-stack-'));
const HOUR_S = 4;
let stack: ChildProcess | undefined;
let output = '';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const readState = () => JSON.parse(fs.readFileSync(path.join(stateDir, 'local-stack.json'), 'utf8'));

after(async () => {
  if (stack && stack.exitCode === null) {
    stack.kill('SIGINT');
    await new Promise((r) => stack!.once('exit', r));
  }
  fs.rmSync(stateDir, { recursive: true, force: true });
});

describe('the local stack (npm start)', () => {
  it('runs the product, bills the README example, restarts a dead part, and stops everything on Ctrl-C', async () => {
    // A port of its own: with '0' the stack prefers 8080 when free, which another stack on the
    // same machine (a developer's, a cluster proof) can take between its check and the API's bind.
    const env: NodeJS.ProcessEnv = { ...process.env, REMIT_STATE_DIR: stateDir, REMIT_HOUR_SECONDS: String(HOUR_S), REMIT_API_PORT: String(await freePort()), REMIT_MONITORING_INTERVAL: '1s' };
    // The workflow bundle npm test built once (as a deployment ships one, README):
    // webpack in the stack's worker, and again in each restart, cost this file about 8 CPU-seconds
    // each. A worker that bundles at start-up runs in the cluster proof and in `npm start` itself.
    if (process.env[PREBUILT_BUNDLE_ENV]) env.REMIT_WORKFLOW_BUNDLE_PATH = process.env[PREBUILT_BUNDLE_ENV];
    for (const v of ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'AWS_METERING_ENDPOINT', 'AZURE_METERING_ENDPOINT', 'REMIT_INGEST_TOKEN', 'REMIT_OPERATOR_TOKEN', 'REMIT_MONITORING']) delete env[v];
    stack = spawn(process.execPath, [path.join(root, 'scripts', 'bootstrap.mjs'), 'stack'], { env, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    stack.stdout!.on('data', (d) => (output += String(d)));
    stack.stderr!.on('data', (d) => (output += String(d)));
    await eventually(async () => output.includes('remit is running'), 150_000, `the stack to start; output so far:\n${output}`);
    const state = readState();
    // It holds the tokens: readable by its owner only.
    for (const f of ['local-stack.json', 'tokens.json']) assert.equal(fs.statSync(path.join(stateDir, f)).mode & 0o777, 0o600, f);
    for (const name of ['temporal', 'database', 'aws-emulator', 'azure-emulator', 'worker', 'api', 'monitoring-prometheus']) assert.ok(alive(state.pids[name]), `${name} runs`);
    assert.match(output, /ingest token\s+\S+/);
    assert.ok(fs.existsSync(state.temporal.cli), 'the Temporal CLI it used');

    // The Web UI and the API answer.
    assert.equal((await fetch(state.temporal.webUi)).status, 200);
    assert.equal((await fetch(`${state.api}/readyz`)).status, 200);

    // The monitoring Prometheus (not the usage source) scrapes the API and the worker, with every alert rule loaded.
    const prom = state.monitoring.prometheus as string;
    assert.notEqual(prom, state.emulators.prometheus.url);
    assert.match(output, new RegExp(`monitoring\\s+${prom.replace(/[.]/g, '\\.')}`));
    await eventually(async () => {
      const t = (await (await fetch(`${prom}/api/v1/targets`)).json()) as { data: { activeTargets: Array<{ health: string; labels: { job: string } }> } };
      const up = t.data.activeTargets.filter((x) => x.health === 'up').map((x) => x.labels.job).sort();
      return up.join(',') === 'remit-api,remit-worker';
    }, 60_000, 'the API and the worker to be scraped');
    const rules = (await (await fetch(`${prom}/api/v1/rules`)).json()) as { data: { groups: Array<{ rules: Array<{ name: string; health: string }> }> } };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    assert.ok(loaded.length >= 17 && loaded.every((x) => x.health !== 'err'), JSON.stringify(loaded.map((x) => [x.name, x.health])));

    // The README's example, as printed.
    const example = output.match(/-d '(\{"tallies".*\})'/);
    assert.ok(example, 'the stack prints a copy-paste example');
    const body = JSON.parse(example[1]!);
    body.tallies[0].hour = new Date(Math.floor(Date.now() / (HOUR_S * 1000)) * HOUR_S * 1000).toISOString();
    const posted = await fetch(`${state.api}/v1/tallies`, { method: 'POST', headers: { authorization: `Bearer ${state.tokens.ingest}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(posted.status, 202, await posted.text());
    const done = await eventually(async () => {
      const r = await fetch(`${state.api}/v1/remittances?orgId=${body.tallies[0].orgId}`, { headers: { authorization: `Bearer ${state.tokens.operator}` } });
      const items = ((await r.json()) as any).items as any[];
      return items.find((i) => i.status === 'Succeeded');
    }, 60_000, 'a succeeded remittance');
    const records = ((await (await fetch(`${state.emulators.aws.admin}/records`)).json()) as any).records as any[];
    assert.ok(records.some((r) => r.receiptId === done.receiptId), 'the AWS emulator holds the record');

    // A part that dies unexpectedly is restarted, and the state file follows.
    const oldWorker = state.pids.worker;
    process.kill(oldWorker, 'SIGKILL');
    const restarted = await eventually(async () => {
      const s = readState();
      return s.pids.worker !== oldWorker && alive(s.pids.worker) ? s : undefined;
    }, 60_000, 'the worker to be restarted');
    assert.match(output, /worker \(pid \d+\) died unexpectedly/);

    // Ctrl-C stops everything it started.
    const pids = Object.values(restarted.pids as Record<string, number>);
    stack.kill('SIGINT');
    const code = await new Promise((r) => stack!.once('exit', r));
    assert.equal(code, 0);
    for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} stopped`);
  });
});
