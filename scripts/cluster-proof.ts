// `npm run cluster-proof` (a .ci/run step after `npm test`): remit on the real Temporal server
// (scripts/lib/cluster.ts: PostgreSQL, the server with 4 shards, two workers, two APIs, the
// emulators; the server is built into .tools/ first when missing), then:
//
//   1. a burst of tallies (N keys, one hour) posted alternately through both API replicas;
//   2. while the workflows wait for the hour's window to close, the Temporal server is restarted
//      (SIGTERM, supervised restart on the same database);
//   3. once the marketplace has accepted the first records, worker-1 is killed with SIGKILL in
//      the middle of sending (the other worker carries on; the supervisor restarts the killed one);
//   4. every remittance must reach Succeeded, the AWS limit of 10 calls/s per account and region
//      must hold across both workers (the emulator's call log), and `remit audit` against the
//      cluster must be clean.
//
// Bounded: every wait has a deadline; exits 1 with the reason when anything fails. Prints the
// burst figures (records/s from window close to the last accepted record) and a JSON line last.
//
//   npm run cluster-proof -- --keys 1000

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startCluster, type Cluster } from './lib/cluster';
import { ROOT } from './lib/services';
import { frontendAnswers } from './lib/temporal-server';

const log = (m: string) => process.stderr.write(`[cluster-proof] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// Long enough that a burst's workflow starts fit in one hour on a loaded 2-core machine.
const HOUR_SECONDS = 60;

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(500);
  }
}

async function json(url: string, init?: RequestInit): Promise<Record<string, unknown>> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${init?.method ?? 'GET'} ${url} answered ${r.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { keys: { type: 'string', default: '600' } } });
  const keys = Number(values.keys);
  if (!Number.isInteger(keys) || keys < 10 || keys > 100_000) throw new Error(`--keys must be an integer from 10 to 100000`);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-cluster-proof-'));
  let cluster: Cluster | undefined;
  const started = Date.now();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      void (async () => {
        await cluster?.stop();
        fs.rmSync(stateDir, { recursive: true, force: true });
        process.exit(130);
      })();
    });
  }
  try {
    cluster = await startCluster({ stateDir, ephemeral: true, hourSeconds: String(HOUR_SECONDS), log });
    const c = cluster;
    const aws = c.emulators.aws?.url;
    if (!aws) throw new Error('the proof needs the AWS emulator (unset AWS_METERING_ENDPOINT)');
    const hourMs = HOUR_SECONDS * 1000;
    const orgId = `org-proof-${Date.now().toString(36)}`;
    // Start right after an hour begins, so that the whole burst lands in one hour.
    await sleep(hourMs - (Date.now() % hourMs) + 50);
    const hour = Math.floor(Date.now() / hourMs) * hourMs;
    const tallies = Array.from({ length: keys }, (_, i) => ({
      orgId,
      productTag: 'rhel-for-x86-els-payg-addon',
      metric: 'vCPUs',
      sla: 'Premium',
      usage: 'Production',
      billingProvider: 'aws',
      billingAccountId: String(100_000_000_000 + i).padStart(12, '0'),
      hour: new Date(hour).toISOString(),
      value: 1 + (i % 7),
    }));
    const batch = 100;
    const burstStart = Date.now();
    const posts: Promise<unknown>[] = [];
    for (let i = 0; i < tallies.length; i += batch) {
      const api = c.apis[(i / batch) % c.apis.length]!;
      posts.push(json(`${api}/v1/tallies`, { method: 'POST', headers: { authorization: `Bearer ${c.tokens.ingest}`, 'content-type': 'application/json' }, body: JSON.stringify({ tallies: tallies.slice(i, i + batch) }) }));
      if (posts.length >= 4) await Promise.all(posts.splice(0));
    }
    await Promise.all(posts);
    const ingestMs = Date.now() - burstStart;
    log(`burst: ${keys} tallies through ${c.apis.length} APIs in ${ingestMs} ms`);

    // While the workflows wait for the window to close: restart the Temporal server. Their timers
    // and state are in PostgreSQL and must survive it.
    const ts = c.pids()['temporal-server'];
    if (!ts) throw new Error('the Temporal server has no pid');
    process.kill(ts, 'SIGTERM');
    log(`restarting the Temporal server (SIGTERM to pid ${ts}; the supervisor starts it again)`);
    await until('the Temporal server to come back', 180_000, async () => {
      const p = c.pids()['temporal-server'];
      if (p === undefined || p === ts) return false;
      await frontendAnswers(c.temporal);
      return true;
    });
    log('the Temporal server answers again');

    const records = async () => ((await json(`${aws}/_emulator/records`)).records as Array<{ customer: string; acceptedAt: string }>).filter((r) => Number(r.customer) >= 100_000_000_000);
    await until('the first records to reach the marketplace', 10 * hourMs + 120_000, async () => (await records()).length > 0);
    const firstAt = Date.now();
    const w1 = c.pids()['worker-1'];
    if (!w1) throw new Error('worker-1 has no pid');
    process.kill(w1, 'SIGKILL');
    log(`SIGKILLed worker-1 (pid ${w1}) with ${(await records()).length}/${keys} records accepted`);

    // Done when the marketplace holds one record per key and none of the org's remittances is
    // still in flight. Under heavy load some hours expire before they are sent and are re-billed
    // in a later hour (Expired, then Succeeded): legitimate, and the audit below checks the sums.
    const summary = await until(`all ${keys} keys to be billed`, 15 * 60_000, async () => {
      if ((await records()).length < keys) return undefined;
      const s = await json(`${c.apis[1] ?? c.apis[0]}/v1/remittances/summary?orgId=${orgId}`, { headers: { authorization: `Bearer ${c.tokens.operator}` } });
      const totals = s.totals as Record<string, { remittances: number }>;
      return ['Pending', 'Sending', 'Failed', 'Unconfirmed'].every((st) => !totals[st]?.remittances) ? totals : undefined;
    });
    const accepted = await records();
    if (accepted.length !== keys) throw new Error(`the marketplace holds ${accepted.length} records for ${keys} keys`);
    const lastAt = Math.max(...accepted.map((r) => Date.parse(r.acceptedAt)));
    const windowClose = hour + hourMs * (1 + 1 / 6);
    const sendSeconds = (lastAt - windowClose) / 1000;

    // The AWS limit across both workers: no 1-second window with more than 10 calls per account and region.
    const calls = (await json(`${aws}/_emulator/calls`)).calls as Array<{ at: number; account: string | null; region: string | null }>;
    const byKey = new Map<string, number[]>();
    for (const call of calls) {
      const k = `${call.account}/${call.region}`;
      byKey.set(k, [...(byKey.get(k) ?? []), call.at]);
    }
    let maxPerSecond = 0;
    for (const ats of byKey.values()) {
      ats.sort((a, b) => a - b);
      for (let i = 0, j = 0; i < ats.length; i++) {
        while (ats[i]! - ats[j]! >= 1000) j++;
        maxPerSecond = Math.max(maxPerSecond, i - j + 1);
      }
    }
    if (maxPerSecond > 10) throw new Error(`AWS calls per second per account and region reached ${maxPerSecond} (limit 10)`);

    const audit = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'remit.mjs'), 'audit'], { env: { ...process.env, ...c.serviceEnv, REMIT_STACK_FILE: c.stackFile }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', (code) => resolve({ code, out }));
    });
    if (audit.code !== 0) throw new Error(`remit audit is not clean (exit ${audit.code}):\n${audit.out.slice(-3000)}`);
    const result = {
      keys,
      ingestMs,
      recordsPerSecondAfterWindowClose: Number((keys / Math.max(sendSeconds, 0.001)).toFixed(1)),
      sendSecondsAfterWindowClose: Number(sendSeconds.toFixed(1)),
      firstRecordAfterWindowCloseSeconds: Number(((firstAt - windowClose) / 1000).toFixed(1)),
      awsCalls: calls.length,
      maxAwsCallsPerSecond: maxPerSecond,
      totals: summary,
      audit: 'clean',
      durationSeconds: Math.round((Date.now() - started) / 1000),
    };
    process.stdout.write(`cluster proof passed: ${keys} keys billed once each through 2 APIs and 2 workers across a Temporal server restart, one worker SIGKILLed mid-send; ${calls.length} AWS calls, at most ${maxPerSecond}/s; remit audit clean; ${result.recordsPerSecondAfterWindowClose} records/s after window close\n`);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`\n[cluster-proof] FAILED: ${(err as Error).message}\nlogs: ${path.join(stateDir, 'logs')}\n`);
    for (const f of fs.existsSync(path.join(stateDir, 'logs')) ? fs.readdirSync(path.join(stateDir, 'logs')) : []) {
      const text = fs.readFileSync(path.join(stateDir, 'logs', f), 'utf8').trim().split('\n').slice(-15).join('\n');
      process.stderr.write(`--- ${f} (last lines)\n${text}\n`);
    }
    return 1;
  } finally {
    await cluster?.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  },
);
