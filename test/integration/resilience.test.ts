// Failure stories on the real stack with scaled hours. Each ends checked against the AWS
// emulator's records and the ledger, and with `remit audit` passing. The stories about the
// acceptance window's end are in resilience-window.test.ts (a file of their own, so that both
// halves run side by side under npm test).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { eventually, startTestStack, type TestStack } from '../../scripts/lib/stack-harness';
import { assertAuditClean, fault, newAccount, remittances, settled, tally } from '../helpers/resilience';

const run = promisify(execFile);

// Each describe has a stack of its own (own database, task queue and emulators), so they run side
// by side; their workflows share this file's namespace, and every query names its org. The stories
// within a describe share its stack and run one after the other: node:test hands a suite's
// concurrency down to the suites inside it unless they set their own.
describe('failure stories shorter than the window, side by side', { concurrency: true }, () => {
  describe('retryable failures shorter than the window', { concurrency: false }, () => {
    let stack: TestStack;
    before(async () => {
      stack = await startTestStack({ hourMs: 3000, graceHours: 0.25, awsAcceptanceHours: 8 });
    });
    after(async () => stack?.stop());

    it('a throttling storm and a marketplace outage end in one record per hour, nothing lost', async () => {
      const [throttled, outage] = [newAccount(), newAccount()];
      const orgA = `org-${randomUUID().slice(0, 8)}`;
      const orgB = `org-${randomUUID().slice(0, 8)}`;
      await fault(stack, { kind: 'throttle', durationMs: 9000, match: { customer: throttled } });
      await fault(stack, { kind: 'server-error', durationMs: 9000, match: { customer: outage } });
      const hour = stack.currentHourMs();
      for (const [org, acct, v] of [[orgA, throttled, 7], [orgB, outage, 9]] as const) {
        const r = await stack.request('POST', '/v1/tallies', { tallies: [tally(stack, org, acct, v, hour)] }, stack.tokens.ingest);
        assert.equal(r.status, 202);
      }
      // While it retries, the workflow itself says so: Sending, the attempt, the error code.
      // Its workflow is the record's, started when the hour's window closes; the API names it.
      const [computed] = await eventually(async () => {
        const all = await remittances(stack, orgA);
        return all.length && all[0].workflowId ? all : undefined;
      }, 20_000, 'the throttled remittance to be computed');
      const handle = stack.client.workflow.getHandle(computed.workflowId);
      const retrying = await eventually(async () => {
        const v: any = await handle.query('state');
        return v.status === 'Sending' && v.errorCode === 'marketplace_rate_limit' && v.attempts >= 1 ? v : undefined;
      }, 20_000, 'the throttled remittance to show its retries');
      assert.ok(retrying);
      // What the Web UI shows as the workflow's current details (the built-in metadata query).
      const metadata: any = await handle.query('__temporal_workflow_metadata');
      assert.match(String(metadata.currentDetails), /marketplace_rate_limit/);
      for (const [org, acct, v] of [[orgA, throttled, 7], [orgB, outage, 9]] as const) {
        const items = await eventually(async () => {
          const all = await remittances(stack, org);
          return settled(all) ? all : undefined;
        }, 40_000, `remittance of ${org}`);
        assert.equal(items.length, 1);
        assert.equal(items[0].status, 'Succeeded', items[0].reason);
        assert.ok(items[0].attempts > 1, 'it was retried');
        assert.match(items[0].lastError ?? '', /rate_limit|unavailable/);
        const recs = stack.aws.records().filter((r) => r.customer === acct);
        assert.equal(recs.length, 1);
        assert.equal(recs[0]!.quantity, v);
      }
      const calls = stack.aws.calls().filter((c) => c.outcome !== 'ok');
      assert.ok(calls.some((c) => c.outcome.includes('Throttling')) && calls.some((c) => c.httpStatus === 500), 'both faults really happened');
      await assertAuditClean(stack);
    });

    it('a customer not subscribed fails visibly, then is billed after a retry signal sent by query with the temporal CLI', async () => {
      const acct = newAccount();
      const orgId = `org-${randomUUID().slice(0, 8)}`;
      await fault(stack, { kind: 'not-subscribed', count: 1, match: { customer: acct } });
      assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [tally(stack, orgId, acct, 5)] }, stack.tokens.ingest)).status, 202);
      const [failed] = await eventually(async () => {
        const all = await remittances(stack, orgId);
        return all.length === 1 && all[0].status === 'Failed' ? all : undefined;
      }, 30_000, 'the failure');
      assert.equal(failed.errorCode, 'marketplace_customer_not_subscribed');
      assert.ok(failed.reason && failed.reason.length > 10, 'a human reason');
      assert.equal(stack.aws.records().filter((r) => r.customer === acct).length, 0);

      // Visible in Temporal: status and error code as search attributes, the reason in the details.
      const query = `RemittanceStatus="Failed" AND RemittanceErrorCode="marketplace_customer_not_subscribed" AND OrgId="${orgId}"`;
      await eventually(async () => {
        for await (const wf of stack.client.workflow.list({ query })) if (wf.workflowId === failed.workflowId) return true;
        return false;
      }, 15_000, 'the failed workflow in visibility');
      const state = await stack.client.workflow.getHandle(failed.workflowId).query('state');
      assert.equal((state as any).status, 'Failed');

      // The operator fixed the subscription (the fault was used once); bulk replay by query.
      const cli = process.env.TEMPORAL_CLI_PATH;
      assert.ok(cli, 'TEMPORAL_CLI_PATH is set by npm test');
      await run(cli, ['workflow', 'signal', '--address', process.env.TEMPORAL_ADDRESS!, '--namespace', stack.config.temporalNamespace, '--query', query, '--name', 'retry', '--input', '{"actor":"test-operator","reason":"subscription fixed"}', '--reason', 'subscription fixed', '--yes']);

      const [done] = await eventually(async () => {
        const all = await remittances(stack, orgId);
        return all.length === 1 && all[0].status === 'Succeeded' ? all : undefined;
      }, 30_000, 'the retried remittance').catch(async (e) => {
        console.error(JSON.stringify(await remittances(stack, orgId), null, 1));
        const h = await stack.client.workflow.getHandle(failed.workflowId).fetchHistory();
        console.error(JSON.stringify(h.events?.map((e) => e.eventType)));
        throw e;
      });
      const recs = stack.aws.records().filter((r) => r.customer === acct);
      assert.equal(recs.length, 1);
      assert.equal(recs[0]!.quantity, 5);
      assert.equal(recs[0]!.receiptId, done.receiptId);
      assert.equal(recs[0]!.timestampMs, Date.parse(done.remittanceHour), 'sent in its own hour');
      const audit = await stack.request('GET', '/v1/audit');
      assert.ok(audit.body.items.some((e: any) => e.action === 'signal:retry' && e.actor === 'test-operator'));
      await assertAuditClean(stack);
    });

  });

  describe('operator reset', { concurrency: false }, () => {
    let stack: TestStack;
    before(async () => {
      stack = await startTestStack({ hourMs: 3000, graceHours: 0.25, awsAcceptanceHours: 8 });
    });
    after(async () => stack?.stop());

    it('a reset of a range the marketplace never billed is previewed, then billed again exactly once', async () => {
      const acct = newAccount();
      const orgId = `org-${randomUUID().slice(0, 8)}`;
      assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [tally(stack, orgId, acct, 3)] }, stack.tokens.ingest)).status, 202);
      const [first] = await eventually(async () => {
        const all = await remittances(stack, orgId);
        return all.length === 1 && all[0].status === 'Succeeded' ? all : undefined;
      }, 30_000, 'the first remittance');
      // The marketplace lost it (the emulator forgets everything): the ledger says billed, AWS does not.
      stack.aws.reset();
      const body = { productTag: 'rhel-for-x86-els-payg-addon', start: new Date(Date.parse(first.remittanceHour) - 1000).toISOString(), end: new Date(Date.parse(first.remittanceHour) + 1000).toISOString(), orgIds: [orgId], dryRun: true };
      const preview = await stack.request('POST', '/v1/remittances/reset', body);
      assert.equal(preview.status, 200, JSON.stringify(preview.body));
      assert.equal(preview.body.dryRun, true);
      assert.deepEqual(preview.body.changes.map((c: any) => [c.remittanceId, c.quantity, c.action]), [[first.id, 3, 'void']]);
      assert.equal((await remittances(stack, orgId))[0].status, 'Succeeded', 'a dry run changes nothing');

      const done = await stack.request('POST', '/v1/remittances/reset', { ...body, dryRun: false });
      assert.equal(done.status, 200);
      assert.equal(done.body.owing, 1, 'the key owes again: the next close bills it');
      const items = await eventually(async () => {
        const all = await remittances(stack, orgId);
        return all.length === 2 && settled(all) ? all : undefined;
      }, 30_000, 'the re-billing');
      const byId = new Map(items.map((i) => [i.id, i]));
      assert.equal(byId.get(first.id).status, 'Voided');
      const again = items.find((i) => i.id !== first.id);
      assert.equal(again.status, 'Succeeded');
      assert.equal(again.quantity, 3);
      assert.equal(stack.aws.records().filter((r) => r.customer === acct).length, 1, 'billed again exactly once');
      const audit = await stack.request('GET', '/v1/audit');
      const resets = audit.body.items.filter((e: any) => e.action === 'reset');
      assert.deepEqual(resets.slice(0, 2).map((e: any) => e.dryRun), [false, true]);
      await assertAuditClean(stack);
    });
  });

  describe('operator signals and the retry API on failed hours', { concurrency: false }, () => {
    let stack: TestStack;
    before(async () => {
      // 3-second hours and a 4-hour window: a failed hour waits 12 s for an operator; the sweep runs.
      stack = await startTestStack({ hourMs: 3000, graceHours: 0.25, awsAcceptanceHours: 4, sweep: true });
    });
    after(async () => stack?.stop());

    const failedHour = async (orgId: string, acct: string, value: number) => {
      await fault(stack, { kind: 'not-subscribed', count: 1, match: { customer: acct } });
      assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [tally(stack, orgId, acct, value)] }, stack.tokens.ingest)).status, 202);
      const [failed] = await eventually(async () => {
        const all = await remittances(stack, orgId);
        return all.length === 1 && all[0].status === 'Failed' ? all : undefined;
      }, 30_000, 'the failure');
      return failed;
    };

    it('POST /v1/remittances/retry previews, then signals the waiting hour, which bills in its own hour', async () => {
      const acct = newAccount();
      const orgId = `org-${randomUUID().slice(0, 8)}`;
      const failed = await failedHour(orgId, acct, 4);
      const body = { productTag: 'rhel-for-x86-els-payg-addon', start: new Date(Date.parse(failed.remittanceHour)).toISOString(), end: new Date(Date.parse(failed.remittanceHour) + 1).toISOString(), orgIds: [orgId], dryRun: true };
      const preview = await stack.request('POST', '/v1/remittances/retry', body);
      assert.equal(preview.status, 200, JSON.stringify(preview.body));
      assert.deepEqual(preview.body.changes.map((c: any) => [c.remittanceId, c.status, c.quantity]), [[failed.id, 'Failed', 4]]);
      assert.deepEqual(preview.body.started, []);
      assert.equal((await remittances(stack, orgId))[0].status, 'Failed', 'a dry run changes nothing');
      const done = await stack.request('POST', '/v1/remittances/retry', { ...body, dryRun: false });
      assert.equal(done.status, 200);
      assert.deepEqual(done.body.started, [failed.workflowId], 'the waiting workflow was signalled');
      const items = await eventually(async () => {
        const all = await remittances(stack, orgId);
        return all.some((i) => i.status === 'Succeeded') && settled(all) ? all : undefined;
      }, 30_000, 'the retried hour');
      const ok = items.find((i) => i.status === 'Succeeded');
      assert.equal(ok.id, failed.id, 'the same hour was billed');
      assert.equal(stack.aws.records().filter((r) => r.customer === acct).length, 1);
      await assertAuditClean(stack);
    });

    it('a reset signal voids a failed hour, and a later hour bills its amount once', async () => {
      const acct = newAccount();
      const orgId = `org-${randomUUID().slice(0, 8)}`;
      const failed = await failedHour(orgId, acct, 6);
      await stack.client.workflow.getHandle(failed.workflowId).signal('reset', { actor: 'test-operator', reason: 'wrong account' });
      const items = await eventually(async () => {
        const all = await remittances(stack, orgId);
        return all.some((i) => i.status === 'Succeeded') && settled(all) ? all : undefined;
      }, 40_000, 'the re-billing in a later hour');
      const voided = items.find((i) => i.id === failed.id);
      assert.equal(voided.status, 'Voided');
      const ok = items.filter((i) => i.status === 'Succeeded');
      assert.equal(ok.length, 1);
      assert.ok(Date.parse(ok[0].remittanceHour) > Date.parse(failed.remittanceHour));
      assert.equal(ok[0].quantity, 6);
      assert.equal(stack.aws.records().filter((r) => r.customer === acct).length, 1);
      await assertAuditClean(stack);
    });

    it('a lost response from AWS ends with exactly one accepted record and no duplicate rejection', async () => {
      const acct = newAccount();
      const orgId = `org-${randomUUID().slice(0, 8)}`;
      await fault(stack, { kind: 'lost-response', count: 1, match: { customer: acct } });
      assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [tally(stack, orgId, acct, 9)] }, stack.tokens.ingest)).status, 202);
      const [done] = await eventually(async () => {
        const all = await remittances(stack, orgId);
        return settled(all) ? all : undefined;
      }, 30_000, 'the remittance');
      assert.equal(done.status, 'Succeeded', done.reason);
      const recs = stack.aws.records().filter((r) => r.customer === acct);
      assert.equal(recs.length, 1);
      assert.equal(recs[0]!.receiptId, done.receiptId);
      assert.ok(stack.aws.calls().some((c) => c.outcome === 'lost-response'), 'the answer really was lost');
      assert.equal(stack.aws.calls().filter((c) => c.duplicates > 0).length, 0);
      await assertAuditClean(stack);
    });
  });
});
