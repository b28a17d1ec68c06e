// Started every hour by the `remit-sweep` Schedule: starts the current hour's remittance for
// every key that still owes (usage stored but never computed, failed/expired/voided amounts,
// usage waiting for a contract that now exists). This is what makes "nothing lost" independent
// of new tallies arriving, and what closes the gap if the API stored tallies but could not start
// a workflow. It always sweeps into the *current* hour: a catch-up run after an outage must not
// create records for hours that are already over.

import { proxyActivities } from '@temporalio/workflow';
import type { RemittanceActivities } from '../activities';

export async function sweepWorkflow(): Promise<{ started: number }> {
  const acts = proxyActivities<RemittanceActivities>({ startToCloseTimeout: '10 minutes', heartbeatTimeout: '1 minute', retry: { maximumInterval: '1 minute' } });
  return acts.startOwingRemittances({ atMs: Date.now() });
}
