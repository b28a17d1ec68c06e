// `remit replay`: a bulk operator signal through Temporal. Lists the remittance workflows that
// match a visibility query, then (unless --dry-run) signals each running one with {actor, reason}.
// The same as `temporal workflow signal --query ... --name retry`, which it prints too.

import type { Connection, WorkflowExecutionInfo } from '@temporalio/client';
import { JSON_OPTION, CliError, UsageError, bool, int, oneOf, required, str, type Command } from '../args';
import { plural, printJson, shellQuote, table } from '../format';
import { loadStack, temporalSettings } from '../stack';
import { defaultActor } from './operate';
import { SA, WORKFLOW_TYPE, recalculateSignal, resetSignal, retrySignal, type OperatorSignalInput } from '../../workflows/definitions';

const SIGNALS = { retry: retrySignal, recalculate: recalculateSignal, reset: resetSignal } as const;
type SignalName = keyof typeof SIGNALS;

interface Target {
  workflowId: string;
  runId: string;
  executionStatus: string;
  remittanceStatus: string | null;
  errorCode: string | null;
  remittanceHour: string | null;
  /** signalled | would-signal | skipped | failed */
  outcome: string;
  detail?: string;
}

export const replay: Command = {
  name: 'replay',
  summary: 'signal every remittance workflow matching a Temporal query (bulk retry / recalculate / reset)',
  options: {
    ...JSON_OPTION,
    stack: { type: 'string' },
    query: { type: 'string', short: 'q' },
    signal: { type: 'string' },
    'dry-run': { type: 'boolean' },
    yes: { type: 'boolean', short: 'y' },
    reason: { type: 'string' },
    actor: { type: 'string' },
    limit: { type: 'string' },
    'temporal-address': { type: 'string' },
    namespace: { type: 'string' },
  },
  help: `Usage: remit replay --query QUERY [--signal retry|recalculate|reset] (--dry-run | --yes) [--reason TEXT] [--actor NAME] [--json]

Bulk operator signal through Temporal: lists the remittance workflows matching the visibility
QUERY (search attributes Marketplace, BillingAccountId, OrgId, ProductTag, Metric,
RemittanceStatus, RemittanceErrorCode, RemittanceHour), then sends each running one the signal
with {actor, reason}. A workflow waits for these signals only while its hour failed and the
marketplace still accepts it; closed workflows are listed and skipped (a later hour bills their
amount). Also prints the equivalent \`temporal workflow signal --query\` command. Without --yes
it signals nothing: it lists what it would signal and stops (exit 2).

  --query, -q QUERY         e.g. 'RemittanceStatus="Failed" AND Marketplace="aws"' (required)
  --signal NAME             retry (default): recompute and resend the hour;
                            recalculate: likewise, from corrected tallies or contracts;
                            reset: void the failed hour, a later hour bills it
  --dry-run                 list what would be signalled and signal nothing
  --yes, -y                 send the signals (without it: the dry run, then stop)
  --reason TEXT             why, recorded in the audit trail (default "bulk <signal> via remit replay")
  --actor NAME              who, for the audit trail (default: your user name)
  --limit N                 stop after N matching workflows (default: all)
  --temporal-address H:P    else TEMPORAL_ADDRESS, else local-stack.json, else localhost:7233
  --namespace NS            else TEMPORAL_NAMESPACE, else local-stack.json, else default
  --json                    print {query, signal, dryRun, workflows, temporalCommand} as JSON

Example:
  remit replay --query 'RemittanceStatus="Failed" AND Marketplace="aws"' --signal retry --dry-run
`,
  async run(v, _p, io) {
    const query = required(v, 'query', "a Temporal visibility query, e.g. 'RemittanceStatus=\"Failed\" AND Marketplace=\"aws\"'");
    const signal = oneOf(v, 'signal', Object.keys(SIGNALS) as SignalName[]) ?? 'retry';
    if (bool(v, 'dry-run') && bool(v, 'yes')) throw new UsageError('--dry-run and --yes contradict each other');
    const unconfirmed = !bool(v, 'dry-run') && !bool(v, 'yes');
    const dryRun = bool(v, 'dry-run') || unconfirmed;
    const limit = int(v, 'limit', 1, 1_000_000) ?? Infinity;
    const input: OperatorSignalInput = { actor: str(v, 'actor') ?? defaultActor(io), reason: str(v, 'reason') ?? `bulk ${signal} via remit replay` };
    const stack = loadStack(str(v, 'stack'), io);
    const t = temporalSettings({ address: str(v, 'temporal-address'), namespace: str(v, 'namespace') }, io, stack);

    const listQuery = `WorkflowType="${WORKFLOW_TYPE.record}" AND (${query})`;
    const signalQuery = `WorkflowType="${WORKFLOW_TYPE.record}" AND ExecutionStatus="Running" AND (${query})`;
    const temporalCommand = [t.cli, 'workflow', 'signal', '--address', t.address, '--namespace', t.namespace, '--query', signalQuery, '--name', signal, '--input', JSON.stringify(input), '--reason', input.reason ?? signal, '--yes'].map(shellQuote).join(' ');

    const { Client } = await import('@temporalio/client'); // loaded only here: --help stays fast
    const { connectClientConnection, describeTemporal } = await import('../../lib/temporal-connection.js');
    let connection: Connection;
    try {
      connection = await connectClientConnection(t, { connectTimeout: '5 seconds' });
    } catch (err) {
      throw new CliError(`cannot connect to Temporal at ${describeTemporal(t)}: ${(err as Error).message} (address from ${t.source})`);
    }
    const targets: Target[] = [];
    let failed = 0;
    try {
      const client = new Client({ connection, namespace: t.namespace });
      try {
        for await (const wf of client.workflow.list({ query: listQuery })) {
          targets.push(targetOf(wf));
          if (targets.length >= limit) break;
        }
      } catch (err) {
        const e = err as Error & { code?: number };
        if (e.code === 3 /* INVALID_ARGUMENT */) throw new UsageError(`Temporal refused the query ${JSON.stringify(query)}: ${e.message}`);
        throw new CliError(`cannot list workflows in ${t.namespace} at ${t.address}: ${e.message}`);
      }
      for (const x of targets) {
        if (x.executionStatus !== 'RUNNING') {
          x.outcome = 'skipped';
          x.detail = `workflow ${x.executionStatus.toLowerCase()}: a later hour of the key bills what it did not`;
        } else if (dryRun) x.outcome = 'would-signal';
      }
      if (!dryRun) {
        await runLimited(targets.filter((x) => x.executionStatus === 'RUNNING'), 8, async (x) => {
          try {
            await client.workflow.getHandle(x.workflowId, x.runId).signal(SIGNALS[signal], input);
            x.outcome = 'signalled';
          } catch (err) {
            x.outcome = 'failed';
            x.detail = (err as Error).message;
            failed++;
          }
        });
      }
    } finally {
      await connection.close().catch(() => undefined);
    }

    const stopped = () => {
      io.err(`remit replay: nothing was signalled: this was a dry run. Check it, then run the same command with --yes to send ${signal}.`);
      return 2;
    };
    if (bool(v, 'json')) {
      printJson(io.out, { query, signal, dryRun, input, namespace: t.namespace, address: t.address, workflows: targets, temporalCommand });
      return unconfirmed ? stopped() : failed ? 1 : 0;
    }
    io.out(`${plural(targets.length, 'remittance workflow')} match ${query} in ${t.namespace} at ${t.address}${targets.length >= limit ? ` (stopped at --limit ${limit})` : ''}`);
    if (targets.length) {
      io.out('');
      for (const l of table(['WORKFLOW ID', 'EXECUTION', 'STATUS', 'ERROR CODE', dryRun ? 'WOULD' : 'OUTCOME'], targets.map((x) => [x.workflowId, x.executionStatus, x.remittanceStatus, x.errorCode, x.detail ? `${x.outcome}: ${x.detail}` : x.outcome]), { indent: '  ' })) io.out(l);
    }
    io.out('');
    const running = targets.filter((x) => x.executionStatus === 'RUNNING').length;
    if (dryRun) io.out(`Dry run: would send ${signal} to ${plural(running, 'running workflow')} as ${input.actor} ("${input.reason}"); nothing was signalled.`);
    else io.out(`Sent ${signal} to ${plural(targets.filter((x) => x.outcome === 'signalled').length, 'workflow')}${failed ? `; ${failed} failed` : ''} as ${input.actor} ("${input.reason}").`);
    io.out('');
    io.out('The same with the Temporal CLI:');
    io.out(`  ${temporalCommand}`);
    return unconfirmed ? stopped() : failed ? 1 : 0;
  },
};

function targetOf(wf: WorkflowExecutionInfo): Target {
  const sa = wf.typedSearchAttributes;
  const hour = sa.get(SA.RemittanceHour);
  return {
    workflowId: wf.workflowId,
    runId: wf.runId,
    executionStatus: wf.status.name,
    remittanceStatus: sa.get(SA.RemittanceStatus) ?? null,
    errorCode: sa.get(SA.RemittanceErrorCode) ?? null,
    remittanceHour: hour ? hour.toISOString() : null,
    outcome: 'not-signalled',
  };
}

async function runLimited<T>(items: T[], limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]!);
  }));
}
