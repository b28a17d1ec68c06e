// `npm run cluster-proof` (a .ci/run step after `npm test`): remit on the real Temporal server
// (scripts/lib/cluster.ts: PostgreSQL, the server with 4 shards, two workers, two APIs, the
// emulators; the server is built into .tools/ first when missing), then:
//
//   0. the minimal-workflow floor of this server (bench/floor.ts: the most any one-workflow-per-
//      record design can drain on it), measured first so the burst below can be compared with it;
//   1. a burst of tallies (N keys, one hour) posted alternately through both API replicas; the
//      first --unsubscribed customers are "not subscribed" at the AWS emulator (their records
//      will be refused, as when a subscription lapsed);
//   2. while the hour waits for its window to close, the Temporal server is restarted (SIGTERM,
//      supervised restart on the same database);
//   3. once the marketplace has accepted the first records, worker-1 is killed with SIGKILL in
//      the middle of sending; worker-2 carries on alone until the supervisor has worker-1 back;
//   4. once the refused records show `RemittanceStatus="Failed"` in Temporal, the subscriptions
//      are fixed (the emulator's faults cleared) and the operator retries them in bulk by query
//      with the `temporal` CLI (`temporal workflow signal --query ... --name retry`, a batch job
//      of the real server), as docs/operations.md says;
//   5. every key must be billed exactly once with its tallies' quantity, nothing may stay Failed,
//      Pending or Sending, the AWS limit of 10 calls/s per account and region must hold across
//      both workers (the emulator's call log), and `remit audit` against the cluster must be clean.
//
// Bounded: every wait has a deadline; exits 1 with the reason when anything fails. Prints the
// burst figures (records/s from window close to the last accepted record, against the floor) and
// a JSON line last.
//
//   npm run cluster-proof -- --keys 1000 --unsubscribed 30 --floor-n 1000 --hour-seconds 90

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { temporal as proto } from '@temporalio/proto';
import { FLOOR_SEARCH_ATTRIBUTE } from './bench/floor-workflow';
import { measureMinimalWorkflowRate, type FloorRun } from './bench/floor';
import { connectClient } from '../lib/temporal-connection';
import { eventually } from './lib/proc';
import { startCluster, type Cluster } from './lib/cluster';
import { ROOT } from './lib/services';
import { ensureTemporalCli } from './lib/temporal-cli';
import { frontendAnswers } from './lib/temporal-server';

const log = (m: string) => process.stderr.write(`[cluster-proof] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const runFile = promisify(execFile);
const PRODUCT = 'rhel-for-x86-els-payg-addon';
const RECORD_WORKFLOW = 'marketplaceRecordWorkflow';


async function json(url: string, init?: RequestInit): Promise<Record<string, unknown>> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${init?.method ?? 'GET'} ${url} answered ${r.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

interface Options {
  keys: number;
  unsubscribed: number;
  floorN: number;
  hourSeconds: number;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      keys: { type: 'string', default: '600' },
      unsubscribed: { type: 'string', default: '20' },
      'floor-n': { type: 'string', default: '500' },
      'hour-seconds': { type: 'string', default: '90' },
    },
  });
  const int = (name: string, raw: string, min: number, max: number) => {
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min || v > max) throw new Error(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
    return v;
  };
  const keys = int('keys', values.keys, 10, 100_000);
  return {
    keys,
    unsubscribed: int('unsubscribed', values.unsubscribed, 0, Math.floor(keys / 2)),
    floorN: int('floor-n', values['floor-n'], 0, 100_000),
    // Long enough that the refused records show Failed, and are retried, before the next hour's
    // close would bill their keys anyway (docs/operations.md: a Failed record's keys are owing).
    hourSeconds: int('hour-seconds', values['hour-seconds'], 20, 3600),
  };
}

const accountOf = (i: number) => String(100_000_000_000 + i).padStart(12, '0');

// ---------------------------------------------------------------------------------------------
// The steps

/** Step 0: the floor of this very server, on its own task queue and search attribute. */
async function measureFloor(c: Cluster, n: number): Promise<FloorRun> {
  const { connection, close } = await connectClient(c.temporal);
  try {
    const name = FLOOR_SEARCH_ATTRIBUTE.name;
    await eventually(async () => {
      const have = (await connection.operatorService.listSearchAttributes({ namespace: c.temporal.namespace })).customAttributes ?? {};
      if (name in have) return true;
      await connection.operatorService
        .addSearchAttributes({ namespace: c.temporal.namespace, searchAttributes: { [name]: proto.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD } })
        .catch((err: { code?: number }) => {
          if (err.code !== 6 /* ALREADY_EXISTS */) throw err;
        });
      return false;
    }, 60_000, `search attribute ${name} on the cluster`, 500);
  } finally {
    await close();
  }
  return measureMinimalWorkflowRate({ address: c.temporal.address, namespace: c.temporal.namespace, n, serverPid: c.pids()['temporal-server'], log });
}

/** Step 1: N tallies of one hour, batches of 100 alternating between the API replicas, 4 in flight. */
async function burst(c: Cluster, o: Options, orgId: string, hour: number): Promise<{ ingestMs: number; quantity: number }> {
  const tallies = Array.from({ length: o.keys }, (_, i) => ({
    orgId,
    productTag: PRODUCT,
    metric: 'vCPUs',
    sla: 'Premium',
    usage: 'Production',
    billingProvider: 'aws',
    billingAccountId: accountOf(i),
    hour: new Date(hour).toISOString(),
    value: 1 + (i % 7),
  }));
  const batch = 100;
  const started = Date.now();
  const posts: Promise<unknown>[] = [];
  for (let i = 0; i < tallies.length; i += batch) {
    const api = c.apis[(i / batch) % c.apis.length]!;
    posts.push(json(`${api}/v1/tallies`, { method: 'POST', headers: { authorization: `Bearer ${c.tokens.ingest}`, 'content-type': 'application/json' }, body: JSON.stringify({ tallies: tallies.slice(i, i + batch) }) }));
    if (posts.length >= 4) await Promise.all(posts.splice(0));
  }
  await Promise.all(posts);
  return { ingestMs: Date.now() - started, quantity: tallies.reduce((s, t) => s + t.value, 0) };
}

/** Step 2: SIGTERM to the Temporal server; the supervisor starts it again on the same database. */
async function restartTemporal(c: Cluster): Promise<number> {
  const ts = c.pids()['temporal-server'];
  if (!ts) throw new Error('the Temporal server has no pid');
  const t0 = Date.now();
  process.kill(ts, 'SIGTERM');
  log(`restarting the Temporal server (SIGTERM to pid ${ts}; the supervisor starts it again)`);
  await eventually(async () => {
    const p = c.pids()['temporal-server'];
    if (p === undefined || p === ts) return false;
    await frontendAnswers(c.temporal);
    return true;
  }, 180_000, 'the Temporal server to come back', 500);
  log(`the Temporal server answers again (pid ${c.pids()['temporal-server']}, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  return (Date.now() - t0) / 1000;
}

/** Record workflows a worker completed, from its SDK metrics (0 when it does not answer). */
async function completedRecordWorkflows(metricsUrl: string): Promise<number> {
  const text = await fetch(metricsUrl, { signal: AbortSignal.timeout(5_000) }).then((r) => r.text()).catch(() => '');
  let n = 0;
  for (const line of text.split('\n')) {
    if (/^temporal_workflow_completed(_total)?\{/.test(line) && line.includes(`workflow_type="${RECORD_WORKFLOW}"`)) n += Number(line.trim().split(/\s+/).pop()) || 0;
  }
  return n;
}

interface KillReport {
  killedPid: number;
  acceptedAtKill: number;
  backPid: number;
  downSeconds: number;
  /** Records the marketplace accepted while worker-1 was down: worker-2's alone. */
  acceptedWhileDown: number;
}

/**
 * Step 3: SIGKILL worker-1 mid-send; wait until the supervisor has started it again and its
 * metrics answer (the SDK runtime is up), counting what worker-2 did alone meanwhile.
 */
async function killWorker(c: Cluster, accepted: () => Promise<number>): Promise<KillReport> {
  const w1 = c.pids()['worker-1'];
  if (!w1) throw new Error('worker-1 has no pid');
  const acceptedAtKill = await accepted();
  const t0 = Date.now();
  process.kill(w1, 'SIGKILL');
  log(`SIGKILLed worker-1 (pid ${w1}) with ${acceptedAtKill} records accepted; worker-2 carries on alone`);
  const backPid = await eventually(async () => {
    const p = c.pids()['worker-1'];
    if (p === undefined || p === w1) return undefined;
    const r = await fetch(c.workerMetrics[0]!, { signal: AbortSignal.timeout(2_000) });
    return r.ok ? p : undefined;
  }, 180_000, 'the supervisor to restart worker-1', 500);
  const report = { killedPid: w1, acceptedAtKill, backPid, downSeconds: (Date.now() - t0) / 1000, acceptedWhileDown: (await accepted()) - acceptedAtKill };
  log(`worker-1 is back (pid ${backPid}, restarted by the supervisor) after ${report.downSeconds.toFixed(1)} s; meanwhile worker-2 alone had ${report.acceptedWhileDown} more records accepted`);
  return report;
}

interface RetryReport {
  failedSeen: number;
  /** Refused records whose first send was in flight on the killed worker: Unconfirmed, for the runbook. */
  unconfirmedSeen: number;
  signalled: number;
  cli: string;
}

/**
 * Step 4: the operator's bulk retry. Waits for the refused records to show Failed in Temporal
 * (the query an operator would list), fixes the subscriptions (clears the emulator's faults), and
 * signals `retry` to every matching workflow with `temporal workflow signal --query`.
 */
async function bulkRetry(c: Cluster, aws: string, o: Options, orgId: string, deadlineMs: number): Promise<RetryReport> {
  const query = `WorkflowType="${RECORD_WORKFLOW}" AND ExecutionStatus="Running" AND RemittanceStatus="Failed" AND RemittanceErrorCode="marketplace_customer_not_subscribed" AND OrgId="${orgId}"`;
  // A refused record whose first send was in flight on the worker the proof kills cannot be told
  // from one the marketplace kept (the answer was lost, the re-send refused): it ends Unconfirmed,
  // and the runbook's step (below) handles it. With eager starts the worker that closed the hour
  // runs most of its records, so the kill often catches some of these in flight.
  const unconfirmedQuery = `WorkflowType="${RECORD_WORKFLOW}" AND RemittanceStatus="Unconfirmed" AND OrgId="${orgId}"`;
  const { client, close } = await connectClient(c.temporal);
  try {
    const [failedSeen, unconfirmedSeen] = await eventually(async () => {
      const [failed, unconfirmed] = await Promise.all([client.workflow.count(query), client.workflow.count(unconfirmedQuery)]);
      return failed.count + unconfirmed.count >= o.unsubscribed ? [failed.count, unconfirmed.count] : undefined;
    }, deadlineMs, `${o.unsubscribed} records refused as not subscribed to show Failed (or Unconfirmed) in Temporal`, 500);
    log(`${failedSeen} record workflows match ${query}; ${unconfirmedSeen} ended Unconfirmed`);
    await json(`${aws}/_emulator/faults`, { method: 'DELETE' });
    if (failedSeen === 0) {
      log('subscriptions fixed (AWS emulator faults cleared); no Failed record to retry in bulk');
      return { failedSeen, unconfirmedSeen, signalled: 0, cli: (await ensureTemporalCli(log)).version };
    }
    log('subscriptions fixed (AWS emulator faults cleared); retrying them in bulk by query with the temporal CLI ...');
    const cli = await ensureTemporalCli(log);
    const reason = 'cluster-proof: subscriptions fixed';
    // The connection goes on the command line (loopback, no secret); the proof runs without TLS.
    const r = await runFile(cli.path, ['workflow', 'signal', '--address', c.temporal.address, '--namespace', c.temporal.namespace, '--query', query, '--name', 'retry', '--input', JSON.stringify({ actor: 'cluster-proof', reason }), '--reason', reason, '--yes'], { timeout: 60_000 }).catch((err: Error & { stderr?: string }) => {
      throw new Error(`temporal workflow signal --query failed: ${(err.stderr ?? '').trim().split('\n').slice(-3).join(' ') || err.message}`);
    });
    log(`temporal workflow signal --query: ${`${r.stdout}`.trim().split('\n').slice(-2).join(' ')}`);
    // The batch job runs on the server's system worker: done when nothing matches any more.
    await eventually(async () => (await client.workflow.count(query)).count === 0, 120_000, 'the batch job to signal every matching workflow', 500);
    return { failedSeen, unconfirmedSeen, signalled: failedSeen, cli: cli.version };
  } finally {
    await close();
  }
}

type Unconfirmed = { id: string; remittanceHour: string; key: { billingAccountId: string } };

/**
 * The runbook's step for `marketplace_unconfirmed` (docs/operations.md): an Unconfirmed hour whose
 * record the marketplace does not hold is reset, previewed first and only if the preview names
 * nothing but those remittances; the next close bills it. Here it happens when a send's answer
 * is lost with a workflow task (the worker killed, or too slow under load) and the resend meets
 * the not-subscribed customer: remit cannot tell "accepted before" from "refused", so it counts
 * the hour as remitted rather than risk billing twice. Returns the remittances reset.
 */
async function resetUnconfirmedNotAtMarketplace(c: Cluster, orgId: string, accepted: Set<string>, done: Set<string>): Promise<number> {
  const auth = { authorization: `Bearer ${c.tokens.operator}`, 'content-type': 'application/json' };
  const page = await json(`${c.apis[0]}/v1/remittances?orgId=${orgId}&status=Unconfirmed&limit=1000`, { headers: auth });
  const missing = (page.items as Unconfirmed[]).filter((u) => !accepted.has(u.key.billingAccountId) && !done.has(u.id));
  const byHour = new Map<string, Unconfirmed[]>();
  for (const u of missing) byHour.set(u.remittanceHour, [...(byHour.get(u.remittanceHour) ?? []), u]);
  let n = 0;
  for (const [hour, us] of byHour) {
    const body = { productTag: PRODUCT, start: hour, end: new Date(Date.parse(hour) + 1).toISOString(), billingAccountIds: us.map((u) => u.key.billingAccountId), dryRun: true };
    const preview = await json(`${c.apis[0]}/v1/remittances/reset`, { method: 'POST', headers: auth, body: JSON.stringify(body) });
    const ids = new Set(us.map((u) => u.id));
    const changes = preview.changes as Array<{ remittanceId: string }>;
    if (changes.length === 0 || !changes.every((ch) => ids.has(ch.remittanceId))) throw new Error(`the reset preview for ${hour} names other remittances than the unconfirmed ones: ${JSON.stringify(changes).slice(0, 500)}`);
    await json(`${c.apis[0]}/v1/remittances/reset`, { method: 'POST', headers: auth, body: JSON.stringify({ ...body, dryRun: false }) });
    for (const u of us) done.add(u.id);
    n += us.length;
    log(`runbook (marketplace_unconfirmed): reset ${us.length} unconfirmed remittance(s) of ${hour} the marketplace does not hold; the next close bills them`);
  }
  return n;
}

/** Step 5: the AWS limit across both workers: the most calls in any 1-second window per account and region. */
function maxCallsPerSecond(calls: Array<{ at: number; account: string | null; region: string | null }>): number {
  const byKey = new Map<string, number[]>();
  for (const call of calls) {
    const k = `${call.account}/${call.region}`;
    byKey.set(k, [...(byKey.get(k) ?? []), call.at]);
  }
  let max = 0;
  for (const ats of byKey.values()) {
    ats.sort((a, b) => a - b);
    for (let i = 0, j = 0; i < ats.length; i++) {
      while (ats[i]! - ats[j]! >= 1000) j++;
      max = Math.max(max, i - j + 1);
    }
  }
  return max;
}

async function remitAudit(c: Cluster): Promise<void> {
  const audit = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'remit.mjs'), 'audit'], { env: { ...process.env, ...c.serviceEnv, REMIT_STACK_FILE: c.stackFile }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
  if (audit.code !== 0) throw new Error(`remit audit is not clean (exit ${audit.code}):\n${audit.out.slice(-3000)}`);
}

// ---------------------------------------------------------------------------------------------

async function prove(c: Cluster, o: Options, started: number): Promise<void> {
  const aws = c.emulators.aws?.url;
  if (!aws) throw new Error('the proof needs the AWS emulator (unset AWS_METERING_ENDPOINT)');
  const hourMs = o.hourSeconds * 1000;
  const load0 = os.loadavg();

  const floor = o.floorN > 0 ? await measureFloor(c, o.floorN) : undefined;

  const orgId = `org-proof-${Date.now().toString(36)}`;
  // Start right after an hour begins, so that the whole burst lands in one hour.
  await sleep(hourMs - (Date.now() % hourMs) + 50);
  const hour = Math.floor(Date.now() / hourMs) * hourMs;
  const windowClose = hour + hourMs * (1 + 1 / 6);
  const unsubscribed = Array.from({ length: o.unsubscribed }, (_, i) => accountOf(i));
  if (unsubscribed.length) await json(`${aws}/_emulator/faults`, { method: 'POST', body: JSON.stringify(unsubscribed.map((customer) => ({ kind: 'not-subscribed', durationMs: 60 * 60_000, match: { customer } }))) });
  const { ingestMs, quantity } = await burst(c, o, orgId, hour);
  log(`burst: ${o.keys} tallies (quantity ${quantity}) through ${c.apis.length} APIs in ${ingestMs} ms; ${unsubscribed.length} of the customers are not subscribed`);

  const temporalRestartSeconds = await restartTemporal(c);

  type Rec = { customer: string; quantity: number; acceptedAt: string; hour: string };
  const records = async () => ((await json(`${aws}/_emulator/records`)).records as Rec[]).filter((r) => Number(r.customer) >= 100_000_000_000);
  await eventually(async () => (await records()).length > 0, 10 * hourMs + 120_000, 'the first records to reach the marketplace', 500);
  const firstAt = Date.now();
  const [kill, retry] = await Promise.all([
    killWorker(c, async () => (await records()).length),
    // Before the acceptance window of the hour (6 hours) ends; the next hour's close may also
    // bill these keys meanwhile (a Failed record's keys are owing), which the checks allow.
    o.unsubscribed ? bulkRetry(c, aws, o, orgId, 5 * hourMs) : Promise.resolve(undefined),
  ]);

  // Done when the marketplace holds one record per key and nothing of the org is in flight or
  // failed. Once nothing moves, Unconfirmed hours the marketplace does not hold get the runbook.
  const resetDone = new Set<string>();
  const deadline = Date.now() + 15 * 60_000;
  let summary: Record<string, { remittances: number }>;
  for (;;) {
    const state = await eventually(async () => {
      const billed = new Set((await records()).map((r) => r.customer));
      const s = await json(`${c.apis[1] ?? c.apis[0]}/v1/remittances/summary?orgId=${orgId}`, { headers: { authorization: `Bearer ${c.tokens.operator}` } });
      const totals = s.totals as Record<string, { remittances: number }>;
      if (['Pending', 'Sending', 'Failed'].some((st) => totals[st]?.remittances)) return undefined;
      if (billed.size >= o.keys) return { done: true, totals, billed };
      return totals.Unconfirmed?.remittances ? { done: false, totals, billed } : undefined;
    }, Math.max(1, deadline - Date.now()), `all ${o.keys} keys to be billed`, 500);
    summary = state.totals;
    if (state.done) break;
    // Outside `until`: a reset that goes wrong stops the proof at once.
    if ((await resetUnconfirmedNotAtMarketplace(c, orgId, state.billed, resetDone)) === 0) await sleep(2000);
  }
  const accepted = await records();
  const perCustomer = new Map<string, number>();
  for (const r of accepted) perCustomer.set(r.customer, (perCustomer.get(r.customer) ?? 0) + 1);
  const twice = [...perCustomer].filter(([, n]) => n > 1);
  if (accepted.length !== o.keys || twice.length) throw new Error(`the marketplace holds ${accepted.length} records for ${o.keys} keys${twice.length ? `; billed more than once: ${twice.slice(0, 5).map(([k, n]) => `${k} ×${n}`).join(', ')}` : ''}`);
  const acceptedQuantity = accepted.reduce((s, r) => s + r.quantity, 0);
  if (acceptedQuantity !== quantity) throw new Error(`the marketplace accepted quantity ${acceptedQuantity}, the tallies add up to ${quantity}`);
  const retried = accepted.filter((r) => unsubscribed.includes(r.customer));
  const retriedInOwnHour = retried.filter((r) => Date.parse(r.hour) === hour).length;
  const lastAt = Math.max(...accepted.filter((r) => !unsubscribed.includes(r.customer)).map((r) => Date.parse(r.acceptedAt)));
  const sendSeconds = (lastAt - windowClose) / 1000;

  const calls = (await json(`${aws}/_emulator/calls`)).calls as Array<{ at: number; account: string | null; region: string | null }>;
  const maxPerSecond = maxCallsPerSecond(calls);
  if (maxPerSecond > 10) throw new Error(`AWS calls per second per account and region reached ${maxPerSecond} (limit 10)`);
  const perWorker = await Promise.all(c.workerMetrics.map(completedRecordWorkflows));
  await remitAudit(c);

  const subscribed = o.keys - o.unsubscribed;
  const recordsPerSecond = Number((subscribed / Math.max(sendSeconds, 0.001)).toFixed(1));
  const result = {
    keys: o.keys,
    hourSeconds: o.hourSeconds,
    ingestMs,
    floor: floor ? { workflows: floor.workflows, workflowsPerSecond: floor.workflowsPerSecond, historyEvents: floor.historyEvents, cpuPercent: floor.cpuPercent } : null,
    recordsPerSecondAfterWindowClose: recordsPerSecond,
    ratioToFloor: floor ? Number((recordsPerSecond / floor.workflowsPerSecond).toFixed(2)) : null,
    goalRecordsPerSecond: 100,
    sendSecondsAfterWindowClose: Number(sendSeconds.toFixed(1)),
    firstRecordAfterWindowCloseSeconds: Number(((firstAt - windowClose) / 1000).toFixed(1)),
    temporalRestartSeconds: Number(temporalRestartSeconds.toFixed(1)),
    workerKill: { ...kill, downSeconds: Number(kill.downSeconds.toFixed(1)) },
    recordWorkflowsCompletedSinceStart: { 'worker-1 (restarted)': perWorker[0] ?? 0, 'worker-2': perWorker[1] ?? 0 },
    unconfirmedResetByRunbook: resetDone.size,
    bulkRetry: retry ? { ...retry, billedInTheirOwnHour: retriedInOwnHour, billedByALaterHour: retried.length - retriedInOwnHour } : null,
    awsCalls: calls.length,
    maxAwsCallsPerSecond: maxPerSecond,
    totals: summary,
    audit: 'clean',
    loadAverage: { atStart: load0.map((x) => Number(x.toFixed(2))), atEnd: os.loadavg().map((x) => Number(x.toFixed(2))) },
    durationSeconds: Math.round((Date.now() - started) / 1000),
  };
  const out = (l: string) => process.stdout.write(`${l}\n`);
  out(`cluster proof passed: ${o.keys} keys billed once each (quantity ${quantity}) through 2 APIs and 2 workers`);
  out(`  Temporal server restarted mid-hour (back in ${result.temporalRestartSeconds} s)`);
  out(`  worker-1 SIGKILLed mid-send at ${kill.acceptedAtKill} records; worker-2 alone had ${kill.acceptedWhileDown} more accepted until the supervisor had worker-1 back (pid ${kill.backPid}, ${result.workerKill.downSeconds} s); record workflows completed since: worker-1 ${perWorker[0] ?? 0}, worker-2 ${perWorker[1] ?? 0}`);
  if (retry) out(`  ${retry.failedSeen} records refused (not subscribed) showed Failed${retry.unconfirmedSeen ? ` (${retry.unconfirmedSeen} more were in flight on the killed worker: Unconfirmed)` : ''}; subscriptions fixed, retried in bulk with \`temporal workflow signal --query\` (${retry.cli}); all billed once (${retriedInOwnHour} in their own hour, ${retried.length - retriedInOwnHour} by a later hour's close)`);
  if (resetDone.size) out(`  ${resetDone.size} hour(s) ended Unconfirmed (a send's answer lost, then the customer refused) and the marketplace did not hold them: reset per the runbook, billed by a later close`);
  out(`  ${calls.length} AWS calls, at most ${maxPerSecond}/s per account and region; remit audit clean`);
  out(`  burst: ${recordsPerSecond} records/s after window close${floor ? `; floor of this server ${floor.workflowsPerSecond} minimal workflows/s (ratio ${result.ratioToFloor})` : ''}; goal 100 records/s; load average ${result.loadAverage.atEnd.join(' ')}`);
  out(JSON.stringify(result));
}

async function main(): Promise<number> {
  const o = options();
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
    cluster = await startCluster({ stateDir, ephemeral: true, hourSeconds: String(o.hourSeconds), log });
    await prove(cluster, o, started);
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
