// The `remit` operator CLI as operators run it: `node bin/remit.mjs ...` as a child process, from a
// directory outside the repository, against the real stack (API, Temporal, PostgreSQL, the AWS
// emulator; the Azure emulator over HTTPS for the audit). Hours are 3-second slots.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { main } from '../../cli/remit';
import { ensureLocalCerts } from '../../scripts/emulators/certs';
import { hourStart } from '../../domain/time';
import { azureRecord, newResource, startAzureStack, type AzureStack } from '../../scripts/lib/azure-stack';
import { eventually, startTestStack, type TestStack } from '../../scripts/lib/stack-harness';

const HOUR_MS = 3000;
const BIN = path.resolve(__dirname, '..', '..', 'bin', 'remit.mjs');
const PRODUCT = 'rhel-for-x86-els-payg-addon';

let stack: TestStack;
let cwd: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  json: any;
}

/** The stack's settings as an operator would export them; REMIT_STACK_FILE=none ignores any local-stack.json. */
function stackEnv(): NodeJS.ProcessEnv {
  return {
    REMIT_STACK_FILE: 'none',
    REMIT_API_URL: stack.apiUrl,
    REMIT_OPERATOR_TOKEN: stack.tokens.operator,
    DATABASE_URL: stack.config.databaseUrl,
    TEMPORAL_ADDRESS: stack.config.temporalAddress,
    TEMPORAL_NAMESPACE: stack.config.temporalNamespace,
    REMIT_HOUR_SECONDS: String(HOUR_MS / 1000),
    REMIT_GRACE_HOURS: String(stack.time.graceHours),
    REMIT_AWS_ACCEPTANCE_HOURS: String(stack.time.acceptanceHours.aws),
  };
}

/** Run `node bin/remit.mjs ...args`; the environment starts from a copy without any REMIT_ or DATABASE_ settings. */
/** The environment a `remit` run sees: the test's own, without what would point it elsewhere, plus `env` (default: this stack's). */
function cliEnv(env?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(REMIT_|DATABASE_URL$|TEMPORAL_ADDRESS$|TEMPORAL_NAMESPACE$)/.test(k)));
  return { ...base, ...(env ?? stackEnv()) };
}

/** `remit` as an operator runs it: bin/remit.mjs in a process of its own (exit code, stdio, tsx start-up). */
function remitProcess(args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  const env = cliEnv(o.env);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: o.cwd ?? cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve(runOf(code, stdout, stderr));
    });
  });
}

/**
 * The CLI's own entry (cli/remit.ts main, which bin/remit.mjs runs) in this process, with the
 * same environment and working directory: most cases, since a process each cost about 0.6
 * CPU-seconds of start-up and showed nothing more (the CLI reads only the environment and
 * directory it is given). Each kind of outcome is also checked through remitProcess(): help,
 * usage errors (exit 2), a refused token (exit 1, never printed), a report, the stack found from
 * the working directory, and an audit that fails (exit 1).
 */
async function remit(args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { out: (l = '') => (stdout += `${l}\n`), err: (l = '') => (stderr += `${l}\n`), env: cliEnv(o.env), cwd: o.cwd ?? cwd });
  return runOf(code, stdout, stderr);
}

/** A run's outcome, with its stdout parsed when it is JSON (--json). */
function runOf(code: number | null, stdout: string, stderr: string): Run {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  return { code, stdout, stderr, json };
}

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const show = (r: Run) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

function tally(orgId: string, account: string, value: number, hourMs = stack.currentHourMs()) {
  return { orgId, productTag: PRODUCT, metric: 'vCPUs', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: account, hour: new Date(hourMs).toISOString(), value };
}

const newAccount = () => String(100000000000 + Math.floor(Math.random() * 899999999999));

async function remittances(orgId: string): Promise<any[]> {
  const r = await stack.request('GET', `/v1/remittances?orgId=${orgId}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.items;
}

const settled = (items: any[]) => items.length > 0 && items.every((i) => !['Pending', 'Sending'].includes(i.status));

async function ledgerSnapshot(): Promise<string> {
  const q = async (sql: string) => JSON.stringify((await stack.database.pool.query(sql)).rows);
  return [
    await q('SELECT * FROM remittances ORDER BY id'),
    await q('SELECT * FROM remittance_parts ORDER BY remittance_id, period'),
    await q('SELECT * FROM remittance_keys ORDER BY key'),
    await q('SELECT * FROM tallies ORDER BY key, hour'),
  ].join('\n');
}

const awsRecordsUrl = () => `${stack.aws.url}/_emulator/records`;

// One succeeded remittance, made in `before`: org A's 4 vCPUs in the current hour.
const orgA = `org-cli-${randomUUID().slice(0, 8)}`;
const acctA = newAccount();
let succeeded: any;

before(async () => {
  stack = await startTestStack({ hourMs: HOUR_MS, graceHours: 0.25, awsAcceptanceHours: 8 });
  cwd = await mkdtemp(path.join(os.tmpdir(), 'remit-cli-'));
  const r = await stack.request('POST', '/v1/tallies', { tallies: [tally(orgA, acctA, 4)] }, stack.tokens.ingest);
  assert.equal(r.status, 202, JSON.stringify(r.body));
  [succeeded] = await eventually(async () => {
    const all = await remittances(orgA);
    return settled(all) ? all : undefined;
  }, 30_000, 'the first remittance');
  assert.equal(succeeded.status, 'Succeeded', succeeded.reason);
  assert.equal(succeeded.quantity, 4);
});

after(async () => {
  await stack?.stop();
  if (cwd) await rm(cwd, { recursive: true, force: true });
});

describe('remit CLI: help and bad flags', () => {
  it('--help for every command: usage, --json, and --dry-run where it changes anything', async () => {
    const top = await remitProcess(['--help']);
    assert.equal(top.code, 0, show(top));
    for (const c of ['report', 'reset', 'recalculate', 'retry', 'audit', 'replay']) assert.match(top.stdout, new RegExp(`^  ${c} `, 'm'));
    for (const c of ['report', 'reset', 'recalculate', 'retry', 'audit', 'replay']) {
      const r = await remit([c, '--help']);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, new RegExp(`^Usage: remit ${c}`), c);
      assert.match(r.stdout, /--json/, c);
      if (c !== 'report' && c !== 'audit') assert.match(r.stdout, /--dry-run/, c);
      assert.equal(r.stderr, '', c);
    }
    const h = await remit(['help', 'audit']);
    const viaProcess = await remitProcess(['audit', '--help']);
    assert.equal(viaProcess.code, 0, show(viaProcess));
    assert.equal(viaProcess.stdout, (await remit(['audit', '--help'])).stdout, 'the process prints what the entry prints');
    assert.equal(h.code, 0);
    assert.match(h.stdout, /remit audit log/);
    const none = await remitProcess([]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /Usage: remit <command>/);
  });

  it('bad flags exit 2 with a message naming the flag, before contacting anything', async () => {
    // An API nobody listens on: a command that got past its flags would fail with exit 1 instead.
    const env = { ...stackEnv(), REMIT_API_URL: 'http://127.0.0.1:9', DATABASE_URL: 'postgres://nobody@127.0.0.1:9/none', TEMPORAL_ADDRESS: '127.0.0.1:9' };
    const range = ['--start', '2026-11-25T00:00:00Z', '--end', '2026-11-26T00:00:00Z'];
    const cases: Array<[string[], RegExp]> = [
      [['frobnicate'], /unknown command "frobnicate"/],
      [['report', '--bogus'], /unknown option --bogus/],
      [['report', '--dry-run'], /unknown option --dry-run/],
      [['report', '--status', 'Sent'], /--status: "Sent" is not one of/],
      [['report', '--marketplace', 'gcp'], /--marketplace must be one of aws, azure/],
      [['report', '--limit', 'ten'], /--limit must be an integer/],
      [['report', '--from', 'yesterday'], /--from must be an ISO-8601 instant/],
      [['report', '--group-by', 'colour'], /--group-by: "colour"/],
      [['report', '--org'], /--org needs a value/],
      [['reset', ...range, '--orgs', 'a'], /--product is required/],
      [['reset', '--product', PRODUCT, '--end', '2026-11-26T00:00:00Z', '--orgs', 'a'], /--start is required/],
      [['reset', '--product', PRODUCT, ...range, '--orgs', 'a', '--accounts', 'b'], /exactly one of --orgs and --accounts/],
      [['reset', '--product', PRODUCT, ...range], /exactly one of --orgs and --accounts/],
      [['reset', '--product', PRODUCT, ...range, '--orgs', 'a,,b'], /--orgs must be a comma-separated list/],
      [['recalculate', '--product', PRODUCT, '--start', '2026-11-26T00:00:00Z', '--end', '2026-11-25T00:00:00Z', '--orgs', 'a'], /--end must be after --start/],
      [['recalculate', '--product', PRODUCT, ...range, '--orgs', 'a', '--status', 'Failed'], /unknown option --status/],
      [['retry', '--product', PRODUCT, ...range, '--orgs', 'a', '--status', 'Succeeded'], /--status: "Succeeded" is not one of Failed, Expired/],
      [['reset', '--product', PRODUCT, ...range, '--orgs', 'a', '--dry-run=yes'], /--dry-run does not take a value/],
      [['audit', '--aws-records', 'ftp://example'], /--aws-records must be an http\(s\) URL/],
      [['audit', '--no-marketplace', '--aws-records', 'http://127.0.0.1:9/x'], /contradict/],
      [['audit', 'logs'], /unexpected argument "logs"/],
      [['audit', 'log', '--limit', '0'], /--limit must be an integer from 1 to 1000/],
      [['replay', '--signal', 'retry'], /--query is required/],
      [['replay', '-q'], /--query needs a value/],
      [['replay', '--query', 'OrgId="x"', '--signal', 'rewind'], /--signal must be one of retry, recalculate, reset/],
    ];
    // Two through the real process (exit code 2, stdout empty), the rest through its entry.
    const runs: Run[] = await Promise.all(cases.map(([args], i) => (i < 2 ? remitProcess(args, { env }) : remit(args, { env }))));
    for (const [i, [args, message]] of cases.entries()) {
      const r = runs[i]!;
      assert.equal(r.code, 2, `${args.join(' ')}\n${show(r)}`);
      assert.match(r.stderr, message, args.join(' '));
      assert.match(r.stderr, /--help' for usage/, args.join(' '));
      assert.equal(r.stdout, '', args.join(' '));
    }
  });

  it('input the API refuses exits 2 with its message; a wrong token exits 1 and is never printed', async () => {
    const bad = await remit(['reset', '--product', 'no-such-product', '--start', '2026-11-25T00:00:00Z', '--end', '2026-11-25T00:01:00Z', '--orgs', orgA, '--dry-run']);
    assert.equal(bad.code, 2, show(bad));
    assert.match(bad.stderr, /400 unknown productTag "no-such-product"/);

    const wrong = `wrong-${randomUUID()}`;
    const r = await remitProcess(['report', '--token', wrong]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /refused the operator token/);
    assert.ok(!r.stdout.includes(wrong) && !r.stderr.includes(wrong), 'the token is not printed');

    const port = await closedPort();
    const down = await remit(['report'], { env: { ...stackEnv(), REMIT_API_URL: `http://127.0.0.1:${port}` } });
    assert.equal(down.code, 1, show(down));
    assert.match(down.stderr, new RegExp(`cannot reach the remit API \\(GET http://127\\.0\\.0\\.1:${port}/v1/remittances/summary\\): ECONNREFUSED\\. Is the stack running\\? \\(API URL from REMIT_API_URL\\)`));
  });
});

describe('remit CLI against the stack', () => {
  it('report --json shows the succeeded remittance; the table says what was remitted and why', async () => {
    const r = await remitProcess(['report', '--org', orgA, '--json']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.json.summary.totals.Succeeded.remittances, 1);
    assert.equal(r.json.summary.totals.Succeeded.quantity, 4);
    assert.equal(r.json.items.length, 1);
    const [item] = r.json.items;
    assert.equal(item.id, succeeded.id);
    assert.equal(item.status, 'Succeeded');
    assert.equal(item.quantity, 4);
    assert.equal(item.key.orgId, orgA);
    const rec = stack.aws.records().find((x) => x.receiptId === item.receiptId);
    assert.ok(rec, 'the receipt is the one the marketplace holds');
    assert.equal(rec.quantity, 4);

    const text = await remit(['report', '--org', orgA, '--group-by', 'billingProvider']);
    assert.equal(text.code, 0, show(text));
    assert.match(text.stdout, /Totals by status:/);
    assert.match(text.stdout, /remitted\s+4 billing units in 1 remittance \(Succeeded 1\)/);
    assert.match(text.stdout, new RegExp(`${succeeded.remittanceHour}\\s+aws\\s+${acctA}\\s+${orgA}\\s+${PRODUCT}\\s+vCPUs\\s+4\\s+Succeeded\\s+receipt ${item.receiptId}`));
    assert.ok(!text.stdout.includes(stack.tokens.operator) && !text.stderr.includes(stack.tokens.operator), 'the token is not printed');

    const other = await remit(['report', '--org', orgA, '--status', 'Failed,Expired', '--json']);
    assert.equal(other.code, 0);
    assert.deepEqual(other.json.items, []);
  });

  it('reset --dry-run lists the remittance and changes nothing; the dry run is in the audit trail', async () => {
    const hour = Date.parse(succeeded.remittanceHour);
    const range = ['--product', PRODUCT, '--start', new Date(hour - 1000).toISOString(), '--end', new Date(hour + 1000).toISOString(), '--orgs', orgA];
    const before = await ledgerSnapshot();
    const records = stack.aws.records().length;

    const r = await remit(['reset', ...range, '--dry-run', '--actor', 'cli-test', '--json']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.json.dryRun, true);
    assert.deepEqual(r.json.changes.map((c: any) => [c.remittanceId, c.remittanceHour, c.status, c.quantity, c.action]), [[succeeded.id, succeeded.remittanceHour, 'Succeeded', 4, 'void']]);
    assert.deepEqual(r.json.started, []);
    assert.equal(typeof r.json.auditId, 'number');

    const text = await remit(['reset', ...range, '--dry-run', '--actor', 'cli-test']);
    assert.equal(text.code, 0, show(text));
    assert.match(text.stdout, /DRY RUN: nothing was changed/);
    assert.match(text.stdout, new RegExp(`aws/${acctA}/${orgA}/${PRODUCT}/vCPUs/Premium/Production\\s+${succeeded.remittanceHour}\\s+${succeeded.id}\\s+Succeeded\\s+4\\s+\\S+\\s+void`));
    assert.match(text.stdout, /1 change over 1 key, 4 billing units/);
    assert.match(text.stdout, /Audit trail entry: \d+/);

    assert.equal(await ledgerSnapshot(), before, 'the ledger is unchanged');
    assert.equal(stack.aws.records().length, records);

    const log = await remit(['audit', 'log', '--json', '--limit', '5']);
    assert.equal(log.code, 0, show(log));
    const entry = log.json.items.find((e: any) => e.id === r.json.auditId);
    assert.ok(entry, show(log));
    assert.equal(entry.actor, 'operator-token', 'the actor is the credential that acted');
    assert.equal(entry.request.claimedBy, 'cli-test', '--actor is a note beside it');
    assert.equal(entry.action, 'reset');
    assert.equal(entry.dryRun, true);
    const logText = await remit(['audit', '--log']);
    assert.equal(logText.code, 0, show(logText));
    assert.match(logText.stdout, /operator-token\s+reset\s+dry run\s+productTag=rhel-for-x86-els-payg-addon start=\S+ end=\S+ orgIds=org-cli-\S+ claimedBy=cli-test\s+changes=1 owing=0 quantity=4 started=0/);
  });

  it('recalculate --dry-run and retry --dry-run find nothing to do after a clean story', async () => {
    const hour = Date.parse(succeeded.remittanceHour);
    const range = ['--product', PRODUCT, '--start', new Date(hour - 1000).toISOString(), '--end', new Date(hour + 1000).toISOString(), '--accounts', acctA, '--dry-run', '--json'];
    const before = await ledgerSnapshot();
    const re = await remit(['recalculate', ...range]);
    assert.equal(re.code, 0, show(re));
    assert.deepEqual(re.json.changes.map((c: any) => [c.key.orgId, c.quantity, c.action]), [[orgA, 0, 'no-change']]);
    const rt = await remit(['retry', ...range, '--status', 'Failed,Expired']);
    assert.equal(rt.code, 0, show(rt));
    assert.deepEqual(rt.json.changes, []);
    assert.equal(await ledgerSnapshot(), before);
  });

  it('replay --dry-run lists the matching workflows, signals nothing, and prints the temporal command', async () => {
    const query = `OrgId="${orgA}" AND RemittanceStatus="Succeeded"`;
    const r = await eventually(async () => {
      const x = await remit(['replay', '--query', query, '--signal', 'retry', '--dry-run', '--json']);
      assert.equal(x.code, 0, show(x));
      return x.json.workflows.length > 0 ? x : undefined;
    }, 20_000, 'the workflow in Temporal visibility');
    assert.deepEqual(r.json.workflows.map((w: any) => [w.workflowId, w.remittanceStatus, w.executionStatus, w.outcome]), [[succeeded.workflowId, 'Succeeded', 'COMPLETED', 'skipped']]);
    assert.equal(r.json.dryRun, true);
    assert.match(r.json.temporalCommand, / workflow signal --address \S+ --namespace \S+ --query '.*OrgId="org-cli-.*' --name retry --input .* --yes$/);

    const text = await remit(['replay', '--query', query, '--dry-run']);
    assert.equal(text.code, 0, show(text));
    assert.match(text.stdout, /1 remittance workflow match/);
    assert.ok(text.stdout.includes(succeeded.workflowId));
    assert.match(text.stdout, /nothing was signalled/);
    assert.match(text.stdout, /The same with the Temporal CLI:\n {2}\S*temporal workflow signal /);
  });

  it('replay sends retry to a failed hour waiting for an operator, which is then billed once', async () => {
    const orgB = `org-cli-${randomUUID().slice(0, 8)}`;
    const acctB = newAccount();
    // Not subscribed until the operator fixes it: every hour's record fails meanwhile (the next
    // hour's close bills a failed amount again, and fails again).
    stack.aws.faults.add({ kind: 'not-subscribed', durationMs: 600_000, match: { customer: acctB } });
    assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [tally(orgB, acctB, 5)] }, stack.tokens.ingest)).status, 202);
    const [failed] = await eventually(async () => {
      const all = await remittances(orgB);
      return all.length >= 1 && all.every((x) => x.status === 'Failed') ? all.reverse() : undefined;
    }, 30_000, 'the failure');
    assert.equal(failed.errorCode, 'marketplace_customer_not_subscribed');

    const report = await remit(['report', '--org', orgB]);
    assert.equal(report.code, 0, show(report));
    assert.match(report.stdout, /not remitted\s+\d+ billing units in \d+ remittances? \(Failed \d+\)/);
    assert.match(report.stdout, /Failed\s+\[marketplace_customer_not_subscribed\] .+ -> not billed by a later hour yet/);

    const query = `OrgId="${orgB}" AND RemittanceStatus="Failed" AND Marketplace="aws"`;
    await eventually(async () => {
      const x = await remit(['replay', '--query', query, '--dry-run', '--json']);
      return x.json?.workflows.some((w: any) => w.workflowId === failed.workflowId && w.outcome === 'would-signal');
    }, 15_000, 'the failed workflow in visibility');
    // Without --yes: the dry run, then a stop; nothing is signalled.
    const unconfirmed = await remit(['replay', '--query', query, '--signal', 'retry']);
    assert.equal(unconfirmed.code, 2, show(unconfirmed));
    assert.match(unconfirmed.stdout, /Dry run: would send retry to \d+ running workflows?/);
    assert.match(unconfirmed.stderr, /nothing was signalled: this was a dry run\. Check it, then run the same command with --yes/);
    assert.ok((await remittances(orgB)).every((x) => x.status === 'Failed'), 'nothing was retried');
    stack.aws.faults.clear(); // the subscription is fixed
    const r = await remit(['replay', '--query', query, '--signal', 'retry', '--actor', 'cli-test', '--reason', 'subscription fixed', '--yes']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /Sent retry to \d+ workflows? as cli-test \("subscription fixed"\)/);

    const done = await eventually(async () => {
      const all = await remittances(orgB);
      return all.every((x) => !['Failed', 'Pending', 'Sending'].includes(x.status)) ? all.find((x) => x.status === 'Succeeded') : undefined;
    }, 30_000, 'the retried remittance');
    const recs = stack.aws.records().filter((x) => x.customer === acctB);
    assert.equal(recs.length, 1, 'billed once');
    assert.equal(recs[0]!.quantity, 5);
    assert.equal(recs[0]!.receiptId, done.receiptId);
    const log = await remit(['audit', 'log', '--json']);
    assert.ok(log.json.items.some((e: any) => e.action === 'signal:retry' && e.actor === 'cli-test' && e.request.reason === 'subscription fixed'), show(log));
  });

  it('audit exits 0 after the clean stories, reading the AWS emulator records', async () => {
    await eventually(async () => {
      const r = await stack.database.pool.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM remittances WHERE status IN ('Pending','Sending')`);
      return r.rows[0]!.n === 0;
    }, 30_000, 'a quiet system');
    const r = await remit(['audit', '--aws-records', awsRecordsUrl(), '--json']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.json.ok, true);
    assert.deepEqual(r.json.violations, []);
    assert.equal(r.json.checked.marketplaceRecords, stack.aws.records().length);
    assert.ok(r.json.checked.remittances >= 2);
    assert.deepEqual(r.json.marketplaces.aws, { source: awsRecordsUrl(), records: stack.aws.records().length });
    assert.equal(r.json.marketplaces.azure, null);
    assert.ok(!r.stdout.includes(new URL(stack.config.databaseUrl!).password || '\u0000'), 'the database password is not printed');

    const text = await remit(['audit', '--aws-records', awsRecordsUrl()]);
    assert.equal(text.code, 0, show(text));
    assert.match(text.stdout, /aws records: \d+ from http:\/\/127\.0\.0\.1:\d+\/_emulator\/records/);
    assert.match(text.stdout, /azure records: not read/);
    assert.match(text.stdout, /OK: no violations/);
  });

  it('finds the stack through .remit/local-stack.json in the working directory, hour length included', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'remit-cli-stack-'));
    try {
      await mkdir(path.join(dir, '.remit'));
      await writeFile(path.join(dir, '.remit', 'local-stack.json'), JSON.stringify({
        api: stack.apiUrl,
        tokens: { ingest: stack.tokens.ingest, operator: stack.tokens.operator },
        temporal: { address: stack.config.temporalAddress, namespace: stack.config.temporalNamespace, cli: 'temporal' },
        database: stack.config.databaseUrl,
        emulators: { aws: { url: stack.aws.url, admin: `${stack.aws.url}/_emulator` } },
        hourSeconds: HOUR_MS / 1000,
      }));
      const { REMIT_STACK_FILE: _f, REMIT_API_URL: _a, REMIT_OPERATOR_TOKEN: _t, DATABASE_URL: _d, TEMPORAL_ADDRESS: _ta, TEMPORAL_NAMESPACE: _n, REMIT_HOUR_SECONDS: _h, ...env } = stackEnv();
      const report = await remitProcess(['report', '--org', orgA, '--json'], { env, cwd: dir });
      assert.equal(report.code, 0, show(report));
      assert.equal(report.json.items[0].id, succeeded.id);
      const audit = await remit(['audit', '--json'], { env, cwd: dir });
      assert.equal(audit.code, 0, show(audit));
      assert.equal(audit.json.marketplaces.aws.source, awsRecordsUrl());
      const replay = await remit(['replay', '--query', `OrgId="${orgA}"`, '--dry-run', '--json'], { env, cwd: dir });
      assert.equal(replay.code, 0, show(replay));
      assert.equal(replay.json.workflows.length, 1);
      assert.equal(replay.json.address, stack.config.temporalAddress);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('audit reads Azure records over HTTPS trusting the local CA, and flags one the ledger does not know', async () => {
    let azure: AzureStack | undefined;
    const otherCa = await mkdtemp(path.join(os.tmpdir(), 'remit-cli-ca-'));
    try {
      azure = await startAzureStack({ hourMs: HOUR_MS, acceptanceHours: 24 });
      const url = `${azure.azure.url}/_emulator/records`;
      const clean = await remit(['audit', '--aws-records', awsRecordsUrl(), '--azure-records', url, '--ca', azure.certs.caFile, '--json']);
      assert.equal(clean.code, 0, show(clean));
      assert.deepEqual(clean.json.marketplaces.azure, { source: url, records: 0 });

      // An event Azure accepted that no remittance sent: billed with nothing in the ledger.
      const resource = newResource();
      const [o] = await azure.client().send([azureRecord({ resource, quantity: 3, timestampMs: hourStart(Date.now(), HOUR_MS) - HOUR_MS })]);
      assert.equal(o!.kind, 'accepted');
      const dirty = await remit(['audit', '--aws-records', awsRecordsUrl(), '--azure-records', url, '--ca', azure.certs.caFile]);
      assert.equal(dirty.code, 1, show(dirty));
      assert.match(dirty.stdout, /FAILED: 1 violation/);
      assert.match(dirty.stdout, new RegExp(`nothing-twice \\(1\\):\\n  - azure billed 3 control_plane for ${resource} @\\S+ \\(receipt \\S+\\) with no succeeded remittance in the ledger`));

      // Another CA: the TLS check fails, and the message says what to do.
      const wrongCa = await ensureLocalCerts(otherCa);
      const refused = await remit(['audit', '--azure-records', url, '--ca', wrongCa.caFile]);
      assert.equal(refused.code, 1, show(refused));
      assert.match(refused.stderr, /cannot read the azure records from https:\S+ \(from --azure-records\): .*--ca.*--azure-records none or --no-marketplace/);
    } finally {
      await azure?.close();
      await rm(otherCa, { recursive: true, force: true });
    }
  });

  it('audit exits 1 with a clear message after the ledger is tampered with, and 0 again once repaired', async () => {
    await stack.database.pool.query('UPDATE remittances SET bill = bill + 1 WHERE id = $1', [succeeded.id]);
    try {
      const r = await remitProcess(['audit', '--aws-records', awsRecordsUrl()]);
      assert.equal(r.code, 1, show(r));
      assert.match(r.stdout, /FAILED: \d+ violation/);
      assert.match(r.stdout, new RegExp(`ledger and marketplace disagree for receipt ${succeeded.receiptId}: ledger 5 vCPU_hours ${acctA} @${succeeded.remittanceHour}, marketplace 4 vCPU_hours ${acctA}`));
      assert.ok(r.stdout.includes(`remittance ${succeeded.id}`));
      const j = await remit(['audit', '--aws-records', awsRecordsUrl(), '--json']);
      assert.equal(j.code, 1);
      assert.equal(j.json.ok, false);
      assert.ok(j.json.violations.some((v: any) => v.invariant === 'nothing-twice' && v.remittanceId === succeeded.id));
    } finally {
      await stack.database.pool.query('UPDATE remittances SET bill = bill - 1 WHERE id = $1', [succeeded.id]);
    }
    const ok = await remit(['audit', '--aws-records', awsRecordsUrl()]);
    assert.equal(ok.code, 0, show(ok));
  });

  it('audit matches a receipt confirmed by reading the usage back (usageEvents:...) by its slot', async () => {
    // What the Azure client records when a lost answer is confirmed through the usageEvents API.
    const slotReceipt = `usageEvents:${acctA}|vCPU_hours|${succeeded.remittanceHour}`;
    await stack.database.pool.query('UPDATE remittances SET receipt_id = $2 WHERE id = $1', [succeeded.id, slotReceipt]);
    try {
      const r = await remit(['audit', '--aws-records', awsRecordsUrl()]);
      assert.equal(r.code, 0, show(r));
    } finally {
      await stack.database.pool.query('UPDATE remittances SET receipt_id = $2 WHERE id = $1', [succeeded.id, succeeded.receiptId]);
    }
  });

  it('audit exits 1 when the row of a remittance the marketplace accepted is gone', async () => {
    await stack.database.pool.query('DELETE FROM remittances WHERE id = $1', [succeeded.id]);
    const r = await remit(['audit', '--aws-records', awsRecordsUrl()]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stdout, new RegExp(`aws billed 4 vCPU_hours for ${acctA} @${succeeded.remittanceHour} \\(receipt ${succeeded.receiptId}\\) with no succeeded remittance in the ledger`));
    assert.match(r.stdout, /nothing-lost \(1\):\n {2}- 4 billing unit\(s\) owed but not remitted/);
    // Ledger-only, the loss is still found.
    const ledgerOnly = await remit(['audit', '--no-marketplace', '--json']);
    assert.equal(ledgerOnly.code, 1, show(ledgerOnly));
    assert.deepEqual(ledgerOnly.json.violations.map((v: any) => v.invariant), ['nothing-lost']);
    assert.equal(ledgerOnly.json.checked.marketplaceRecords, null);
  });
});
