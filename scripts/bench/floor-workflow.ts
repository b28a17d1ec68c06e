// The smallest workflow a workflow-per-record design can run: one local activity (the database
// step) and one search-attribute upsert (the state an operator sees), 7 history events. The
// bench's floor measures how fast a Temporal server completes these (scripts/bench/floor.ts).
// Its own search attribute and type name, so the floor does not change when remit's do.

import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { proxyLocalActivities, upsertSearchAttributes } from '@temporalio/workflow';

export const FLOOR_SEARCH_ATTRIBUTE = defineSearchAttributeKey('RemitBenchFloorState', SearchAttributeType.KEYWORD);

export interface FloorActivities {
  floorStep(n: number): Promise<number>;
}

const { floorStep } = proxyLocalActivities<FloorActivities>({ startToCloseTimeout: '30 seconds' });

export async function benchFloorWorkflow(n: number): Promise<number> {
  const r = await floorStep(n);
  upsertSearchAttributes([{ key: FLOOR_SEARCH_ATTRIBUTE, value: 'done' }]);
  return r;
}
