// Records the histories that test/integration/replay.test.ts replays: real remittances on the real
// stack (a Temporal dev server and PostgreSQL from TEMPORAL_ADDRESS / TEST_DATABASE_URL, e.g.
// while `npm test` infrastructure is up). Run after an intended change to workflow code:
//   node --import tsx scripts/record-histories.ts
import { temporal } from '@temporalio/proto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { eventually, startTestStack } from '../test/helpers/stack';

async function main() {
  const stack = await startTestStack({ hourMs: 2000, graceHours: 0.25, awsAcceptanceHours: 20 });
  const t = (org: string, acct: string, v: number) => ({ orgId: org, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: acct, hour: new Date(stack.currentHourMs()).toISOString(), value: v });
  const wait = async (org: string, pred: (s: string) => boolean) => eventually(async () => { const r = await stack.request('GET', `/v1/remittances?orgId=${org}`); const i = r.body.items[0]; return i && pred(i.status) ? i : undefined; }, 30000);
  const save = async (name: string, id: string) => {
    const h = await stack.client.workflow.getHandle(id).fetchHistory();
    writeFileSync(path.join(__dirname, '..', 'test', 'replay', 'histories', `${name}.bin`), temporal.api.history.v1.History.encode(h).finish());
  };
  // succeeded
  await stack.request('POST', '/v1/tallies', { tallies: [t('rec-ok', '300000000001', 3)] }, stack.tokens.ingest);
  const ok = await wait('rec-ok', (s) => s === 'Succeeded');
  // failed, retried by signal, succeeded
  stack.aws.faults.add({ kind: 'not-subscribed', count: 1, match: { customer: '300000000002' } });
  await stack.request('POST', '/v1/tallies', { tallies: [t('rec-retry', '300000000002', 4)] }, stack.tokens.ingest);
  const failed = await wait('rec-retry', (s) => s === 'Failed');
  await stack.client.workflow.getHandle(failed.workflowId).signal('retry', { actor: 'recorder' });
  await wait('rec-retry', (s) => s === 'Succeeded');
  // failed, reset by signal -> voided
  stack.aws.faults.add({ kind: 'not-subscribed', count: 1, match: { customer: '300000000003' } });
  await stack.request('POST', '/v1/tallies', { tallies: [t('rec-reset', '300000000003', 5)] }, stack.tokens.ingest);
  const f2 = await wait('rec-reset', (s) => s === 'Failed');
  await stack.client.workflow.getHandle(f2.workflowId).signal('reset', { actor: 'recorder' });
  await wait('rec-reset', (s) => s === 'Voided');
  // throttled then succeeded
  stack.aws.faults.add({ kind: 'throttle', count: 2, match: { customer: '300000000004' } });
  await stack.request('POST', '/v1/tallies', { tallies: [t('rec-throttle', '300000000004', 6)] }, stack.tokens.ingest);
  const th = await wait('rec-throttle', (s) => s === 'Succeeded');
  await new Promise((r) => setTimeout(r, 1500));
  await save('succeeded', ok.workflowId);
  await save('failed-retried-succeeded', failed.workflowId);
  await save('failed-reset-voided', f2.workflowId);
  await save('throttled-succeeded', th.workflowId);
  await stack.stop();
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
