// `remit reset`, `remit recalculate`, `remit retry`: the operator actions of the API, with a dry
// run that changes nothing and shows what would change. Every call, dry runs included, is in the
// audit trail (`remit audit log`) under the actor.

import os from 'node:os';
import { API_OPTIONS, JSON_OPTION, bool, instant, list, listOf, required, str, UsageError, type Command, type Values, type Io } from '../args';
import { ApiClient } from '../api';
import { plural, printJson, table } from '../format';
import { apiSettings, loadStack } from '../stack';
import { RESETTABLE, RETRYABLE } from '../../domain/lifecycle';
import type { OperationChange, OperationResult } from '../../operations';

/** What the API answers (operations/index.ts). */
type Result = OperationResult;
type Action = Result['action'];
type Change = OperationChange;

const WHAT: Record<Action, { does: string; verb: string; detail: string }> = {
  reset: {
    does: `Void what was recorded as remitted (${RESETTABLE.join(', ')}) in the range, so that it is billed again in the current hour. Records in flight (Pending, Sending) are never voided.`,
    verb: 'void',
    detail: 'Use it when the marketplace lost or refunded records the ledger counts as billed.',
  },
  recalculate: {
    does: 'Recompute every key with usage or remittances in the range from the current tallies and contracts, and bill the difference in the current hour.',
    verb: 'recompute',
    detail: 'Use it after correcting tallies or contracts.',
  },
  retry: {
    does: 'Retry failed (or, with --status, expired) remittances in the range now: an hour still waiting for an operator gets the retry signal; otherwise the current hour of the key bills the amount.',
    verb: 'retry',
    detail: 'Use it after fixing what made the marketplace refuse (a subscription, a dimension).',
  },
};

export function operation(action: Action): Command {
  const withStatus = action === 'retry';
  return {
    name: action,
    summary: { reset: 'void remitted hours in a range so they are billed again', recalculate: 'recompute a range from current tallies and contracts', retry: 'retry failed or expired remittances now' }[action],
    options: {
      ...API_OPTIONS,
      ...JSON_OPTION,
      product: { type: 'string' },
      start: { type: 'string' },
      end: { type: 'string' },
      orgs: { type: 'string' },
      accounts: { type: 'string' },
      'dry-run': { type: 'boolean' },
      yes: { type: 'boolean', short: 'y' },
      force: { type: 'boolean' },
      actor: { type: 'string' },
      ...(withStatus ? { status: { type: 'string' } } : {}),
    },
    help: `Usage: remit ${action} --product TAG --start INSTANT --end INSTANT (--orgs A,B | --accounts X,Y)${withStatus ? ' [--status Failed,Expired]' : ''} (--dry-run | --yes) [--force] [--actor NAME] [--json]

${WHAT[action].does}
${WHAT[action].detail}
Calls POST /v1/remittances/${action}; prints each change (key, remittance hour, status, quantity in
billing units), the workflows started, and the audit trail entry. Without --yes it changes
nothing: it shows the dry run and stops (exit 2), so that a change is always seen before it is made.

  --product TAG            product tag (required)
  --start INSTANT          remittance hours from (inclusive), ISO-8601 (required)
  --end INSTANT            remittance hours to (exclusive), ISO-8601 (required)
  --orgs A,B               organizations      } exactly one of the two
  --accounts X,Y           billing accounts   }
${withStatus ? '  --status Failed,Expired  which remittances to retry (default Failed)\n' : ''}  --dry-run                show what would change and change nothing
  --yes, -y                make the change (without it: the dry run, then stop)
  --force                  allow more than the API's per-request bounds (REMIT_OPERATION_MAX_HOURS
                           remittance hours, REMIT_OPERATION_MAX_IDS ids; 168 and 100 by default)
  --actor NAME             your name, noted in the audit trail beside the token that acted
                           (default: your user name; a note, not an identity)
  --json                   print the API's answer as JSON

Where the API is: --api URL --token-file FILE (or --token TOKEN, visible to other users in the
process list), else REMIT_API_URL / REMIT_OPERATOR_TOKEN_FILE / REMIT_OPERATOR_TOKEN, else
.remit/local-stack.json (--stack FILE names another; REMIT_STACK_FILE=none ignores it).

Example:
  remit ${action} --product rosa --start 2026-11-25T00:00:00Z --end 2026-11-26T00:00:00Z --orgs org-1 --dry-run
  remit ${action} --product rosa --start 2026-11-25T00:00:00Z --end 2026-11-26T00:00:00Z --orgs org-1 --yes
`,
    async run(v, _p, io) {
      const body = requestBody(action, v);
      if (bool(v, 'dry-run') && bool(v, 'yes')) throw new UsageError('--dry-run and --yes contradict each other');
      // Nothing changes without --yes: the request goes out as a dry run and the command stops.
      const unconfirmed = !body.dryRun && !bool(v, 'yes');
      if (unconfirmed) body.dryRun = true;
      const actor = str(v, 'actor') ?? defaultActor(io);
      const stack = loadStack(str(v, 'stack'), io);
      const api = apiSettings({ api: str(v, 'api'), token: str(v, 'token'), tokenFile: str(v, 'token-file') }, io, stack);
      const result = await new ApiClient(api.url, api.token, { actor, source: api.source }).post<Result>(`/v1/remittances/${action}`, body);
      if (bool(v, 'json')) printJson(io.out, result);
      else printResult(io, action, body, result, actor, unconfirmed);
      if (unconfirmed) {
        io.err(`remit ${action}: nothing was changed: this was a dry run. Check it, then run the same command with --yes to ${WHAT[action].verb} ${result.changes.length === 1 ? 'it' : 'them'}.`);
        return 2;
      }
      return 0;
    },
  };
}

interface RequestBody {
  productTag: string;
  start: string;
  end: string;
  orgIds?: string[];
  billingAccountIds?: string[];
  dryRun: boolean;
  force?: boolean;
  status?: string[];
}

function requestBody(action: Action, v: Values): RequestBody {
  const productTag = required(v, 'product', 'the product tag');
  const start = instant(v, 'start');
  const end = instant(v, 'end');
  if (!start) throw new UsageError('--start is required (an ISO-8601 instant)');
  if (!end) throw new UsageError('--end is required (an ISO-8601 instant)');
  if (end <= start) throw new UsageError('--end must be after --start');
  const orgIds = list(v, 'orgs');
  const billingAccountIds = list(v, 'accounts');
  if ((orgIds === undefined) === (billingAccountIds === undefined)) throw new UsageError('give exactly one of --orgs and --accounts');
  const status = action === 'retry' ? listOf(v, 'status', RETRYABLE) : undefined;
  return {
    productTag,
    start: start.toISOString(),
    end: end.toISOString(),
    ...(orgIds ? { orgIds } : { billingAccountIds }),
    dryRun: bool(v, 'dry-run'),
    ...(bool(v, 'force') ? { force: true } : {}),
    ...(status ? { status } : {}),
  };
}

export function defaultActor(io: Io): string {
  const fromEnv = io.env.REMIT_ACTOR || io.env.USER || io.env.USERNAME;
  if (fromEnv) return fromEnv;
  try {
    return os.userInfo().username;
  } catch {
    return 'operator';
  }
}

function printResult(io: Io, action: Action, body: RequestBody, r: Result, actor: string, unconfirmed = false) {
  const who = body.orgIds ? `orgs ${body.orgIds.join(',')}` : `accounts ${body.billingAccountIds?.join(',')}`;
  io.out(`${action}${r.dryRun ? ' (DRY RUN: nothing was changed)' : ''}: product ${body.productTag}, ${who}, remittance hours ${body.start} to ${body.end}, by ${actor}`);
  io.out('');
  if (r.changes.length === 0) {
    io.out(`Nothing to ${WHAT[action].verb} in that range.`);
  } else {
    const rows = r.changes.map((c) => [keyText(c.key), c.remittanceHour ?? '(current hour)', c.remittanceId ?? '', c.status ?? '', c.quantity, c.claim ?? '', c.action]);
    for (const l of table(['KEY', 'HOUR', 'REMITTANCE', 'STATUS', 'QUANTITY', 'CLAIM', 'ACTION'], rows, { indent: '  ' })) io.out(l);
    const units = r.changes.reduce((s, c) => s + c.quantity, 0);
    const keys = new Set(r.changes.map((c) => keyText(c.key))).size;
    io.out('');
    io.out(`${plural(r.changes.length, 'change')} over ${plural(keys, 'key')}, ${plural(units, 'billing unit')}${action === 'recalculate' ? ' to bill now' : ''}.`);
  }
  if (r.dryRun) {
    if (r.changes.length && !unconfirmed) io.out(`Dry run: run again with --yes instead of --dry-run to ${WHAT[action].verb} ${r.changes.length === 1 ? 'it' : 'them'}.`);
  } else if (r.started.length) {
    io.out(`Workflows started or signalled (${r.started.length}):`);
    for (const id of r.started) io.out(`  ${id}`);
  } else io.out('No workflow started.');
  io.out(`Audit trail entry: ${r.auditId} (remit audit log)`);
}

export function keyText(k: Change['key']): string {
  return [k.billingProvider, k.billingAccountId, k.orgId, k.productTag, k.metric, k.sla, k.usage].join('/');
}
