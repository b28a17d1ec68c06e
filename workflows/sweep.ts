// Started by the `remit-sweep/<taskQueue>` Schedule when each hour's window closes (the end of the
// hour plus grace): closes the newest hour whose window has closed. The activity computes every
// key that owes (new usage, contract changes, failed, expired and voided amounts, usage waiting
// for a contract that now exists), sums each marketplace record, and starts one workflow per
// record. This is the only place remittances start, so ingestion never waits for Temporal, and
// "nothing lost" does not depend on new tallies arriving.
//
// A run that comes late (an outage, a skipped run) closes the newest closed hour: it never
// creates records for an older hour than it must, and an hour no run closed is simply folded
// into the next one.

import { proxyActivities } from '@temporalio/workflow';
import type { RemittanceActivities } from '../activities';

export async function sweepWorkflow(): Promise<{ hour: string | null; records: number; computed: number }> {
  const acts = proxyActivities<RemittanceActivities>({ startToCloseTimeout: '30 minutes', heartbeatTimeout: '1 minute', retry: { maximumInterval: '1 minute' } });
  return acts.closeHour({ atMs: Date.now() });
}
