// The floor of any workflow-per-record design on a given Temporal server: how many minimal
// workflows (scripts/bench/floor-workflow.ts: one local activity, one search-attribute upsert, 7 history
// events) it completes a second, started in bulk as a schedule would at window close, run by a
// small worker in this process. `npm run bench` measures it on a fresh in-memory dev server (the
// fastest this machine's dev server gets) and compares the end-to-end drain against it.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker, bundleWorkflowCode } from '@temporalio/worker';
import { startTemporalDevServer } from '../lib/temporal-cli';
import { FLOOR_SEARCH_ATTRIBUTE, type FloorActivities } from './floor-workflow';
import { cpuSeconds } from './procs';

export interface FloorRun {
  workflows: number;
  /** From the first start to the last completion seen by visibility, ms. */
  elapsedMs: number;
  workflowsPerSecond: number;
  /** Events in one history (sampled), to show the workflow is the 7-event one. */
  historyEvents: number;
  /** CPU share of the Temporal server and of this process (worker and client) while it ran, % of one core. */
  cpuPercent: { temporal: number | null; benchProcess: number };
}

export interface FloorBench extends FloorRun {
  server: string;
}

const round = (v: number, digits = 1): number => Math.round(v * 10 ** digits) / 10 ** digits;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let runtimeInstalled = false;
function installRuntime() {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
  } catch {
    // Already installed by someone else in this process: theirs is fine.
  }
}

/**
 * Starts `n` minimal workflows on the server at `address` (its own task queue), runs them with a
 * worker in this process, and times first start to last completion. The server must know the
 * RemitBenchFloorState search attribute (FLOOR_DEV_SERVER_ARGS).
 */
export async function measureMinimalWorkflowRate(o: { address: string; namespace?: string; n: number; serverPid?: number; log?: (l: string) => void }): Promise<FloorRun> {
  const log = o.log ?? (() => undefined);
  const namespace = o.namespace ?? 'default';
  installRuntime();
  const taskQueue = `bench-floor-${randomBytes(4).toString('hex')}`;
  const workflowBundle = await bundleWorkflowCode({ workflowsPath: require.resolve('./floor-workflow'), logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} } as never });
  const nativeConnection = await NativeConnection.connect({ address: o.address });
  const connection = await Connection.connect({ address: o.address });
  const client = new Client({ connection, namespace });
  const activities: FloorActivities = { floorStep: async (n) => n + 1 };
  const worker = await Worker.create({ connection: nativeConnection, namespace, taskQueue, workflowBundle, activities });
  const running = worker.run();
  try {
    // One warm-up workflow: the worker's first task pays for the bundle's isolate.
    await client.workflow.execute('benchFloorWorkflow', { taskQueue, workflowId: `${taskQueue}-warm`, args: [0] });
    const ids = Array.from({ length: o.n }, (_, i) => `${taskQueue}-${i}`);
    const query = `TaskQueue = "${taskQueue}" AND ExecutionStatus = "Completed"`;
    const cpu0 = process.cpuUsage();
    const server0 = o.serverPid ? cpuSeconds([o.serverPid]) : null;
    const t0 = performance.now();
    let next = 0;
    const starts = Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < ids.length) {
          const i = next++;
          await client.workflow.start('benchFloorWorkflow', { taskQueue, workflowId: ids[i]!, args: [i] });
        }
      }),
    );
    let done = 0;
    let startsFailed: unknown;
    starts.catch((err: unknown) => (startsFailed = err));
    const deadline = Date.now() + Math.max(600_000, o.n * 200);
    while (done < o.n + 1) {
      if (startsFailed) throw startsFailed;
      if (Date.now() > deadline) throw new Error(`only ${done - 1} of ${o.n} minimal workflows completed in time`);
      await sleep(250);
      done = (await client.workflow.count(query)).count;
    }
    const elapsedMs = performance.now() - t0;
    await starts;
    const cpu = process.cpuUsage(cpu0);
    const server1 = o.serverPid ? cpuSeconds([o.serverPid]) : null;
    let historyEvents = 0;
    for await (const _ of (await client.workflow.getHandle(ids[0]!).fetchHistory()).events ?? []) historyEvents++;
    const run: FloorRun = {
      workflows: o.n,
      elapsedMs: round(elapsedMs),
      workflowsPerSecond: round((o.n / elapsedMs) * 1000),
      historyEvents,
      cpuPercent: {
        temporal: server0 !== null && server1 !== null ? round(((server1 - server0) / (elapsedMs / 1000)) * 100) : null,
        benchProcess: round(((cpu.user + cpu.system) / 1e6 / (elapsedMs / 1000)) * 100),
      },
    };
    log(`minimal workflows on ${o.address}: ${o.n} in ${run.elapsedMs} ms = ${run.workflowsPerSecond}/s (${historyEvents} events each; CPU: server ${run.cpuPercent.temporal ?? '?'} %, worker+client ${run.cpuPercent.benchProcess} %)`);
    return run;
  } finally {
    worker.shutdown();
    await running.catch(() => undefined);
    await connection.close();
    await nativeConnection.close();
  }
}

/** The dev-server flags the floor workflow needs: its search attribute. */
export const FLOOR_DEV_SERVER_ARGS = ['--search-attribute', `${FLOOR_SEARCH_ATTRIBUTE.name}=Keyword`];

/** The floor on a fresh in-memory dev server on free ports, stopped afterwards. */
export async function benchFloor(o: { n: number; log?: (l: string) => void }): Promise<FloorBench> {
  const server = await startTemporalDevServer({ headless: true, log: o.log, extraArgs: FLOOR_DEV_SERVER_ARGS });
  try {
    const run = await measureMinimalWorkflowRate({ address: server.address, n: o.n, serverPid: server.pid, log: o.log });
    return { server: 'fresh in-memory dev server (temporal server start-dev --headless, no --db-filename)', ...run };
  } finally {
    await server.stop();
  }
}
