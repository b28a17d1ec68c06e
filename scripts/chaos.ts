// `npm run chaos`: a bounded fault-injection soak of the whole product, ending with the audit.
//
//   npm run chaos                                  60 s of load and faults with 3-second hours
//   npm run chaos -- --duration 120 --seed 42      longer, reproducible choices (timing is not)
//   npm run chaos -- --cluster                     on the real Temporal server on PostgreSQL
//   npm run chaos -- --help
//
// What runs: PostgreSQL and a Temporal dev server (started here unless TEST_DATABASE_URL and
// TEMPORAL_ADDRESS name running ones; stopped at the end), or with --cluster PostgreSQL and the
// real Temporal server on it (scripts/lib/cluster.ts, under its supervisor); then the product in
// this process the way the integration tests run it (scripts/lib/stack-harness.ts): a fresh migrated
// database, the AWS, Azure and Entra emulators on loopback, the HTTP API, a remittance worker and
// the hourly sweep, with hours scaled to a few seconds. Two more workers and two more APIs run as
// their own processes (workers/main.ts, api/main.ts, as in production) so that they can be
// killed with SIGKILL in the middle of a send or a request (workers also stopped with SIGTERM
// like a deploy), and replaced.
//
// Load phase (--duration): random tallies for many keys (AWS rhel-els vCPUs, which needs no
// contract; rosa on AWS and on Azure under contracts, some arriving late, some with committed
// coverage), with corrections (up and down), replays of earlier batches, late tallies for earlier
// hours and for the previous month. Meanwhile random emulator faults (throttle, server-error,
// timeout, lost-response, unprocessed, not-subscribed, expired), worker restarts and kills, API
// kills (tallies are resent to another API, as a usage source does), PostgreSQL restarts (planned
// and crash; when this script started PostgreSQL), Temporal server restarts (SIGTERM and SIGKILL;
// with --cluster only: the dev server keeps its state in memory), and operator actions (retry
// through the API, bulk retry by Temporal query, reset and recalculate signals, recalculate
// through the API).
//
// Quiet phase: faults cleared, every customer made whole again (a not-subscribed fault is the
// customer's subscription lapsing; clearing the faults is the subscription being fixed, and the
// failed hours still waiting are retried by query, as an operator would: so no amount stays owed
// legitimately and nothing is excluded from the nothing-lost check), then wait until no
// remittance is Pending or Sending, no key owes, the sweep has run since the faults stopped and a
// few scaled hours have passed.
//
// Checks: `remit audit` (operations/audit.ts: nothing lost, nothing twice, nothing hidden against
// the emulators' records), plus three checks of this script's own that do not trust the product's
// arithmetic: an independent model of what each marketplace customer and dimension must have
// been billed (the billing rules applied to the tallies this script posted), no AWS
// DuplicateRecord answer ever, and every remittance's status and error code visible in Temporal's
// search attributes. Prints a summary, then a one-line JSON summary as the LAST line; exits 1 on
// any violation (2 on bad flags). When something is wrong the evidence (ledger rows, emulator
// records and calls of the customers involved) goes to .remit/chaos-<time>.json.
//
// Everything listens on 127.0.0.1; every loop is bounded by the duration or a deadline.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { temporal } from '@temporalio/proto';
import { monthOf, monthStartMs, previousMonth } from '../domain/time';
import type { FaultKind } from './emulators/faults';
import { SA } from '../workflows/definitions';
import { sweepScheduleId } from '../workflows/definitions';
import { startTestStack, type TestStack } from './lib/stack-harness';
import { startCluster, type Cluster } from './lib/cluster';
import { startPostgres, type PostgresServer } from './lib/postgres';
import { freePort, REPO_ROOT } from './lib/proc';
import { ensureTemporalCli, startTemporalDevServer, type DevServer } from './lib/temporal-cli';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (m: string) => process.stderr.write(`[chaos] ${m}\n`);
/** Worker and API processes this script started and that may still run: killed by pid on any exit path. */
const liveChildren = new Set<ChildProcess>();

// ---------------------------------------------------------------------------------------------
// Options

const HELP = `Usage: npm run chaos -- [options]

A bounded fault-injection soak of remit against real Temporal and PostgreSQL, ending with the
audit. Exit code 0: no violation; 1: violations (details above the summary); 2: bad flags.

Options:
  --duration SECONDS        load and fault phase (default 60)
  --hour-seconds SECONDS    length of a scaled hour (default $REMIT_HOUR_SECONDS or 3; 2 to 5 is sensible)
  --seed N                  seed of the random choices (default: random, printed)
  --aws-keys N              rhel-els vCPU keys on AWS, one account each (default 12)
  --shared-accounts N       pairs of rhel-els keys that differ only in sla and share an AWS
                            account, so their records meet in one customer/dimension/hour (default 2)
  --rosa-aws N              rosa orgs under AWS contracts, 2 metrics each (default 4)
  --rosa-azure N            rosa orgs under Azure contracts, 2 metrics each (default 4)
  --aws-acceptance-hours H  AWS window (default 6)
  --azure-acceptance-hours H  Azure window (default 8: short enough to see expiries)
  --max-quiet-hours H       give up waiting for quiet after this many scaled hours (default 40)
  --cluster                 run on the real Temporal server on PostgreSQL (npm run cluster's
                            server and database, started and stopped here) instead of the dev server
  --no-process-kill         no worker process killed or restarted
  --no-api-kill             no API replicas (tallies go to the in-process API only)
  --no-restarts             no PostgreSQL or Temporal server restarts
  --help

Uses TEST_DATABASE_URL (a superuser URL) and TEMPORAL_ADDRESS when set (not with --cluster),
else starts and stops its own PostgreSQL and Temporal. PostgreSQL is restarted only when this
script started it; the Temporal server only with --cluster. TEMPORAL_CLI_PATH (or the dev
server's CLI) is used for the bulk retry by query.
`;

interface Options {
  durationMs: number;
  hourMs: number;
  seed: number;
  awsKeys: number;
  sharedPairs: number;
  rosaAws: number;
  rosaAzure: number;
  awsAcceptanceHours: number;
  azureAcceptanceHours: number;
  maxQuietHours: number;
  processKill: boolean;
  apiKill: boolean;
  restarts: boolean;
  cluster: boolean;
}

class UsageError extends Error {}

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      duration: { type: 'string' },
      'hour-seconds': { type: 'string' },
      seed: { type: 'string' },
      'aws-keys': { type: 'string' },
      'shared-accounts': { type: 'string' },
      'rosa-aws': { type: 'string' },
      'rosa-azure': { type: 'string' },
      'aws-acceptance-hours': { type: 'string' },
      'azure-acceptance-hours': { type: 'string' },
      'max-quiet-hours': { type: 'string' },
      'no-process-kill': { type: 'boolean' },
      'no-api-kill': { type: 'boolean' },
      'no-restarts': { type: 'boolean' },
      cluster: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return 'help';
  const num = (name: string, raw: string | undefined, def: number, min: number, max: number, integer = false) => {
    if (raw === undefined) return def;
    const v = Number(raw);
    if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) throw new UsageError(`--${name} must be a${integer ? 'n integer' : ' number'} from ${min} to ${max}, got ${JSON.stringify(raw)}`);
    return v;
  };
  const hourSeconds = num('hour-seconds', values['hour-seconds'] ?? process.env.REMIT_HOUR_SECONDS, 3, 1, 60);
  return {
    durationMs: num('duration', values.duration, 60, 5, 3600) * 1000,
    hourMs: Math.round(hourSeconds * 1000),
    seed: num('seed', values.seed, Math.floor(Math.random() * 2 ** 31), 0, 2 ** 31, true),
    awsKeys: num('aws-keys', values['aws-keys'], 12, 0, 500, true),
    sharedPairs: num('shared-accounts', values['shared-accounts'], 2, 0, 50, true),
    rosaAws: num('rosa-aws', values['rosa-aws'], 4, 0, 200, true),
    rosaAzure: num('rosa-azure', values['rosa-azure'], 4, 0, 200, true),
    awsAcceptanceHours: num('aws-acceptance-hours', values['aws-acceptance-hours'], 6, 2, 48),
    azureAcceptanceHours: num('azure-acceptance-hours', values['azure-acceptance-hours'], 8, 2, 48),
    maxQuietHours: num('max-quiet-hours', values['max-quiet-hours'], 40, 4, 1000),
    processKill: !values['no-process-kill'],
    apiKill: !values['no-api-kill'],
    restarts: !values['no-restarts'],
    cluster: !!values.cluster,
  };
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness (mulberry32): the same seed makes the same choices; timing still varies.

function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p: number) => next() < p,
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T,
    /** A value in metric units: a multiple of 0.25 (exact in binary floating point, so sums are exact). */
    value: (max: number) => Math.floor(next() * max * 4 + 1) / 4,
    weighted: <T extends string>(w: Record<T, number>): T => {
      const entries = Object.entries(w) as Array<[T, number]>;
      let x = next() * entries.reduce((s, [, v]) => s + v, 0);
      for (const [k, v] of entries) if ((x -= v) < 0) return k;
      return entries[entries.length - 1]![0];
    },
  };
}
type Rng = ReturnType<typeof rng>;

// ---------------------------------------------------------------------------------------------
// The keys and the independent model of what they owe

interface TallyKey {
  orgId: string;
  productTag: string;
  metric: string;
  sla: string;
  usage: string;
  billingProvider: 'aws' | 'azure';
  billingAccountId: string;
}

interface Contract {
  id: string;
  body: Record<string, unknown>;
  /** Posted when the load phase is this far along (0: before any tally). */
  postAt: number;
  posted: boolean;
}

interface ChaosKey {
  label: string;
  tally: TallyKey;
  /** Where its records go: AWS account id or Azure resource id, and the marketplace dimension. */
  customer: string;
  dimension: string;
  bf: number;
  /** Committed billing units per month on this key's dimension (contract metrics). */
  coverage: number;
  contract?: Contract;
  lane: number;
  /** hour (epoch ms) -> last value posted (what the product must hold). */
  values: Map<number, number>;
  /** period -> highest month-to-date ever posted (usage that goes down is never credited). */
  peakMtd: Map<string, number>;
}

function mtd(k: ChaosKey, period: string): number {
  let s = 0;
  for (const [h, v] of k.values) if (monthOf(h) === period) s += v;
  return s;
}

function unitsFor(k: ChaosKey, mtdValue: number): number {
  return Math.ceil(Math.max(0, mtdValue * k.bf - k.coverage));
}

/** Billing units the key must have been billed in all, as a range: exact unless usage went down after a peak. */
function owed(k: ChaosKey): { lo: number; hi: number } {
  const periods = new Set([...k.values.keys()].map(monthOf));
  let lo = 0;
  let hi = 0;
  for (const p of periods) {
    lo += unitsFor(k, mtd(k, p));
    hi += unitsFor(k, Math.max(mtd(k, p), k.peakMtd.get(p) ?? 0));
  }
  return { lo, hi };
}

const AZURE_PLAN = 'plan-gold';

function awsAccount(r: Rng): string {
  return String(r.int(100000000000, 999999999999));
}

function azureResource(r: Rng): string {
  const hex = (n: number) => Array.from({ length: n }, () => r.int(0, 15).toString(16)).join('');
  return `${hex(8)}-${hex(4)}-4${hex(3)}-8${hex(3)}-${hex(12)}`;
}

function buildKeys(o: Options, r: Rng, runId: string, prevMonthStartIso: string): ChaosKey[] {
  const keys: ChaosKey[] = [];
  const lanes = 3;
  const add = (k: Omit<ChaosKey, 'lane' | 'values' | 'peakMtd'>) => keys.push({ ...k, lane: keys.length % lanes, values: new Map(), peakMtd: new Map() });
  const base = { productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', usage: 'Production', billingProvider: 'aws' as const };
  for (let i = 0; i < o.awsKeys; i++) {
    const acct = awsAccount(r);
    add({ label: `aws-rhel-${i}`, tally: { ...base, orgId: `chaos-${runId}-rhel-${i}`, sla: 'Premium', billingAccountId: acct }, customer: acct, dimension: 'vCPU_hours', bf: 1, coverage: 0 });
  }
  for (let i = 0; i < o.sharedPairs; i++) {
    const acct = awsAccount(r);
    for (const sla of ['Premium', 'Standard']) {
      add({ label: `aws-shared-${i}-${sla}`, tally: { ...base, orgId: `chaos-${runId}-shared-${i}`, sla, billingAccountId: acct }, customer: acct, dimension: 'vCPU_hours', bf: 1, coverage: 0 });
    }
  }
  const rosaMetrics = [
    { metric: 'Cores', dimension: 'four_vcpu_hour', bf: 0.25 },
    { metric: 'Instance-hours', dimension: 'control_plane', bf: 1 },
  ];
  for (const [mp, n] of [['aws', o.rosaAws], ['azure', o.rosaAzure]] as const) {
    for (let i = 0; i < n; i++) {
      const orgId = `chaos-${runId}-rosa-${mp}-${i}`;
      const billingAccountId = mp === 'aws' ? awsAccount(r) : `azure-acct-${runId}-${i}`;
      const customer = mp === 'aws' ? billingAccountId : azureResource(r);
      // Every other org has committed coverage, which the bill must subtract every month.
      const committed = i % 2 === 1 ? [{ dimension: 'four_vcpu_hour', value: 2 }, { dimension: 'control_plane', value: 1 }] : [];
      const contract: Contract = {
        id: `chaos-${runId}-${mp}-${i}`,
        body: {
          orgId,
          billingProvider: mp,
          billingAccountId,
          productTag: 'rosa',
          // From the previous month on, so that late tallies of the previous month are billable.
          startDate: prevMonthStartIso,
          ...(mp === 'aws' ? { aws: { productCode: 'rosa-hcp', customerAwsAccountId: customer } } : { azure: { resourceId: customer, planId: AZURE_PLAN } }),
          metrics: committed,
        },
        // A third of the orgs send usage before their contract exists: it must wait, then be billed.
        postAt: i % 3 === 1 ? 0.2 + r.next() * 0.4 : 0,
        posted: false,
      };
      for (const m of rosaMetrics) {
        add({
          label: `${mp}-rosa-${i}-${m.metric}`,
          tally: { orgId, productTag: 'rosa', metric: m.metric, sla: 'Premium', usage: 'Production', billingProvider: mp, billingAccountId },
          customer,
          dimension: m.dimension,
          bf: m.bf,
          coverage: committed.find((c) => c.dimension === m.dimension)?.value ?? 0,
          contract,
        });
      }
    }
  }
  return keys;
}

// ---------------------------------------------------------------------------------------------
// Counters for the summary

interface Stats {
  batches: number;
  tallies: number;
  kinds: Record<string, number>;
  batchReplays: number;
  apiErrors: Record<string, number>;
  contracts: number;
  faults: Record<string, number>;
  workerRestarts: number;
  workerKills: number;
  apiKills: number;
  /** Temporal server and PostgreSQL restarts by kind, and the longest time each took to answer again. */
  infra: Record<string, number>;
  infraDowntimeMs: Record<string, number>;
  operator: Record<string, number>;
  operatorErrors: string[];
}

const bump = (m: Record<string, number>, k: string, by = 1) => (m[k] = (m[k] ?? 0) + by);

// ---------------------------------------------------------------------------------------------
// Infrastructure: PostgreSQL and Temporal, started here only when not given. With --cluster, the
// real Temporal server on PostgreSQL under the cluster's supervisor (scripts/lib/cluster.ts).

interface Infra {
  kind: 'dev-server' | 'cluster';
  /** The PostgreSQL this script started (restartable), when it started one. */
  postgres?: PostgresServer;
  cliPath?: string;
  /** Restarts the Temporal server and resolves when it answers again; undefined when it cannot be restarted without losing its state. */
  restartTemporal?: (signal: NodeJS.Signals) => Promise<number>;
  stop(): Promise<void>;
}

async function startInfra(o: Options): Promise<Infra> {
  if (o.cluster) return startClusterInfra();
  let postgres: PostgresServer | undefined;
  let temporal: DevServer | undefined;
  const quiet = (m: string) => log(m);
  try {
    if (!process.env.TEST_DATABASE_URL) {
      log('TEST_DATABASE_URL is not set: starting a throwaway PostgreSQL ...');
      // Durable: the soak crashes it, and what it acknowledged must survive, as in production.
      postgres = await startPostgres({ log: quiet, durable: true });
      process.env.TEST_DATABASE_URL = postgres.url;
    } else log(`PostgreSQL: TEST_DATABASE_URL from the environment (${process.env.TEST_DATABASE_URL.replace(/\/\/[^@]*@/, '//***@')})`);
    if (!process.env.TEMPORAL_ADDRESS) {
      log('TEMPORAL_ADDRESS is not set: starting a throwaway Temporal dev server ...');
      temporal = await startTemporalDevServer({ headless: true, log: quiet });
      process.env.TEMPORAL_ADDRESS = temporal.address;
      process.env.TEMPORAL_CLI_PATH ??= temporal.cliPath;
    } else log(`Temporal: TEMPORAL_ADDRESS from the environment (${process.env.TEMPORAL_ADDRESS})`);
  } catch (err) {
    await Promise.allSettled([temporal?.stop(), postgres?.stop()]);
    throw err;
  }
  return {
    kind: 'dev-server',
    postgres,
    cliPath: process.env.TEMPORAL_CLI_PATH,
    // The dev server keeps its state in memory: a restart would lose every workflow, which no
    // production Temporal does. Temporal restarts run on the cluster only.
    async stop() {
      const r = await Promise.allSettled([temporal?.stop(), postgres?.stop()]);
      for (const x of r) if (x.status === 'rejected') log(`tear-down: ${String(x.reason)}`);
    },
  };
}

async function startClusterInfra(): Promise<Infra> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-chaos-cluster-'));
  log('--cluster: starting PostgreSQL and the real Temporal server on it (scripts/lib/cluster.ts) ...');
  let cluster: Cluster;
  try {
    cluster = await startCluster({ stateDir, ephemeral: true, remit: false, log });
  } catch (err) {
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw err;
  }
  process.env.TEST_DATABASE_URL = cluster.postgres.url;
  process.env.TEMPORAL_ADDRESS = cluster.temporal.address;
  process.env.TEMPORAL_NAMESPACE = cluster.temporal.namespace;
  const cli = await ensureTemporalCli(log).catch(() => undefined);
  return {
    kind: 'cluster',
    postgres: cluster.postgres,
    cliPath: cli?.path,
    restartTemporal: async (signal) => (await cluster.supervisor.bounce('temporal-server', signal)).ms,
    async stop() {
      await cluster.stop().catch((err: Error) => log(`tear-down: ${err.message}`));
      fs.rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/**
 * Restarts the PostgreSQL this script started, in place (same port and data): `fast` is a planned restart (connections closed), `immediate` a crash (recovery at
 * start). Every connection of every process breaks.
 */
async function restartPostgres(pgServer: PostgresServer, mode: 'fast' | 'immediate'): Promise<number> {
  const started = Date.now();
  await pgServer.restart(mode);
  return Date.now() - started;
}

// ---------------------------------------------------------------------------------------------
// The soak's shared state

interface Violation {
  source: 'audit' | 'model' | 'duplicates' | 'temporal';
  invariant: string;
  message: string;
  key?: string;
  remittanceId?: string;
  customer?: string;
}

interface Result {
  violations: Violation[];
  summary: Record<string, unknown>;
}

type Item = { k: ChaosKey; hour: number; value: number };

/** Everything the parts of one soak share. */
interface Soak {
  o: Options;
  r: Rng;
  infra: Infra;
  stack: TestStack;
  runId: string;
  keys: ChaosKey[];
  stats: Stats;
  prevMonthStart: number;
  thisMonthStart: number;
  loadStart: number;
  loadEnd: number;
  stopping: () => boolean;
  /** Customers made "not subscribed" for a while, and until when: after that an operator retries them. */
  unsubscribedUntil: Map<string, number>;
  apis: ApiProcesses;
  workers: WorkerProcesses;
}

const hourOf = (s: Soak, ms = Date.now()) => Math.floor(ms / s.o.hourMs) * s.o.hourMs;
const progress = (s: Soak) => (Date.now() - s.loadStart) / s.o.durationMs;
const loading = (s: Soak) => Date.now() < s.loadEnd && !s.stopping();

/** The environment a remit process (worker or API) of this soak runs with. */
function processEnv(s: Soak): NodeJS.ProcessEnv {
  const { stack, o } = s;
  return {
    ...process.env,
    DATABASE_URL: stack.config.databaseUrl,
    TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS,
    TEMPORAL_NAMESPACE: stack.config.temporalNamespace,
    REMIT_TASK_QUEUE: stack.taskQueue,
    REMIT_HOUR_SECONDS: String(o.hourMs / 1000),
    REMIT_GRACE_HOURS: String(stack.config.time.graceHours),
    REMIT_AWS_ACCEPTANCE_HOURS: String(o.awsAcceptanceHours),
    REMIT_AZURE_ACCEPTANCE_HOURS: String(o.azureAcceptanceHours),
    AWS_METERING_ENDPOINT: stack.config.awsMeteringEndpoint,
    AZURE_METERING_ENDPOINT: stack.config.azureMeteringEndpoint,
    AZURE_AUTHORITY_HOST: stack.config.azureAuthorityHost,
    AZURE_TENANT_ID: stack.config.azureTenantId,
    AZURE_CLIENT_ID: stack.config.azureClientId,
    AZURE_CLIENT_SECRET: stack.config.azureClientSecret,
    REMIT_EXTRA_CA_CERT_FILE: stack.config.extraCaCertFile,
    REMIT_INGEST_TOKEN: stack.tokens.ingest,
    REMIT_OPERATOR_TOKEN: stack.tokens.operator,
    LOG_LEVEL: 'error',
  };
}

/** A remit process of this soak (workers/main.ts or api/main.ts), killed by pid on any exit path. */
function spawnRemit(s: Soak, entry: string, env: NodeJS.ProcessEnv = {}): ChildProcess {
  let tail = '';
  const c = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, entry)], { cwd: REPO_ROOT, env: { ...processEnv(s), ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  liveChildren.add(c);
  c.stderr?.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-4000)));
  c.on('exit', (code, sig) => {
    liveChildren.delete(c);
    if (code && !sig) log(`${entry} process ${c.pid} exited ${code}: ${tail.trim().split('\n').slice(-5).join(' | ')}`);
  });
  return c;
}

async function stopProcess(c: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((res) => c.once('exit', res));
  c.kill(signal);
  await Promise.race([exited, sleep(20_000)]);
  if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

// ---------------------------------------------------------------------------------------------
// Worker processes: the stack's in-process worker keeps running (the SDK allows one worker per
// task queue and process, and the stack does not hand out its worker). Two more workers run as
// processes (workers/main.ts, as in production); now and then one is killed with SIGKILL (a crash
// in the middle of whatever it was doing) or stopped with SIGTERM (a deploy), and a new one started.

class WorkerProcesses {
  private children: Array<ChildProcess | undefined> = [undefined, undefined];
  private soak?: Soak;

  start(s: Soak): void {
    this.soak = s;
    if (s.o.processKill) for (let i = 0; i < this.children.length; i++) this.children[i] = spawnRemit(s, 'workers/main.ts');
  }

  async stop(i: number, signal: NodeJS.Signals): Promise<void> {
    const c = this.children[i];
    this.children[i] = undefined;
    await stopProcess(c, signal);
  }

  stopAll(signal: NodeJS.Signals): Promise<unknown> {
    return Promise.all(this.children.map((_, i) => this.stop(i, signal)));
  }

  async loop(): Promise<void> {
    const s = this.soak!;
    if (!s.o.processKill) return;
    let next = Date.now() + s.r.int(5000, 12000);
    while (loading(s)) {
      await sleep(250);
      if (Date.now() < next) continue;
      next = Date.now() + s.r.int(5000, 12000);
      const i = s.r.int(0, this.children.length - 1);
      const graceful = s.r.chance(0.3);
      await this.stop(i, graceful ? 'SIGTERM' : 'SIGKILL');
      if (graceful) s.stats.workerRestarts += 1;
      else s.stats.workerKills += 1;
      await sleep(s.r.int(0, 2000));
      this.children[i] = spawnRemit(s, 'workers/main.ts');
    }
  }
}

// ---------------------------------------------------------------------------------------------
// API processes: two API replicas (api/main.ts, as in production) beside the stack's in-process
// API; tallies go to any of them, and now and then one is killed with SIGKILL (a crash in the
// middle of a request) and started again on the same port. A client whose request died resends
// it, as a usage source must: ingestion is idempotent per key and hour.

class ApiProcesses {
  private children: Array<ChildProcess | undefined> = [];
  private ports: number[] = [];
  urls: string[] = [];

  async start(s: Soak): Promise<void> {
    this.urls = [s.stack.apiUrl];
    if (!s.o.apiKill) return;
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      this.ports.push(port);
      this.children.push(spawnRemit(s, 'api/main.ts', { REMIT_API_PORT: String(port), REMIT_API_HOST: '127.0.0.1' }));
      this.urls.push(`http://127.0.0.1:${port}`);
    }
    await Promise.all(this.urls.slice(1).map((u) => this.waitReady(u, 120_000)));
  }

  private async waitReady(url: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.ok, () => false);
      if (ok) return;
      await sleep(250);
    }
    throw new Error(`API ${url} not ready after ${timeoutMs} ms`);
  }

  async loop(s: Soak): Promise<void> {
    if (!s.o.apiKill) return;
    let next = Date.now() + s.r.int(4000, 10000);
    while (loading(s)) {
      await sleep(250);
      if (Date.now() < next) continue;
      next = Date.now() + s.r.int(4000, 10000);
      const i = s.r.int(0, this.children.length - 1);
      await stopProcess(this.children[i], 'SIGKILL');
      s.stats.apiKills += 1;
      await sleep(s.r.int(0, 2000));
      this.children[i] = spawnRemit(s, 'api/main.ts', { REMIT_API_PORT: String(this.ports[i]), REMIT_API_HOST: '127.0.0.1' });
      await this.waitReady(this.urls[i + 1]!, 120_000).catch((err: Error) => log(err.message));
    }
  }

  stopAll(signal: NodeJS.Signals): Promise<unknown> {
    return Promise.all(this.children.map((c) => stopProcess(c, signal)));
  }
}

/** One HTTP request to one API. */
async function requestAt(base: string, method: string, urlPath: string, body: unknown, token: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${base}${urlPath}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed };
}

/**
 * Sends a request to a random API until one answers below 500, for up to `patienceMs`: the API
 * processes, PostgreSQL and Temporal are restarted under it. A 4xx is a product problem (these
 * requests are valid) and throws at once.
 */
async function patiently(s: Soak, what: string, method: string, urlPath: string, body: unknown, token: string, patienceMs = 120_000): Promise<{ status: number; body: unknown }> {
  const deadline = Date.now() + patienceMs;
  for (let attempt = 1; ; attempt++) {
    const base = s.r.pick(s.apis.urls);
    try {
      const res = await requestAt(base, method, urlPath, body, token);
      if (res.status < 500) {
        if (res.status >= 400) throw Object.assign(new Error(`${what} answered ${res.status}: ${JSON.stringify(res.body).slice(0, 500)}`), { fatal: true });
        return res;
      }
      bump(s.stats.apiErrors, `${what} ${res.status}`);
    } catch (err) {
      if ((err as { fatal?: boolean }).fatal) throw err;
      bump(s.stats.apiErrors, `${what} ${(err as Error).name}`);
    }
    if (Date.now() > deadline) throw new Error(`${what} kept failing for ${patienceMs / 1000} s (APIs, PostgreSQL and Temporal are restarted, but each comes back): a product problem`);
    await sleep(Math.min(2000, 200 * attempt));
  }
}

// ---------------------------------------------------------------------------------------------
// Tallies: three lanes post random batches; the model remembers what each 202 stored

async function postTallies(s: Soak, items: Item[]): Promise<void> {
  const body = { tallies: items.map(({ k, hour, value }) => ({ ...k.tally, hour: new Date(hour).toISOString(), value })) };
  const res = await patiently(s, 'POST /v1/tallies', 'POST', '/v1/tallies', body, s.stack.tokens.ingest);
  if (res.status !== 202) throw new Error(`POST /v1/tallies answered ${res.status}: ${JSON.stringify(res.body).slice(0, 500)}`);
  for (const { k, hour, value } of items) {
    k.values.set(hour, value);
    const p = monthOf(hour);
    k.peakMtd.set(p, Math.max(k.peakMtd.get(p) ?? 0, mtd(k, p)));
  }
  s.stats.batches += 1;
  s.stats.tallies += items.length;
}

/** One random batch for a lane: current, late, corrected, replayed, previous-month tallies. */
function randomBatch(s: Soak, ready: ChaosKey[]): Item[] {
  const { r, o } = s;
  const current = hourOf(s);
  const batch = new Map<string, Item>();
  for (let i = r.int(1, Math.min(6, ready.length)); i > 0; i--) {
    const k = r.pick(ready);
    const past = [...k.values.keys()];
    const kind = r.weighted({ current: 55, late: 15, 'correction-up': 8, 'correction-down': 6, replay: 8, 'previous-month': 4, 'month-boundary': 4 });
    let hour = current;
    let value = r.value(16);
    if (kind === 'late') hour = current - r.int(1, 10) * o.hourMs;
    else if (kind === 'previous-month') hour = s.thisMonthStart - r.int(1, 30) * o.hourMs;
    else if (kind === 'month-boundary') hour = Math.max(s.thisMonthStart, current - r.int(11, 40) * o.hourMs);
    else if (past.length > 0 && kind !== 'current') {
      hour = r.pick(past);
      const was = k.values.get(hour)!;
      value = kind === 'replay' ? was : kind === 'correction-up' ? was + r.value(8) : Math.floor(was * r.next() * 4) / 4;
    } else if (k.values.has(hour)) value = k.values.get(hour)! + r.value(4); // the current hour, measured again
    if (hour > current) hour = current;
    bump(s.stats.kinds, kind);
    batch.set(`${k.label}@${hour}`, { k, hour, value });
  }
  return [...batch.values()];
}

async function tallyLane(s: Soak, n: number, history: Item[][]): Promise<void> {
  const mine = s.keys.filter((k) => k.lane === n);
  if (mine.length === 0) return;
  while (loading(s)) {
    await sleep(s.r.int(60, 300));
    if (!loading(s)) break;
    const ready = mine.filter((k) => !k.contract || k.contract.posted || s.r.chance(0.5));
    if (ready.length === 0) continue;
    // A replay of an earlier batch of this lane, byte for byte (what a redelivering source does).
    const ownHistory = history.filter((b) => b[0]?.k.lane === n);
    if (ownHistory.length > 0 && s.r.chance(0.08)) {
      s.stats.batchReplays += 1;
      bump(s.stats.kinds, 'batch-replay');
      await postTallies(s, s.r.pick(ownHistory));
      continue;
    }
    const items = randomBatch(s, ready);
    await postTallies(s, items);
    history.push(items);
    if (history.length > 400) history.splice(0, 100);
  }
}

// ---------------------------------------------------------------------------------------------
// Contracts: most before any tally, a third only later (their usage waits, then is billed)

function contractsOf(s: Soak): Contract[] {
  return [...new Map(s.keys.filter((k) => k.contract).map((k) => [k.contract!.id, k.contract!])).values()];
}

async function putContract(s: Soak, c: Contract): Promise<void> {
  await patiently(s, `PUT /v1/contracts/${c.id}`, 'PUT', `/v1/contracts/${c.id}`, c.body, s.stack.tokens.ingest);
  c.posted = true;
  s.stats.contracts += 1;
}

async function contractLoop(s: Soak): Promise<void> {
  const contracts = contractsOf(s);
  while (contracts.some((c) => !c.posted)) {
    for (const c of contracts) if (!c.posted && (progress(s) >= c.postAt || !loading(s))) await putContract(s, c);
    // A contract sent again unchanged is a no-op the product must shrug off.
    if (s.r.chance(0.2)) {
      const again = s.r.pick(contracts.filter((c) => c.posted));
      if (again) await putContract(s, again);
    }
    await sleep(500);
  }
}

// ---------------------------------------------------------------------------------------------
// Marketplace faults (the emulators' fault queues)

function injectFault(s: Soak, customers: { aws: string[]; azure: string[] }): void {
  const { r, o, stack } = s;
  const mp = customers.azure.length === 0 || (customers.aws.length > 0 && r.chance(0.65)) ? 'aws' : 'azure';
  const kinds: Partial<Record<FaultKind, number>> = { throttle: 5, 'server-error': 4, timeout: 1.5, 'lost-response': 4, 'not-subscribed': 2.5, expired: 0.7, ...(mp === 'aws' ? { unprocessed: 3 } : {}) };
  const kind = r.weighted(kinds as Record<FaultKind, number>);
  const global = r.chance(0.15) && kind !== 'not-subscribed' && kind !== 'expired';
  const customer = global ? undefined : r.pick(customers[mp]);
  const byDuration = r.chance(kind === 'timeout' ? 0.2 : 0.4);
  const durationMs = Math.round(o.hourMs * (global ? 0.2 + r.next() * 0.6 : 0.5 + r.next() * 2));
  const spec = { kind, ...(byDuration ? { durationMs } : { count: r.int(1, global ? 2 : 4) }), ...(customer ? { match: { customer } } : {}) };
  (mp === 'aws' ? stack.aws.faults : stack.azure.azure.faults).add(spec);
  bump(s.stats.faults, `${mp}:${kind}`);
  if (kind === 'not-subscribed' && customer) s.unsubscribedUntil.set(customer, Math.max(s.unsubscribedUntil.get(customer) ?? 0, Date.now() + (byDuration ? durationMs : o.hourMs * 2)));
}

async function marketplaceFaultLoop(s: Soak): Promise<void> {
  const customers = {
    aws: [...new Set(s.keys.filter((k) => k.tally.billingProvider === 'aws').map((k) => k.customer))],
    azure: [...new Set(s.keys.filter((k) => k.tally.billingProvider === 'azure').map((k) => k.customer))],
  };
  while (loading(s)) {
    injectFault(s, customers);
    await sleep(s.r.int(200, 900));
  }
}

// ---------------------------------------------------------------------------------------------
// Infrastructure faults: Temporal server restarts (cluster only) and PostgreSQL restarts (when
// this script started it), one at a time, each waited for until the part answers again.

async function infraFaultLoop(s: Soak): Promise<void> {
  const { infra, o, r } = s;
  const kinds: Record<string, number> = {
    ...(o.restarts && infra.restartTemporal ? { 'temporal-restart': 2, 'temporal-kill': 1 } : {}),
    ...(o.restarts && infra.postgres ? { 'postgres-restart': 2, 'postgres-crash': 1 } : {}),
  };
  if (Object.keys(kinds).length === 0) return;
  let next = Date.now() + r.int(8000, 15000);
  while (loading(s)) {
    await sleep(250);
    if (Date.now() < next) continue;
    const kind = r.weighted(kinds);
    try {
      let ms: number;
      if (kind === 'temporal-restart') ms = await infra.restartTemporal!('SIGTERM');
      else if (kind === 'temporal-kill') ms = await infra.restartTemporal!('SIGKILL');
      else ms = await restartPostgres(infra.postgres!, kind === 'postgres-crash' ? 'immediate' : 'fast');
      bump(s.stats.infra, kind);
      s.stats.infraDowntimeMs[kind] = Math.max(s.stats.infraDowntimeMs[kind] ?? 0, ms);
      log(`  ${kind}: back after ${(ms / 1000).toFixed(1)} s`);
    } catch (err) {
      bump(s.stats.infra, `${kind}-failed`);
      s.stats.operatorErrors.push(`${kind}: ${(err as Error).message.slice(0, 300)}`);
    }
    next = Date.now() + r.int(8000, 15000);
  }
}

// ---------------------------------------------------------------------------------------------
// Operators: retries, bulk retries by query, reset/recalculate signals, recalculations

type FailedRow = { id: string; workflow_id: string; org_id: string; product_tag: string; remittance_hour: Date; error_code: string; customer: { customerAwsAccountId?: string; resourceId?: string } | null; deadline: Date };
const customerOf = (c: { customerAwsAccountId?: string; resourceId?: string } | null) => c?.customerAwsAccountId ?? c?.resourceId ?? '';
const failedQuery = (s: Soak, code?: string) => `RemittanceStatus="Failed"${code ? ` AND RemittanceErrorCode="${code}"` : ''} AND TaskQueue="${s.stack.taskQueue}"`;

async function bulkSignal(s: Soak, query: string, name: string, reason: string): Promise<void> {
  const cli = s.infra.cliPath;
  if (cli) {
    await run(cli, ['workflow', 'signal', '--address', process.env.TEMPORAL_ADDRESS!, '--namespace', s.stack.config.temporalNamespace, '--query', query, '--name', name, '--input', JSON.stringify({ actor: 'chaos', reason }), '--reason', reason, '--yes'], { timeout: 30_000 }).catch((err: Error & { stderr?: string }) => {
      throw new Error(`temporal workflow signal --query failed: ${(err.stderr ?? '').trim().split('\n').slice(-2).join(' ') || err.message}`);
    });
  } else {
    for await (const wf of s.stack.client.workflow.list({ query })) await s.stack.client.workflow.getHandle(wf.workflowId).signal(name, { actor: 'chaos', reason }).catch(() => undefined);
  }
}

async function operatorStep(s: Soak): Promise<void> {
  const { r, stack } = s;
  const action = r.weighted({ 'retry-api': 3, 'bulk-retry': 2, 'signal-retry': 2, 'signal-reset': 1, 'signal-recalculate': 1, 'recalculate-api': 1, 'retry-expired-api': 1 });
  const failed = (await stack.database.pool.query<FailedRow>(`SELECT id, workflow_id, org_id, product_tag, remittance_hour, error_code, customer, deadline FROM remittances WHERE status = 'Failed' AND deadline > now()`)).rows;
  // Only customers whose subscription is back: an operator retries after fixing the cause.
  const fixed = failed.filter((f) => f.error_code !== 'marketplace_customer_not_subscribed' || (s.unsubscribedUntil.get(customerOf(f.customer)) ?? 0) < Date.now());
  const one = fixed.length ? r.pick(fixed) : undefined;
  const range = (h: Date) => ({ start: new Date(h.getTime()).toISOString(), end: new Date(h.getTime() + 1).toISOString() });
  switch (action) {
    case 'retry-api': {
      if (!one) return;
      const body = { productTag: one.product_tag, ...range(one.remittance_hour), orgIds: [one.org_id], dryRun: true };
      const preview = await stack.request('POST', '/v1/remittances/retry', body);
      if (preview.status !== 200) throw new Error(`retry dry run answered ${preview.status}: ${JSON.stringify(preview.body)}`);
      const done = await stack.request('POST', '/v1/remittances/retry', { ...body, dryRun: false });
      if (done.status !== 200) throw new Error(`retry answered ${done.status}: ${JSON.stringify(done.body)}`);
      break;
    }
    case 'bulk-retry':
      if (!fixed.length) return;
      await bulkSignal(s, failedQuery(s), 'retry', 'chaos: bulk retry by query');
      break;
    case 'signal-retry':
    case 'signal-reset':
    case 'signal-recalculate':
      if (!one) return;
      await stack.client.workflow.getHandle(one.workflow_id).signal(action.slice('signal-'.length), { actor: 'chaos', reason: `chaos ${action}` });
      break;
    case 'recalculate-api': {
      const k = r.pick(s.keys.filter((x) => x.values.size > 0));
      if (!k) return;
      // Deliberately wider than the per-request bound (a month of scaled hours): forced.
      const body = { productTag: k.tally.productTag, start: new Date(s.prevMonthStart).toISOString(), end: new Date(Date.now() + s.o.hourMs).toISOString(), orgIds: [k.tally.orgId], dryRun: r.chance(0.5), force: true };
      const res = await stack.request('POST', '/v1/remittances/recalculate', body);
      if (res.status !== 200) throw new Error(`recalculate answered ${res.status}: ${JSON.stringify(res.body)}`);
      break;
    }
    case 'retry-expired-api': {
      const ex = (await stack.database.pool.query(`SELECT org_id, product_tag, remittance_hour FROM remittances WHERE status = 'Expired' ORDER BY random() LIMIT 1`)).rows[0];
      if (!ex) return;
      const res = await stack.request('POST', '/v1/remittances/retry', { productTag: ex.product_tag, ...range(ex.remittance_hour), orgIds: [ex.org_id], status: ['Expired'], dryRun: false });
      if (res.status !== 200) throw new Error(`retry of Expired answered ${res.status}: ${JSON.stringify(res.body)}`);
      break;
    }
  }
  bump(s.stats.operator, action);
}

async function operatorLoop(s: Soak): Promise<void> {
  while (loading(s)) {
    await sleep(s.r.int(1500, 4000));
    if (!loading(s)) break;
    await operatorStep(s).catch((err: Error) => {
      bump(s.stats.operator, 'errors');
      if (s.stats.operatorErrors.length < 10) s.stats.operatorErrors.push(err.message.slice(0, 300));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Phases

async function startSoak(o: Options, infra: Infra, onStack: (s: TestStack) => void, stopping: () => boolean): Promise<Soak> {
  const r = rng(o.seed);
  const runId = randomUUID().slice(0, 6);
  const now0 = Date.now();
  const prevMonthStart = monthStartMs(previousMonth(monthOf(now0)));
  const keys = buildKeys(o, r, runId, new Date(prevMonthStart).toISOString());
  const stats: Stats = { batches: 0, tallies: 0, kinds: {}, batchReplays: 0, apiErrors: {}, contracts: 0, faults: {}, workerRestarts: 0, workerKills: 0, apiKills: 0, infra: {}, infraDowntimeMs: {}, operator: {}, operatorErrors: [] };
  log(`seed ${o.seed}, run ${runId} on the ${infra.kind}: ${keys.length} keys, ${o.durationMs / 1000} s of load with ${o.hourMs / 1000}-second hours (AWS window ${o.awsAcceptanceHours} h = ${(o.awsAcceptanceHours * o.hourMs) / 1000} s, Azure ${o.azureAcceptanceHours} h)`);
  const stack = await startTestStack({
    hourMs: o.hourMs,
    graceHours: 0.25,
    awsAcceptanceHours: o.awsAcceptanceHours,
    sweep: true,
    env: { REMIT_AZURE_ACCEPTANCE_HOURS: String(o.azureAcceptanceHours) },
  });
  onStack(stack);
  log(`stack up: API ${stack.apiUrl}, AWS emulator ${stack.aws.url}, Azure emulator ${stack.azure.azure.url}, task queue ${stack.taskQueue}`);
  const s: Soak = { o, r, infra, stack, runId, keys, stats, prevMonthStart, thisMonthStart: monthStartMs(monthOf(now0)), loadStart: 0, loadEnd: 0, stopping, unsubscribedUntil: new Map(), apis: new ApiProcesses(), workers: new WorkerProcesses() };
  s.workers.start(s);
  await s.apis.start(s);
  if (s.apis.urls.length > 1) log(`API replicas (killed now and then): ${s.apis.urls.slice(1).join(' ')}`);
  for (const c of contractsOf(s).filter((c) => c.postAt === 0)) await putContract(s, c);
  return s;
}

async function loadPhase(s: Soak): Promise<number> {
  const { o, stats, stack } = s;
  s.loadStart = Date.now();
  s.loadEnd = s.loadStart + o.durationMs;
  const parts = ['tallies', 'marketplace faults', ...(o.processKill ? ['worker restarts and kills'] : []), ...(o.apiKill ? ['API kills'] : []), ...(o.restarts && s.infra.restartTemporal ? ['Temporal server restarts'] : []), ...(o.restarts && s.infra.postgres ? ['PostgreSQL restarts'] : []), 'operator actions'];
  log(`load phase: ${o.durationMs / 1000} s of ${parts.join(', ')} ...`);
  const ticker = setInterval(() => {
    log(`  t+${Math.round((Date.now() - s.loadStart) / 1000)} s: ${stats.tallies} tallies in ${stats.batches} batches, ${Object.values(stats.faults).reduce((a, b) => a + b, 0)} faults, ${stats.workerRestarts} restarts, ${stats.workerKills} worker kills, ${stats.apiKills} API kills, infra ${JSON.stringify(stats.infra)}, ${stack.aws.records().length + stack.azure.azure.records().length} records accepted`);
  }, 10_000);
  const history: Item[][] = [];
  try {
    await Promise.all([tallyLane(s, 0, history), tallyLane(s, 1, history), tallyLane(s, 2, history), contractLoop(s), marketplaceFaultLoop(s), s.workers.loop(), s.apis.loop(s), infraFaultLoop(s), operatorLoop(s)]);
  } finally {
    clearInterval(ticker);
  }
  return Date.now() - s.loadStart;
}

/** Wait until nothing is in flight, nothing owes and a sweep ran since `since`. */
async function waitQuiet(s: Soak, since: number, last: { state: Record<string, unknown> }): Promise<boolean> {
  const { o, stack } = s;
  const sweepId = sweepScheduleId(stack.taskQueue);
  const deadline = since + o.maxQuietHours * o.hourMs;
  let stableSince: number | undefined;
  while (Date.now() < deadline && !s.stopping()) {
    await sleep(Math.max(250, o.hourMs / 4));
    const inFlight = Number((await stack.database.pool.query(`SELECT COUNT(*)::int AS n FROM remittances WHERE status IN ('Pending','Sending')`)).rows[0].n);
    const owing = Number((await stack.database.pool.query('SELECT COUNT(*)::int AS n FROM remittance_keys WHERE change_seq > computed_seq')).rows[0].n);
    const desc = await stack.client.schedule.getHandle(sweepId).describe().catch(() => undefined);
    const sweptAfterQuiet = (desc?.info.recentActions ?? []).some((a) => a.takenAt.getTime() > since);
    last.state = { inFlight, owing, sweptAfterQuiet };
    if (inFlight === 0 && owing === 0 && sweptAfterQuiet) stableSince ??= Date.now();
    else stableSince = undefined;
    if (stableSince !== undefined && Date.now() - stableSince >= 2 * o.hourMs && Date.now() - since >= 3 * o.hourMs) return true;
  }
  return false;
}

/**
 * The runbook's step for sends that ended Unconfirmed and that the marketplace does not hold
 * (their answers were lost until the window closed): the audit names them; reset those hours,
 * each remittance by its org and metric, with a preview first, only if the preview names
 * remittances of that record. Returns how many records were reset.
 */
async function resetMissingUnconfirmed(s: Soak): Promise<number> {
  const { stack, stats } = s;
  const pre = await stack.audit();
  const missing = [...new Map(pre.violations.filter((v) => v.recordId && v.message.startsWith('unconfirmed record the marketplace does not have')).map((v) => [v.recordId, v])).values()];
  for (const v of missing) {
    const rows = (await stack.database.pool.query(`SELECT id, product_tag, metric, org_id, remittance_hour FROM remittances WHERE record_id = $1 AND status = 'Unconfirmed'`, [v.recordId])).rows;
    const ofRecord = new Set(rows.map((x) => x.id as string));
    for (const row of rows) {
      const at = new Date(row.remittance_hour).getTime();
      const body = { productTag: row.product_tag, metric: row.metric, start: new Date(at).toISOString(), end: new Date(at + 1).toISOString(), orgIds: [row.org_id], dryRun: true };
      const preview = await stack.request('POST', '/v1/remittances/reset', body);
      const ids = preview.status === 200 ? (preview.body.changes as Array<{ remittanceId: string }>).map((c) => c.remittanceId) : [];
      if (ids.length === 0 || !ids.every((id) => ofRecord.has(id))) {
        stats.operatorErrors.push(`reset of unconfirmed record ${v.recordId} not done: the preview would change ${JSON.stringify(ids)}`);
        continue;
      }
      const res = await stack.request('POST', '/v1/remittances/reset', { ...body, dryRun: false });
      if (res.status === 200) bump(stats.operator, 'reset-unconfirmed');
      else stats.operatorErrors.push(`reset of unconfirmed ${row.id}: ${res.status}`);
    }
  }
  return missing.length;
}

/**
 * Faults cleared, every customer made whole again (a not-subscribed fault is the customer's
 * subscription lapsing; clearing the faults is the subscription being fixed, and the failed hours
 * still waiting are retried by query, as an operator would), then wait until the system settles.
 */
async function quietPhase(s: Soak): Promise<{ settled: boolean; quietMs: number; last: Record<string, unknown> }> {
  const { o, stack, stats } = s;
  log('quiet phase: faults cleared, customers subscribed again, waiting for the system to settle ...');
  stack.aws.faults.clear();
  stack.azure.azure.faults.clear();
  const quietStart = Date.now();
  s.unsubscribedUntil.clear();
  await Promise.all([s.workers.stopAll('SIGTERM'), s.apis.stopAll('SIGTERM')]);
  await bulkSignal(s, failedQuery(s, 'marketplace_customer_not_subscribed'), 'retry', 'chaos: subscriptions fixed').then(
    () => bump(stats.operator, 'final-bulk-retry'),
    (err: Error) => stats.operatorErrors.push(`final bulk retry: ${err.message.slice(0, 300)}`),
  );
  const last = { state: {} as Record<string, unknown> };
  let settled = await waitQuiet(s, quietStart, last);
  if (settled) {
    const reset = await resetMissingUnconfirmed(s);
    if (reset > 0) {
      log(`reset ${reset} unconfirmed hour(s) the marketplace does not hold; waiting for them to be billed ...`);
      settled = await waitQuiet(s, Date.now(), last);
    }
  }
  const quietMs = Date.now() - quietStart;
  log(settled ? `quiet after ${(quietMs / 1000).toFixed(1)} s (${(quietMs / o.hourMs).toFixed(1)} scaled hours)` : `NOT quiet after ${(quietMs / 1000).toFixed(1)} s: ${JSON.stringify(last.state)}`);
  return { settled, quietMs, last: last.state };
}

type LedgerRow = { id: string; key: string; status: string; error_code: string | null; workflow_id: string | null; bill: number; customer: { customerAwsAccountId?: string; resourceId?: string } | null };

/** 2. The independent model: per marketplace, customer and dimension, what was accepted against what the billing rules say the posted tallies owe. */
function checkModel(s: Soak, violations: Violation[]): { owedLo: number; owedHi: number } {
  const accepted = new Map<string, { n: number; q: number }>();
  for (const [mp, recs] of [['aws', s.stack.aws.records()], ['azure', s.stack.azure.azure.records()]] as const) {
    for (const rec of recs) {
      const slot = `${mp}|${rec.customer}|${rec.dimension}`;
      const a = accepted.get(slot) ?? { n: 0, q: 0 };
      accepted.set(slot, { n: a.n + 1, q: a.q + rec.quantity });
    }
  }
  const expected = new Map<string, { lo: number; hi: number; keys: string[] }>();
  for (const k of s.keys) {
    const slot = `${k.tally.billingProvider}|${k.customer}|${k.dimension}`;
    const e = expected.get(slot) ?? { lo: 0, hi: 0, keys: [] };
    const w = owed(k);
    expected.set(slot, { lo: e.lo + w.lo, hi: e.hi + w.hi, keys: [...e.keys, k.label] });
  }
  let owedLo = 0;
  let owedHi = 0;
  for (const [slot, e] of expected) {
    owedLo += e.lo;
    owedHi += e.hi;
    const got = accepted.get(slot)?.q ?? 0;
    if (got < e.lo) violations.push({ source: 'model', invariant: 'nothing-lost', customer: slot, message: `${slot} (${e.keys.join(', ')}): the marketplace accepted ${got} billing unit(s), the tallies posted owe ${e.lo === e.hi ? e.lo : `${e.lo}..${e.hi}`}: ${e.lo - got} missing` });
    if (got > e.hi) violations.push({ source: 'model', invariant: 'nothing-twice', customer: slot, message: `${slot} (${e.keys.join(', ')}): the marketplace accepted ${got} billing unit(s), the tallies posted owe at most ${e.hi}: ${got - e.hi} billed too much` });
  }
  for (const slot of accepted.keys()) if (!expected.has(slot)) violations.push({ source: 'model', invariant: 'nothing-twice', customer: slot, message: `${slot}: records for a customer and dimension this run never billed` });
  return { owedLo, owedHi };
}

/**
 * 4. Nothing hidden in Temporal: each remittance's status (and error code when failed or
 * expired) in the search attributes of its workflow. Visibility is eventually consistent.
 */
async function checkVisibility(s: Soak, ledger: LedgerRow[]): Promise<Violation[]> {
  let hidden: Violation[] = [];
  for (let attempt = 0; attempt < 10; attempt++) {
    const seen = new Map<string, { status?: string; code?: string; start: number }>();
    for await (const wf of s.stack.client.workflow.list({ query: `TaskQueue="${s.stack.taskQueue}" AND WorkflowType="marketplaceRecordWorkflow"` })) {
      const prev = seen.get(wf.workflowId);
      if (prev && prev.start > wf.startTime.getTime()) continue;
      seen.set(wf.workflowId, { status: wf.typedSearchAttributes.get(SA.RemittanceStatus), code: wf.typedSearchAttributes.get(SA.RemittanceErrorCode), start: wf.startTime.getTime() });
    }
    hidden = [];
    for (const row of ledger) {
      // An hour with nothing to show (NothingDue, Gratis) has no workflow by design.
      if (!row.workflow_id) continue;
      const wf = seen.get(row.workflow_id);
      if (!wf) hidden.push({ source: 'temporal', invariant: 'nothing-hidden', remittanceId: row.id, key: row.key, message: `remittance ${row.status} has no workflow ${row.workflow_id} in Temporal visibility` });
      // An API reset voids an hour after its workflow ended: the closed workflow keeps its final
      // status; the ledger, the API and the audit log say Voided, and the current hour's workflow
      // shows the amount being billed again. That is the one legitimate difference.
      else if (row.status === 'Voided' && (wf.status === 'Succeeded' || wf.status === 'Unconfirmed' || wf.status === 'Gratis')) continue;
      else if (wf.status !== row.status) hidden.push({ source: 'temporal', invariant: 'nothing-hidden', remittanceId: row.id, key: row.key, message: `ledger says ${row.status}${row.error_code ? ` (${row.error_code})` : ''}, the Web UI shows RemittanceStatus=${wf.status ?? '(none)'} for ${row.workflow_id}` });
      else if ((row.status === 'Failed' || row.status === 'Expired') && wf.code !== (row.error_code ?? undefined)) hidden.push({ source: 'temporal', invariant: 'nothing-hidden', remittanceId: row.id, key: row.key, message: `ledger error code ${row.error_code}, the Web UI shows RemittanceErrorCode=${wf.code ?? '(none)'} for ${row.workflow_id}` });
    }
    if (hidden.length === 0) break;
    await sleep(1000);
  }
  return hidden;
}

interface Checks {
  violations: Violation[];
  audit: { ok: boolean; checked: unknown };
  owedLo: number;
  owedHi: number;
  ledger: LedgerRow[];
}

async function checkInvariants(s: Soak, quiet: { settled: boolean; last: Record<string, unknown> }): Promise<Checks> {
  const { o, stack } = s;
  const violations: Violation[] = [];
  if (!quiet.settled) violations.push({ source: 'model', invariant: 'nothing-lost', message: `the system did not go quiet within ${o.maxQuietHours} scaled hours after the faults stopped: ${JSON.stringify(quiet.last)}` });
  // 1. remit audit.
  const audit = await stack.audit();
  for (const v of audit.violations) violations.push({ source: 'audit', invariant: v.invariant, message: v.message, key: v.key, remittanceId: v.remittanceId });
  const { owedLo, owedHi } = checkModel(s, violations);
  // 3. No AWS DuplicateRecord answer: only the product's own retries could cause one here.
  const dupCalls = stack.aws.calls().filter((c) => c.duplicates > 0);
  if (dupCalls.length) violations.push({ source: 'duplicates', invariant: 'nothing-twice', message: `AWS answered DuplicateRecord for ${dupCalls.reduce((sum, c) => sum + c.duplicates, 0)} record(s) in ${dupCalls.length} call(s) (request ids ${dupCalls.slice(0, 5).map((c) => c.requestId).join(', ')})` });
  const ledger = (await stack.database.pool.query<LedgerRow>('SELECT id, key, status, error_code, workflow_id, bill, customer FROM remittances ORDER BY remittance_hour')).rows;
  violations.push(...(await checkVisibility(s, ledger)));
  return { violations, audit: { ok: audit.ok, checked: audit.checked }, owedLo, owedHi, ledger };
}

async function summarize(s: Soak, loadMs: number, quiet: { settled: boolean; quietMs: number }, checks: Checks): Promise<Record<string, unknown>> {
  const { o, stats, stack } = s;
  const { violations } = checks;
  const summaryApi = await stack.request('GET', '/v1/remittances/summary?groupBy=billingProvider');
  const byStatus: Record<string, Record<string, { remittances: number; quantity: number }>> = {};
  for (const g of (summaryApi.body?.groups ?? []) as Array<{ billingProvider: string; status: string; remittances: number; quantity: number }>) {
    (byStatus[g.billingProvider] ??= {})[g.status] = { remittances: g.remittances, quantity: g.quantity };
  }
  const awsRecords = stack.aws.records();
  const azureRecords = stack.azure.azure.records();
  const awsCalls = stack.aws.calls();
  return {
    ok: violations.length === 0,
    seed: o.seed,
    temporal: s.infra.kind,
    hourSeconds: o.hourMs / 1000,
    loadSeconds: Math.round(loadMs / 100) / 10,
    quietSeconds: Math.round(quiet.quietMs / 100) / 10,
    settled: quiet.settled,
    keys: s.keys.length,
    tallies: stats.tallies,
    batches: stats.batches,
    tallyKinds: stats.kinds,
    contracts: stats.contracts,
    apiErrors: stats.apiErrors,
    faults: Object.values(stats.faults).reduce((a, b) => a + b, 0),
    faultsByKind: stats.faults,
    workerRestarts: stats.workerRestarts,
    workerKills: stats.workerKills,
    apiKills: stats.apiKills,
    infraFaults: stats.infra,
    infraLongestDowntimeMs: stats.infraDowntimeMs,
    operator: stats.operator,
    remittances: byStatus,
    accepted: {
      aws: { records: awsRecords.length, quantity: awsRecords.reduce((sum, x) => sum + x.quantity, 0) },
      azure: { records: azureRecords.length, quantity: azureRecords.reduce((sum, x) => sum + x.quantity, 0) },
    },
    marketplaceCalls: {
      aws: awsCalls.length,
      awsFaulted: awsCalls.filter((c) => c.outcome !== 'ok').length,
      azure: stack.azure.azure.calls().length,
      azureFaulted: stack.azure.azure.calls().filter((c) => c.outcome !== 'ok').length,
    },
    owed: checks.owedLo === checks.owedHi ? checks.owedLo : `${checks.owedLo}..${checks.owedHi}`,
    audit: checks.audit,
    violations: violations.length,
    violationsBySource: violations.reduce<Record<string, number>>((m, v) => (bump(m, `${v.source}:${v.invariant}`), m), {}),
  };
}

/** When something is wrong: the ledger rows, records, calls and histories of the customers involved, to .remit/chaos-<time>.json. */
async function writeEvidence(s: Soak, summary: Record<string, unknown>, checks: Checks): Promise<string> {
  const { stack, keys, stats } = s;
  const { violations, ledger } = checks;
  // The keys involved: those named by a violation, and every key billed to a customer named by one.
  const keyStringOf = (k: ChaosKey) => [k.tally.billingProvider, k.tally.billingAccountId, k.tally.orgId, k.tally.productTag, k.tally.metric, k.tally.sla, k.tally.usage].join('|');
  const customersInvolved = new Set<string>();
  for (const v of violations) {
    if (v.customer) customersInvolved.add(v.customer.split('|')[1] ?? '');
    const row = ledger.find((x) => x.id === v.remittanceId);
    if (row) customersInvolved.add(customerOf(row.customer));
    const k = keys.find((x) => keyStringOf(x) === v.key);
    if (k) customersInvolved.add(k.customer);
  }
  const involvedKeys = keys.filter((k) => customersInvolved.has(k.customer));
  const involved = new Set(involvedKeys.map(keyStringOf));
  const evidence = {
    summary,
    violations,
    operatorErrors: stats.operatorErrors,
    keys: involvedKeys.map((k) => ({ label: k.label, key: keyStringOf(k), customer: k.customer, dimension: k.dimension, bf: k.bf, coverage: k.coverage, owed: owed(k), values: Object.fromEntries([...k.values].sort(([a], [b]) => a - b).map(([h, v]) => [new Date(h).toISOString(), v])) })),
    ledger: (await stack.database.pool.query(`SELECT r.*, (SELECT json_agg(p) FROM remittance_parts p WHERE p.remittance_id = r.id) AS parts FROM remittances r WHERE r.key = ANY($1) ORDER BY key, remittance_hour`, [[...involved]])).rows,
    remittanceKeys: (await stack.database.pool.query('SELECT * FROM remittance_keys WHERE key = ANY($1) ORDER BY key', [[...involved]])).rows,
    tallies: (await stack.database.pool.query('SELECT key, hour, value, received_at FROM tallies WHERE key = ANY($1) ORDER BY key, hour', [[...involved]])).rows,
    awsRecords: stack.aws.records().filter((x) => customersInvolved.has(x.customer)),
    azureRecords: stack.azure.azure.records().filter((x) => customersInvolved.has(x.customer)),
    awsCalls: stack.aws.calls().filter((c) => c.outcome !== 'ok' || c.duplicates > 0).slice(-500),
    auditLog: (await stack.database.pool.query('SELECT * FROM audit_log ORDER BY id')).rows.slice(-300),
    histories: {} as Record<string, string[]>,
  };
  // What Temporal did for each remittance of the keys involved (bounded: 80 workflows).
  for (const row of ledger.filter((x) => involved.has(x.key) && x.workflow_id).slice(-80)) {
    evidence.histories[row.workflow_id!] = await historyOf(stack, row.workflow_id!).catch((err: Error) => [`(history unavailable: ${err.message})`]);
  }
  const dir = path.join(REPO_ROOT, '.remit');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `chaos-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(evidence, null, 1));
  return path.relative(process.cwd(), file);
}

/** The whole soak: start, load with faults, quiet, checks, summary (and evidence when something is wrong). */
async function soak(o: Options, infra: Infra, onStack: (s: TestStack) => void, stopping: () => boolean): Promise<Result> {
  const s = await startSoak(o, infra, onStack, stopping);
  try {
    const loadMs = await loadPhase(s);
    const quiet = await quietPhase(s);
    const checks = await checkInvariants(s, quiet);
    const summary = await summarize(s, loadMs, quiet, checks);
    if (checks.violations.length) summary.evidence = await writeEvidence(s, summary, checks);
    return { violations: checks.violations, summary };
  } finally {
    await Promise.all([s.workers.stopAll('SIGKILL'), s.apis.stopAll('SIGKILL')]);
  }
}

/** A workflow's history as one line per event: time, type, and what matters for a post-mortem. */
async function historyOf(stack: TestStack, workflowId: string): Promise<string[]> {
  const h = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  const scheduled = new Map<string, string>();
  return (h.events ?? []).map((e) => {
    const t = e.eventTime?.seconds ? new Date(Number(e.eventTime.seconds) * 1000 + Math.floor((e.eventTime.nanos ?? 0) / 1e6)).toISOString().slice(11, 23) : '?';
    const type = (temporal.api.enums.v1.EventType[e.eventType ?? 0] ?? String(e.eventType)).replace(/^EVENT_TYPE_/, '');
    let detail = '';
    if (e.activityTaskScheduledEventAttributes) {
      detail = e.activityTaskScheduledEventAttributes.activityType?.name ?? '';
      scheduled.set(String(e.eventId), detail);
    }
    const ref = (id: unknown) => scheduled.get(String(id)) ?? '';
    if (e.activityTaskStartedEventAttributes) detail = `${ref(e.activityTaskStartedEventAttributes.scheduledEventId)} attempt ${e.activityTaskStartedEventAttributes.attempt} by ${e.activityTaskStartedEventAttributes.identity}`;
    if (e.activityTaskCompletedEventAttributes) detail = ref(e.activityTaskCompletedEventAttributes.scheduledEventId);
    if (e.activityTaskFailedEventAttributes) detail = `${ref(e.activityTaskFailedEventAttributes.scheduledEventId)}: ${e.activityTaskFailedEventAttributes.failure?.message ?? ''}`;
    if (e.activityTaskTimedOutEventAttributes) detail = `${ref(e.activityTaskTimedOutEventAttributes.scheduledEventId)}: ${e.activityTaskTimedOutEventAttributes.failure?.message ?? ''} / ${e.activityTaskTimedOutEventAttributes.failure?.cause?.message ?? ''}`;
    if (e.workflowExecutionSignaledEventAttributes) detail = e.workflowExecutionSignaledEventAttributes.signalName ?? '';
    if (e.workflowTaskFailedEventAttributes) detail = e.workflowTaskFailedEventAttributes.failure?.message ?? '';
    if (e.timerStartedEventAttributes) detail = `${Number(e.timerStartedEventAttributes.startToFireTimeout?.seconds ?? 0) + (e.timerStartedEventAttributes.startToFireTimeout?.nanos ?? 0) / 1e9} s`;
    return `${t} ${type}${detail ? ` ${detail.slice(0, 300)}` : ''}`;
  });
}

function printSummary(s: Record<string, unknown>, violations: Violation[]): void {
  const out = (l = '') => process.stdout.write(`${l}\n`);
  const j = (v: unknown) => JSON.stringify(v);
  out('');
  out('remit chaos soak');
  out(`  seed ${s.seed}, ${s.hourSeconds}-second hours, load ${s.loadSeconds} s, quiet ${s.quietSeconds} s${s.settled ? '' : ' (NOT settled)'}`);
  out(`  tallies posted     ${s.tallies} in ${s.batches} batches for ${s.keys} keys; ${j(s.tallyKinds)}; contracts put ${s.contracts}`);
  out(`  faults injected    ${s.faults}: ${j(s.faultsByKind)}`);
  out(`  temporal           ${s.temporal}`);
  out(`  worker processes   ${s.workerKills} killed with SIGKILL, ${s.workerRestarts} stopped with SIGTERM, each replaced`);
  out(`  API processes      ${s.apiKills} killed with SIGKILL, each replaced`);
  out(`  infrastructure     ${j(s.infraFaults)}; longest time to answer again (ms) ${j(s.infraLongestDowntimeMs)}`);
  out(`  operator actions   ${j(s.operator)}`);
  out(`  remittances        ${j(s.remittances)}`);
  out(`  records accepted   ${j(s.accepted)} (owed by the model: ${s.owed} units); marketplace calls ${j(s.marketplaceCalls)}`);
  out(`  audit              ${j(s.audit)}`);
  out(`  violations         ${violations.length}${violations.length ? ` ${j(s.violationsBySource)}` : ''}`);
  for (const v of violations.slice(0, 40)) out(`    [${v.source}/${v.invariant}] ${v.message}${v.remittanceId ? ` (remittance ${v.remittanceId})` : ''}${v.key ? ` key ${v.key}` : ''}`);
  if (violations.length > 40) out(`    ... and ${violations.length - 40} more`);
  if (s.evidence) out(`  evidence           ${s.evidence}`);
}

async function main(): Promise<number> {
  let o: Options | 'help';
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`chaos: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (o === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const opts = o;
  let infra: Infra | undefined;
  let stack: TestStack | undefined;
  let interrupted = false;
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const c of liveChildren) c.kill('SIGKILL');
      if (stack) await stack.stop().catch((err: Error) => log(`stopping the stack: ${err.message}`));
      await infra?.stop();
    })());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (interrupted) return;
      interrupted = true;
      log(`${sig}: stopping the soak and everything it started ...`);
      setTimeout(() => void cleanup().then(() => process.exit(130)), 5_000).unref();
    });
  }
  // The product runs in this process too (the stack's API and worker): an error it leaves
  // unhandled is a finding, and must not leave the cluster, PostgreSQL and children running.
  process.once('uncaughtException', (err) => {
    log(`FAILED: an uncaught error in the soak's process (product code runs here): ${err.stack ?? String(err)}`);
    process.stdout.write(`${JSON.stringify({ ok: false, error: `uncaught: ${err.message}` })}\n`);
    void cleanup().finally(() => process.exit(1));
  });
  try {
    infra = await startInfra(opts);
    const { violations, summary } = await soak(opts, infra, (s) => (stack = s), () => interrupted);
    await cleanup();
    printSummary(summary, violations);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return interrupted ? 130 : violations.length ? 1 : 0;
  } catch (err) {
    log(`FAILED: ${(err as Error).stack ?? String(err)}`);
    await cleanup();
    process.stdout.write(`${JSON.stringify({ ok: false, error: (err as Error).message })}\n`);
    return 1;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  },
);
