// Failure stories at the end of the acceptance window, on the real stack with scaled hours: an
// outage longer than the window, and answers lost until it closes. Each ends checked against the
// AWS emulator's records and the ledger, and with `remit audit` passing.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { eventually, pastPreviousClose, startTestStack, type TestStack } from '../../scripts/lib/stack-harness';
import { assertAuditClean, clearFaults, fault, newAccount, remittances, settled, tally } from '../helpers/resilience';

// Each describe has a stack of its own (own database, task queue and emulators), so they run side
// by side. The stories within a describe share its stack and run one after the other: node:test
// hands a suite's concurrency down to the suites inside it unless they set their own.
describe('failure stories at the end of the window, side by side', { concurrency: true }, () => {
  describe('an outage longer than the acceptance window', { concurrency: false }, () => {
    let stack: TestStack;
    before(async () => {
      // 3-second hours, a 3-hour window: a record of hour R, made when R closes (R + 3.75 s), is
      // rejected from R + 9 s on. (With 2-second hours a later hour's record had 3.5 s to be sent,
      // which a loaded machine missed: the re-billing expired too.)
      stack = await startTestStack({ hourMs: 3000, graceHours: 0.25, awsAcceptanceHours: 3, sweep: true });
    });
    after(async () => stack?.stop());

    it('expires the hour and bills its amount in a later hour single record', async () => {
      const acct = newAccount();
      const orgId = `org-${randomUUID().slice(0, 8)}`;
      // Down from the post (0.75-2.5 s into hour R) until after that hour's deadline (R + 9 s),
      // and back before the re-billing hour's record is made (R + 12.75 s at the earliest).
      const hour = await pastPreviousClose(stack, 500);
      await fault(stack, { kind: 'server-error', durationMs: 10_000, match: { customer: acct } });
      assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [tally(stack, orgId, acct, 11, hour)] }, stack.tokens.ingest)).status, 202);
      const items = await eventually(async () => {
        const all = await remittances(stack, orgId);
        return all.some((i) => i.status === 'Succeeded') && settled(all) ? all : undefined;
      }, 40_000, 'the re-billing in a later hour').catch(async (err: Error) => {
        throw new Error(`${err.message}; remittances: ${JSON.stringify((await remittances(stack, orgId)).map((i: any) => [i.remittanceHour, i.status, i.quantity, i.reason]))}`);
      });
      const expired = items.find((i) => i.remittanceHour === new Date(hour).toISOString());
      assert.equal(expired.status, 'Expired', JSON.stringify(expired));
      assert.equal(expired.errorCode, 'marketplace_window_expired');
      assert.ok(expired.rebilledBy, 'the expired amount says where it was billed');
      const ok = items.filter((i) => i.status === 'Succeeded');
      assert.equal(ok.length, 1);
      assert.ok(Date.parse(ok[0].remittanceHour) > hour);
      assert.equal(expired.rebilledBy.remittanceId, ok[0].id);
      const recs = stack.aws.records().filter((r) => r.customer === acct);
      assert.equal(recs.length, 1);
      assert.equal(recs[0]!.quantity, 11);
      assert.equal(recs[0]!.timestampMs, Date.parse(ok[0].remittanceHour));
      await assertAuditClean(stack);
    });
  });

  describe('answers lost until the window closes', { concurrency: false }, () => {
    let stack: TestStack;
    before(async () => {
      // 2-second hours, a 5-hour window: a record of hour R can be sent until R + 10 s, room
      // enough for the first send to go out even on a busy machine.
      stack = await startTestStack({ hourMs: 2000, graceHours: 0.25, awsAcceptanceHours: 5, sweep: true });
    });
    after(async () => stack?.stop());

    it('a record AWS kept but never confirmed ends Unconfirmed: counted, visible, never billed twice', async () => {
      const acct = newAccount();
      const orgId = `org-${randomUUID().slice(0, 8)}`;
      // Every answer for this customer is lost until well after the window: AWS records the first send.
      await fault(stack, { kind: 'lost-response', durationMs: 30_000, match: { customer: acct } });
      const hour = stack.currentHourMs();
      assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [tally(stack, orgId, acct, 7, hour)] }, stack.tokens.ingest)).status, 202);
      const row = await eventually(async () => {
        const all = await remittances(stack, orgId);
        return all.find((i) => i.status === 'Unconfirmed');
      }, 60_000, 'the unconfirmed remittance').catch(async (e) => {
        console.error(JSON.stringify(await remittances(stack, orgId), null, 1));
        throw e;
      });
      assert.equal(row.errorCode, 'marketplace_unconfirmed');
      assert.match(row.reason, /reset/);
      // Hours later nothing billed it again: it counts as remitted.
      await new Promise((r) => setTimeout(r, 8000));
      const items = await remittances(stack, orgId);
      assert.equal(items.filter((i) => i.status === 'Succeeded').length, 0);
      const recs = stack.aws.records().filter((r) => r.customer === acct);
      assert.equal(recs.length, 1, 'AWS holds it once');
      assert.equal(recs[0]!.quantity, 7);
      await assertAuditClean(stack);
    });

    it('a record that never reached AWS ends Unconfirmed, the audit says so, and a reset bills it once', async () => {
      const acct = newAccount();
      const orgId = `org-${randomUUID().slice(0, 8)}`;
      // AWS never answers (and stores nothing) until the record has ended Unconfirmed: a fault
      // cleared then, not one of a fixed length, because a sweep that closes the hour late under
      // load folds the usage into a later hour whose window can outlast any fixed fault.
      await fault(stack, { kind: 'timeout', durationMs: 300_000, match: { customer: acct } });
      assert.equal((await stack.request('POST', '/v1/tallies', { tallies: [tally(stack, orgId, acct, 4)] }, stack.tokens.ingest)).status, 202);
      const row = await eventually(async () => {
        const all = await remittances(stack, orgId);
        return all.find((i) => i.status === 'Unconfirmed');
      }, 60_000, 'the unconfirmed remittance').catch(async (e) => {
        console.error(JSON.stringify(await remittances(stack, orgId), null, 1));
        throw e;
      });
      assert.equal(stack.aws.records().filter((r) => r.customer === acct).length, 0);
      const report = await stack.audit();
      assert.ok(report.violations.some((v) => v.remittanceId === row.id && v.invariant === 'nothing-lost' && /reset/.test(v.message)), JSON.stringify(report.violations));
      await clearFaults(stack);
      const body = { productTag: 'rhel-for-x86-els-payg-addon', start: row.remittanceHour, end: new Date(Date.parse(row.remittanceHour) + 1).toISOString(), orgIds: [orgId], dryRun: false };
      const reset = await stack.request('POST', '/v1/remittances/reset', body);
      assert.equal(reset.status, 200, JSON.stringify(reset.body));
      assert.deepEqual(reset.body.changes.map((c: any) => c.remittanceId), [row.id]);
      await eventually(async () => {
        const all = await remittances(stack, orgId);
        return all.some((i) => i.status === 'Succeeded') && settled(all) ? all : undefined;
      }, 30_000, 'the re-billing after the reset');
      const recs = stack.aws.records().filter((r) => r.customer === acct);
      assert.equal(recs.length, 1);
      assert.equal(recs[0]!.quantity, 4);
      await assertAuditClean(stack);
    });
  });
});
