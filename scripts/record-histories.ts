// Records the histories that test/integration/replay.test.ts replays: real marketplace-record
// workflows on the real stack. Run after an intended change to workflow code:
//   node --import tsx scripts/record-histories.ts
// It starts its own throwaway Temporal dev server and PostgreSQL (or uses TEMPORAL_ADDRESS and
// TEST_DATABASE_URL when both are set).
import { temporal } from '@temporalio/proto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { eventually, startTestStack } from './lib/stack-harness';
import { startPostgres } from './lib/postgres';
import { startTemporalDevServer } from './lib/temporal-cli';

async function main() {
  const own = !(process.env.TEMPORAL_ADDRESS && process.env.TEST_DATABASE_URL);
  const [dev, pg] = own ? await Promise.all([startTemporalDevServer({ headless: true }), startPostgres()]) : [undefined, undefined];
  if (dev && pg) {
    process.env.TEMPORAL_ADDRESS = dev.address;
    process.env.TEST_DATABASE_URL = pg.url;
  }
  const stack = await startTestStack({ hourMs: 2000, graceHours: 0.25, awsAcceptanceHours: 20 });
  const t = (org: string, acct: string, v: number, over: Record<string, string> = {}) => ({ orgId: org, productTag: 'rhel-for-x86-els-payg-addon', metric: 'vCPUs', sla: 'Premium', usage: 'Production', billingProvider: 'aws', billingAccountId: acct, hour: new Date(stack.currentHourMs()).toISOString(), value: v, ...over });
  const wait = async (org: string, pred: (s: string) => boolean) => eventually(async () => { const r = await stack.request('GET', `/v1/remittances?orgId=${org}`); const i = r.body.items[0]; return i && pred(i.status) ? i : undefined; }, 30000);
  const save = async (name: string, id: string) => {
    const h = await stack.client.workflow.getHandle(id).fetchHistory();
    writeFileSync(path.join(__dirname, '..', 'test', 'replay', 'histories', `${name}.bin`), temporal.api.history.v1.History.encode(h).finish());
  };
  const post = (tallies: unknown[]) => stack.request('POST', '/v1/tallies', { tallies }, stack.tokens.ingest);
  // succeeded; and two orgs of one customer in one record
  await post([t('rec-ok', '300000000001', 3), t('rec-shared', '300000000005', 1), t('rec-shared-2', '300000000005', 2, { sla: 'Standard' })]);
  const ok = await wait('rec-ok', (s) => s === 'Succeeded');
  const shared = await wait('rec-shared', (s) => s === 'Succeeded');
  // failed, retried by signal, succeeded
  stack.aws.faults.add({ kind: 'not-subscribed', count: 1, match: { customer: '300000000002' } });
  await post([t('rec-retry', '300000000002', 4)]);
  const failed = await wait('rec-retry', (s) => s === 'Failed');
  await stack.client.workflow.getHandle(failed.workflowId).signal('retry', { actor: 'recorder' });
  await wait('rec-retry', (s) => s === 'Succeeded');
  // failed, reset by signal -> voided
  stack.aws.faults.add({ kind: 'not-subscribed', count: 1, match: { customer: '300000000003' } });
  await post([t('rec-reset', '300000000003', 5)]);
  const f2 = await wait('rec-reset', (s) => s === 'Failed');
  await stack.client.workflow.getHandle(f2.workflowId).signal('reset', { actor: 'recorder' });
  await wait('rec-reset', (s) => s === 'Voided');
  // throttled then succeeded
  stack.aws.faults.add({ kind: 'throttle', count: 2, match: { customer: '300000000004' } });
  await post([t('rec-throttle', '300000000004', 6)]);
  const th = await wait('rec-throttle', (s) => s === 'Succeeded');
  // usage that can go to no record: rosa without a contract waits for one
  await post([t('rec-waiting', '300000000006', 8, { productTag: 'rosa', metric: 'Cores' })]);
  const waiting = await wait('rec-waiting', (s) => s === 'WaitingForContract');
  await new Promise((r) => setTimeout(r, 1500));
  await save('succeeded', ok.workflowId);
  await save('shared-record-succeeded', shared.workflowId);
  await save('failed-retried-succeeded', failed.workflowId);
  await save('failed-reset-voided', f2.workflowId);
  await save('throttled-succeeded', th.workflowId);
  await save('unsent-waiting-for-contract', waiting.workflowId);
  await stack.stop();
  await Promise.all([dev?.stop(), pg?.stop()]);
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
